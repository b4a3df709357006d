"""Where the test suite's time goes: each test's wall time and the XLA compiles in its process.

  python -m pytest -q -p benchmarks.compile_profile        # the README's test command, profiled
  python benchmarks/compile_profile.py [--top=30]          # the tables, from what it wrote

As a pytest plugin (`-p benchmarks.compile_profile`), every test process (each xdist worker)
appends one JSON line per test to compile_profile/<worker>.jsonl: its node id, its wall time and
each backend compile JAX reported in that process while it ran (`jax.monitoring`'s
backend-compile events: the function's name and seconds). Processes a test starts (sweep
members, `launch` subprocesses) are in its wall time, not in its compiles. Run as a script, it
prints the compile seconds per jitted function, and the tests by wall time.
"""

import argparse
import collections
import glob
import json
import os
import time

import pytest

DIRECTORY = "compile_profile"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

_compiles: list[dict] = []


def _record(event, duration, **kwargs):
  if event == COMPILE_EVENT:
    _compiles.append({"function": kwargs.get("fun_name"), "seconds": duration})


def pytest_configure(config):
  from jax import monitoring

  monitoring.register_event_duration_secs_listener(_record)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  _compiles.clear()
  start = time.perf_counter()
  yield
  os.makedirs(DIRECTORY, exist_ok=True)
  worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
  row = {"test": item.nodeid, "wall": time.perf_counter() - start, "compiles": list(_compiles)}
  with open(os.path.join(DIRECTORY, f"{worker}.jsonl"), "a") as f:
    f.write(json.dumps(row) + "\n")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--top", type=int, default=30, help="rows of each table")
  args = parser.parse_args()
  rows = [json.loads(line) for path in glob.glob(f"{DIRECTORY}/*.jsonl") for line in open(path)]
  if not rows:
    raise SystemExit(f"error: nothing in {DIRECTORY}/; run pytest -p benchmarks.compile_profile")
  compiles = [c for row in rows for c in row["compiles"]]
  wall = sum(row["wall"] for row in rows)
  print(
    f"{len(rows)} tests, {wall:.1f} s of test time; {len(compiles)} compiles in the test"
    f" processes, {sum(c['seconds'] for c in compiles):.1f} s\n"
  )
  by_function = collections.defaultdict(list)
  for c in compiles:
    by_function[c["function"]].append(c["seconds"])
  ranked = sorted(by_function.items(), key=lambda kv: -sum(kv[1]))[: args.top]
  print("| function | compiles | seconds |\n|---|---:|---:|")
  for function, seconds in ranked:
    print(f"| `{function}` | {len(seconds)} | {sum(seconds):.1f} |")
  print("\n| test | wall s | compile s | compiles |\n|---|---:|---:|---:|")
  for row in sorted(rows, key=lambda row: -row["wall"])[: args.top]:
    seconds = sum(c["seconds"] for c in row["compiles"])
    print(f"| {row['test']} | {row['wall']:.1f} | {seconds:.1f} | {len(row['compiles'])} |")


if __name__ == "__main__":
  main()
