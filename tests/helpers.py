"""What several test files share: the repository's paths, configs, skips and run readers."""

import csv
import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import filelock
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mobilenet_jax import trainer
from mobilenet_jax.config import command_line

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ARTIFACTS = SHARED / "artifacts"


def load_config(name, arg=None):
  return command_line.load_config_file(
    str(REPO / "configs" / f"{name}.py") + (f":{arg}" if arg else "")
  )


def needs_artifacts(*parts, root=ARTIFACTS):
  """Skips (with the reason) on a fresh clone, where ../shared/ is absent; CI has it."""
  path = root.joinpath(*parts)
  return pytest.mark.skipif(
    not path.exists(), reason=f"needs {path} (present in CI, not in a fresh clone)"
  )


# The messages that ask for TensorFlow can only be seen where it is missing (CI, a fresh clone).
without_tensorflow = pytest.mark.skipif(
  importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed here"
)
with_tensorflow = pytest.mark.skipif(
  importlib.util.find_spec("tensorflow") is None,
  reason="TensorFlow is not installed (pip install tensorflow-cpu)",
)


TINY_OVERRIDES = {"wandb.mode": "disabled", "training.measure_latency": False}


def tiny_config(**overrides):
  return command_line.apply_overrides(load_config("tiny"), {**TINY_OVERRIDES, **overrides}.items())


def every_block_type():
  """One row of each block type and UIB variant, SE and h-swish included, and MNv4's head."""
  config = load_config("tiny")
  config.model.blocks = (
    ("conv", 1, 16, 1, 2),
    ("separable", 1, 16, 1, 1),
    ("fused_ib", 4, 16, 1, 1),
    ("uib", 4, 24, 1, 2, {"start_kernel": 3, "kernel": 5}),
    ("uib", 2, 24, 1, 1),
    ("uib", 4, 24, 1, 1, {"start_kernel": 5, "kernel": 0}),
    ("uib", 2, 24, 1, 1, {"kernel": 0}),
    ("inverted_residual", 3, 32, 1, 2, {"kernel": 5, "se": 0.25, "act": "hard_swish"}),
  )
  config.model.pooled_head_channels, config.model.pooled_head_norm = 64, True
  return config


def trained_once(config, workdir):
  """(config, workdir) after training it there once per session: by the first xdist worker to
  ask; the others wait for it."""
  with filelock.FileLock(f"{workdir}.lock"):
    if not (workdir / "summary.json").exists():
      trainer.train_and_evaluate(config, str(workdir))
  return config, workdir


def run_launch(*args, timeout=120):
  """launch.py with these flags in a subprocess, to its end: the CompletedProcess, text out."""
  return subprocess.run(
    [sys.executable, "launch.py", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
  )


def config_flags(overrides):
  """The launch.py flags that give a subprocess the overrides tiny_config(**overrides) applies."""
  return [f"--config.{key}={value}" for key, value in overrides.items()]


def launch(workdir, *extra, env=None):
  """launch.py training configs/tiny.py in `workdir`, in a process of its own (W&B offline)."""
  args = [
    sys.executable,
    "launch.py",
    "--config=configs/tiny.py",
    f"--workdir={workdir}",
    "--config.wandb.mode=offline",
  ]
  return subprocess.Popen(
    args + list(extra),
    cwd=REPO,
    env={**os.environ, **(env or {})},
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


def metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def final_params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"), item_names=("state",))
  restored = manager.restore(
    manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())
  )
  return manager.latest_step(), restored.state["params"]


# Runs compared step by step train at this rate: at the tiny config's 0.045 the net amplifies
# float rounding to 1e-4 within five steps (how soon depends on the images). At 0.003 each
# session's CPU has drifted differently: 3.8e-6 apart by step 9 (2026-12-04), 1.2e-4 (2026-12-05,
# on HEAD as well), so late steps get a looser bar.
SAME_CURVE_RATE = 0.003


def assert_same_loss_curve(actual, desired):
  """Cross-device sums add in another order: equal to float rounding for the first five steps
  (a gradient or batch statistic summed instead of averaged is off by far more at step 1), and
  within 1e-3 over ten steps at SAME_CURVE_RATE, where that rounding has grown."""
  assert len(actual) == len(desired) == 10
  np.testing.assert_allclose(actual[:5], desired[:5], rtol=2e-5)
  np.testing.assert_allclose(actual, desired, rtol=1e-3)


V1_TFJS = ARTIFACTS / "mobilenet_v1_0.75_224_keras_tfjs"
V2_NPY = ARTIFACTS / "mobilenet_v2_1.0_224_tfslim_float_npy"
SAMPLE = ARTIFACTS / "datasets" / "imagenet_sample_250"
WNIDS = ARTIFACTS / "imagenet_wnids_1000.txt"


def v1_config(init_from, **extra):
  config = load_config("mobilenet_v1", "width=0.75")
  config.init_from = init_from
  config.data.dataset = extra.pop("dataset", "digits")
  config.data.class_names = str(WNIDS)
  config.data.eval_batch_size = 50
  config.wandb.mode = "disabled"
  return config


def imagenet_sample_folder(root):
  """The 250 sample images as a folder dataset's train and val splits (links, no copies)."""
  with open(SAMPLE / "labels.csv") as f:
    for row in csv.DictReader(f):
      for split in ("train", "val"):
        os.makedirs(os.path.join(root, split, row["wnid"]), exist_ok=True)
        os.symlink(SAMPLE / row["file"], os.path.join(root, split, row["wnid"], row["file"]))
  return root
