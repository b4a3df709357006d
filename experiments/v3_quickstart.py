"""MobileNetV3-Small at quickstart size: α ∈ {0.5, 1.0} × resolution ∈ {32, 64} on the
'glyphs' letters (no download), 200 steps of the `short` recipe at lr 0.1 each (as the
quickstart), with BN statistics that settle within them (momentum 0.9, as configs/tiny.py). V3
downsamples by 32, so 32 px is its smallest input.

  python launch.py --sweep=experiments/v3_quickstart.py --workdir=runs/v3_quickstart --jobs=2
"""

from mobilenet_jax.sweeps import definition as sweep


def get_sweep():
  return sweep.Sweep(
    "v3_quickstart",
    sweep.grid(
      "configs/mobilenet_v3_small.py:preset=short",
      "alpha{width_multiplier:g}_res{resolution}",
      {"model.width_multiplier": (0.5, 1.0), "resolution": (32, 64)},
      fixed={
        "data.dataset": "glyphs",
        "model.num_classes": 26,
        "training.num_steps": 200,
        "optimizer.learning_rate": 0.1,
        "model.bn_momentum": 0.9,
        "data.batch_size": 64,
        "data.eval_batch_size": 250,
      },
    ),
  )
