"""The launcher's re-exec with glibc's huge-page tunable."""

import os
import subprocess
import sys

import pytest

from mobilenet_jax.core import runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_tunable_is_appended_once():
  env = runtime.environment_with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  assert runtime.environment_with_huge_pages(env) == env
  assert runtime.environment_with_huge_pages({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"


@pytest.mark.skipif(sys.platform != "linux", reason="glibc tunables exist only on Linux")
def test_reexec_restarts_the_command_once_with_the_tunable():
  script = (
    "import os, sys; sys.path.insert(0, %r); from mobilenet_jax.core import runtime; "
    "print('started', flush=True); runtime.reexec_with_huge_pages(); "
    "print(os.environ['GLIBC_TUNABLES'], sys.argv[1:])" % REPO
  )
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  out = subprocess.run(
    [sys.executable, "-c", script, "--flag=1"], env=env, check=True, capture_output=True, text=True
  ).stdout.splitlines()
  assert out == ["started", "started", "glibc.malloc.hugetlb=1 ['--flag=1']"]
