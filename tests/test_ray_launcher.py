"""--launcher=ray on a real local Ray cluster (`ray start --head`): failure isolation, a killed
worker's member relaunched and resuming bitwise, a 2-process member, and the report."""

import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from mobilenet_jax import trainer
from mobilenet_jax.sweeps import definition, launching, ray_launcher, report
from tests.helpers import (
  REPO,
  SAME_CURVE_RATE,
  assert_same_loss_curve,
  config_flags,
  final_params,
  metrics,
  run_launch,
  tiny_config,
)

# A Ray cluster and several member processes: not the fast tier.
pytestmark = pytest.mark.slow
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
STEPS = 40  # the killed member's; the two-process member's curve is compared over 10
SWEEP_FILE = f"""
from mobilenet_jax.sweeps import definition as sweep

def get_sweep():
  return sweep.Sweep("ray_sweep", (
      sweep.Member("killed", "configs/tiny.py", (("training.num_steps", {STEPS}),)),
      sweep.Member("broken", "configs/tiny.py", (("model.width_multiplier", -1.0),)),
      sweep.Member("two_processes", "configs/tiny.py",
                   (("resources.processes", 2), ("training.num_steps", 10))),
  ))
"""
OVERRIDES = {
  "training.log_every_steps": 1,
  "training.checkpoint_every_steps": 10,
  "training.measure_latency": False,
  "wandb.mode": "disabled",
  "optimizer.learning_rate": SAME_CURVE_RATE,
}


@pytest.fixture
def ray_cluster():
  """A one-node Ray cluster started as a user starts one (`ray start --head`); yields its
  address. Stopped by killing its process group, not `ray stop`, which would stop every Ray
  cluster on the machine."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  # Ray's socket paths must fit in 107 bytes: a short temporary directory, not pytest's.
  temp_dir = tempfile.mkdtemp(prefix="ray")
  head = subprocess.Popen(
    [
      RAY,
      "start",
      "--head",
      "--block",
      f"--port={port}",
      "--num-cpus=4",
      "--include-dashboard=false",
      f"--temp-dir={temp_dir}",
    ],
    env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    text=True,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    start_new_session=True,
  )
  output = []
  for line in head.stdout:
    output.append(line)
    if "Ray runtime started" in line:
      break
  assert head.poll() is None, "".join(output)
  yield f"127.0.0.1:{port}"
  os.killpg(head.pid, signal.SIGKILL)
  head.wait()
  shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_sweep_isolates_failures_relaunches_a_killed_member_and_runs_two_processes(
  tmp_path, ray_cluster
):
  sweep_file = tmp_path / "ray_sweep.py"
  sweep_file.write_text(SWEEP_FILE)
  workdir = tmp_path / "sweep"
  launcher = subprocess.Popen(
    [
      sys.executable,
      "launch.py",
      f"--sweep={sweep_file}",
      f"--workdir={workdir}",
      "--launcher=ray",
      f"--ray_address={ray_cluster}",
      *config_flags(OVERRIDES),
    ],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    env={**os.environ, "RAY_AUTH_MODE": "disabled"},
  )

  # Kill the Ray worker running `killed` once it has saved a checkpoint, as a dying node would:
  # Ray also kills the member process the worker started, so it may not finish its own save.
  log, checkpoints = workdir / "killed" / "launch.log", workdir / "killed" / "checkpoints"
  deadline, killed_at = time.time() + 300, None
  while time.time() < deadline and killed_at is None:
    text = log.read_text() if log.exists() else ""
    worker = re.search(r"Ray worker pid (\d+)", text)
    steps = [int(s) for s in re.findall(rf"(\d+)/{STEPS} ", text)]
    saved = checkpoints.exists() and any(name.isdigit() for name in os.listdir(checkpoints))
    if worker and saved and steps and max(steps) < STEPS:
      os.kill(int(worker.group(1)), signal.SIGKILL)
      killed_at = max(steps)
    time.sleep(0.1)
  # The uninterrupted reference, trained here meanwhile (its programs are in the session's
  # compilation cache, which the members share).
  reference = tmp_path / "reference"
  trainer.train_and_evaluate(
    tiny_config(**OVERRIDES, **{"training.num_steps": STEPS}), str(reference)
  )
  output = launcher.communicate(timeout=600)[0]
  assert killed_at is not None, output

  assert launcher.returncode == 1, output  # the broken member fails, alone
  assert "broken: failed (exit 1): error: config.model.width_multiplier=-1.0" in output
  assert "2/3 finished" in output
  statuses = json.load(open(workdir / "sweep.json"))["members"]
  assert [statuses[m] for m in ("killed", "two_processes")] == ["finished"] * 2
  # Where each member runs, streamed from its launch.log.
  assert re.search(r"killed \| \[ray\] attempt 1, process 1/1 on \S+ \(", output), output

  # The killed worker's member was relaunched by the launcher, resumed from its last checkpoint,
  # and ended bitwise equal to the uninterrupted reference.
  assert "killed: its worker or node died; relaunched (attempt 2)" in output
  resumed = int(re.search(r"Resumed \S+ at step (\d+)", log.read_text()).group(1))
  assert 10 <= resumed < STEPS
  losses = lambda run: {m["step"]: m["train/loss"] for m in metrics(run) if "train/loss" in m}
  assert losses(workdir / "killed") == losses(reference) and len(losses(reference)) == STEPS
  (step, killed), (_, uninterrupted) = final_params(workdir / "killed"), final_params(reference)
  assert step == STEPS
  assert all(jax.tree.leaves(jax.tree.map(np.array_equal, killed, uninterrupted)))

  # Two processes over gloo, placed by a placement group: the one-process loss curve.
  summary = json.load(open(workdir / "two_processes" / "summary.json"))
  assert summary["processes"] == 2 and (workdir / "two_processes" / "launch.1.log").exists()
  two = list(losses(workdir / "two_processes").values())
  assert_same_loss_curve(two, [losses(reference)[s] for s in range(1, 11)])

  with open(workdir / "results.csv") as f:
    reader = csv.DictReader(f)
    assert tuple(reader.fieldnames) == report.COLUMNS
    assert sorted(r["name"] for r in reader) == ["killed", "two_processes"]


def test_a_ray_address_where_nothing_answers_is_one_line_and_writes_nothing(tmp_path):
  with socket.socket() as free:
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]  # nothing listens there once it is closed
  workdir = tmp_path / "sweep"
  result = run_launch(
    "--sweep=experiments/quickstart.py",
    f"--workdir={workdir}",
    "--launcher=ray",
    f"--ray_address=127.0.0.1:{port}",
  )
  assert result.returncode == 1 and result.stderr == (
    f"error: --ray_address=127.0.0.1:{port}: no Ray cluster answers there (Connection refused, "
    f"--ray_connect_timeout_s=5); start one on 127.0.0.1 with `ray start --head --port={port}`, "
    "or omit --ray_address to start one for this sweep\n"
  )
  assert not workdir.exists()


def test_members_asking_for_more_than_the_cluster_has_fail_at_once(tmp_path):
  """On a real (local) Ray cluster of this machine's CPUs and no GPU."""
  greedy = definition.Sweep(
    "greedy",
    (
      definition.Member("gpus", "configs/tiny.py", (("resources.gpus", 8.0),)),
      definition.Member("processes", "configs/tiny.py", (("resources.processes", 64),)),
    ),
  )
  statuses = launching.run(greedy, str(tmp_path), ray_launcher.run_members)
  cpus = os.cpu_count()
  assert statuses == {
    "gpus": "failed: it asks for GPU: 8 per process and no node of the cluster has more than 0 "
    "(--ray_wait_for_resources waits for an autoscaler)",
    "processes": f"failed: it asks for CPU: 64 over 64 processes and the cluster has {cpus} "
    "(--ray_wait_for_resources waits for an autoscaler)",
  }
  assert not (tmp_path / "gpus").exists() and not (tmp_path / "processes").exists()
