"""V2 paper Figure 5 and Table 4: α ∈ {0.35, 0.5, 0.75, 1.0} × resolution {96, 128, 160, 192,
224}, plus 1.4 at 224 (21 models), with the paper_v2 preset on ImageNet.

  python launch.py --sweep=experiments/v2_tradeoff.py --workdir=runs/v2_tradeoff \
      --config.data.data_dir=DIR --jobs=1
"""

from experiments import common
from mobilenet_jax.sweeps import definition as sweep

# The paper: 16 asynchronous workers with batch 96 each. It gives no epoch count; the TF-slim
# README's recipe converges after ~700K steps of 8 x 96 images, about 400 epochs.
IMAGENET = common.imagenet(batch_size=16 * 96, epochs=400)
NAME = "v2_{width_multiplier:g}_{resolution}"


def get_sweep():
  grid = sweep.grid(
    "configs/mobilenet_v2.py:preset=paper_v2",
    NAME,
    {"model.width_multiplier": (1.0, 0.75, 0.5, 0.35), "resolution": (224, 192, 160, 128, 96)},
    fixed=IMAGENET,
  )
  widest = sweep.grid(
    "configs/mobilenet_v2.py:preset=paper_v2",
    NAME,
    {"model.width_multiplier": (1.4,), "resolution": (224,)},
    fixed=IMAGENET,
  )
  return sweep.Sweep("v2_tradeoff", widest + grid)
