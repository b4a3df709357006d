"""The README's main job: an α × ρ grid of the tiny V2-style net on scikit-learn's digits.

  python launch.py --sweep=experiments/quickstart.py --workdir=runs/quickstart

Six members (α ∈ {0.25, 0.5, 1.0} × resolution ∈ {8, 16}), each a full train-and-evaluate run
with checkpoints, metrics and W&B (offline without a key); ends with report.md, results.csv,
tradeoff.png and latency.png in the workdir.
"""

from mobilenet_jax import sweep


def get_sweep():
  return sweep.Sweep("quickstart", sweep.grid(
      "configs/tiny.py", "alpha{width_multiplier:g}_res{resolution}",
      {"model.width_multiplier": (0.25, 0.5, 1.0), "resolution": (8, 16)},
      fixed={"training.num_steps": 300}))
