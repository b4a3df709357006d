"""The README's main job: an α × ρ grid of the tiny V2-style net on rendered letters.

  python launch.py --sweep=experiments/quickstart.py --workdir=runs/quickstart --jobs=2

Nine members (α ∈ {0.25, 0.5, 1.0} × resolution ∈ {8, 16, 32}) on the 'glyphs' dataset: 26
capital letters rendered at 32 px from the fonts that ship with matplotlib (no download), so
resolutions below 32 lose detail as lower ρ does on ImageNet. Each member is a full
train-and-evaluate run (300 steps of the `short` recipe at lr 0.1: at its 0.05, 300 steps leave
the 32 px members undertrained) with checkpoints, metrics and W&B
(offline without a key); the sweep ends with report.md, results.csv, tradeoff.png and
latency.png in the workdir.
"""

from mobilenet_jax.sweeps import definition as sweep

WIDTHS = (0.25, 0.5, 1.0)
RESOLUTIONS = (8, 16, 32)


def get_sweep():
  return sweep.Sweep(
    "quickstart",
    sweep.grid(
      "configs/tiny.py:preset=short",
      "alpha{width_multiplier:g}_res{resolution}",
      {"model.width_multiplier": WIDTHS, "resolution": RESOLUTIONS},
      fixed={
        "data.dataset": "glyphs",
        "model.num_classes": 26,
        "training.num_steps": 300,
        "optimizer.learning_rate": 0.1,
      },
    ),
  )
