"""Process-level settings that make XLA:CPU fast, applied by the entry points.

XLA:CPU allocates each execution's temporaries as one block (about 0.5 GB for a V2 α=0.5
128 px batch-32 training step), which glibc maps and unmaps with 4 KiB pages on every call: the
kernel faults it in page by page and the TLB misses follow. glibc's `hugetlb` tunable backs
those blocks with transparent huge pages instead; measured in benchmarks/README.md. glibc reads
tunables only when a process starts, so the launcher re-executes itself once with it set.
"""

import os
import sys

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def environment_with_huge_pages(environ=None):
  """A copy of `environ` (default os.environ) with the tunable added to GLIBC_TUNABLES."""
  env = dict(os.environ if environ is None else environ)
  tunables = env.get("GLIBC_TUNABLES", "")
  if HUGE_PAGES_TUNABLE not in tunables.split(":"):
    env["GLIBC_TUNABLES"] = ":".join(filter(None, [tunables, HUGE_PAGES_TUNABLE]))
  return env


def reexec_with_huge_pages():
  """Re-executes this Python command line with the tunable set, unless it already is (or the
  platform is not Linux, where glibc's tunables do not exist). Call it before anything else."""
  env = environment_with_huge_pages()
  if sys.platform != "linux" or env == dict(os.environ):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable] + sys.orig_argv[1:], env)
