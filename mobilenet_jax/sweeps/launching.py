"""The resumable launcher of a sweep's members: each runs as its own `launch.py` process in
DIR/<member>/ (so a crash or an OOM stays in that member), locally or as Ray tasks
(ray_launcher.py), and the command lines are exactly what `--dry_run` prints for a cluster's
array job.
"""

import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time

from mobilenet_jax.config import workdir as workdir_lib
from mobilenet_jax.core import tracking
from mobilenet_jax.sweeps import definition

STATUS_FILE = "sweep.json"


def member_status(workdir, member):
  path = os.path.join(workdir, member.name, "summary.json")
  if not os.path.exists(path):
    return "pending"
  return tracking.read_json(path).get("status", "pending")


def ended_status(workdir, member, returncode, stopped=False):
  """'finished' or 'preempted' as the member's summary says, else 'failed' with its error; a
  member the launcher `stopped` before it could checkpoint is 'pending' again."""
  status = member_status(workdir, member)
  if returncode == 0 and status in ("finished", "preempted"):
    return status
  # None: no exit code at all, as when Ray's cancel ends the worker that ran the member.
  if stopped and returncode in (0, -signal.SIGTERM, None):
    return status
  with open(os.path.join(workdir, member.name, "launch.log")) as f:
    lines = [line.rstrip() for line in f if line.strip()]
  error = next(
    (text for text in reversed(lines) if "error" in text.lower()), lines[-1] if lines else ""
  )
  return f"failed (exit {returncode}): {error}"


def die_with_parent():
  """In a member, before exec: SIGTERM when the thread that started it exits (PR_SET_PDEATHSIG),
  so a member whose launcher dies (kill -9 included) checkpoints and stops."""
  if sys.platform.startswith("linux"):
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


COMPILATION_CACHE = "compilation_cache"


def compilation_cache_env(workdir):
  """Members share one JAX compilation cache in the sweep's workdir (unless
  JAX_COMPILATION_CACHE_DIR says otherwise), so members that differ only by seed, and resumed
  members, skip XLA's compiles."""
  return {
    "JAX_COMPILATION_CACHE_DIR": os.environ.get(
      "JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.abspath(workdir), COMPILATION_CACHE)
    )
  }


def run(sweep, workdir, run_members, extra_overrides=(), out=sys.stdout):
  """Runs every unfinished member with `run_members` (run_locally, or ray_launcher.run_members);
  returns {member name: status}, which sweep.json records as each member ends.

  The sweep holds its workdir exclusively while it runs. SIGTERM or Ctrl-C is passed on to the
  running members, which checkpoint and stop; running the same command again resumes them and
  skips the finished ones.
  """
  with workdir_lib.WorkdirLock(workdir):
    statuses = {m.name: member_status(workdir, m) for m in sweep.members}
    for name, status in statuses.items():
      if status == "finished":
        print(f"[{sweep.name}] {name}: finished before, skipped", file=out)

    def record(member, status):
      statuses[member.name] = status
      print(f"[{sweep.name}] {member.name}: {status}", file=out, flush=True)
      tracking.write_json(
        os.path.join(workdir, STATUS_FILE), {"sweep": sweep.name, "members": statuses}
      )

    todo = [m for m in sweep.members if statuses[m.name] != "finished"]
    run_members(sweep, todo, workdir, extra_overrides, record)
    return statuses


class _Running:
  def __init__(self, member, process, log):
    self.member, self.process, self.log = member, process, log


def run_locally(sweep, members, workdir, extra_overrides, record, jobs=1):
  """Runs `members` as local launch.py processes, `jobs` at a time, calling record(member,
  status) as each starts and ends."""
  env = {**os.environ, **compilation_cache_env(workdir)}
  running, stopping = [], False

  def stop(*_):
    nonlocal stopping
    stopping = True
    for r in running:
      r.process.send_signal(signal.SIGTERM)

  todo = list(members)
  previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    while (todo and not stopping) or running:
      while todo and len(running) < jobs and not stopping:
        member = todo.pop(0)
        os.makedirs(os.path.join(workdir, member.name), exist_ok=True)
        log = open(os.path.join(workdir, member.name, "launch.log"), "a")
        command = definition.member_command(sweep, member, workdir, extra_overrides)
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
          command,
          cwd=definition.REPO,
          env=env,
          stdout=log,
          stderr=subprocess.STDOUT,
          preexec_fn=die_with_parent,
        )
        running.append(_Running(member, process, log))
        record(member, "started")
      time.sleep(0.2)
      for r in [r for r in running if r.process.poll() is not None]:
        running.remove(r)
        r.log.close()
        record(r.member, ended_status(workdir, r.member, r.process.returncode, stopping))
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def dry_run(sweep, workdir, extra_overrides=(), out=sys.stdout):
  for member in sweep.members:
    print(shlex.join(definition.member_command(sweep, member, workdir, extra_overrides)), file=out)
