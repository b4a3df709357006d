"""V1 paper Table 4 (Conv MobileNet vs MobileNet) and Table 5 (0.75 MobileNet, narrow, vs
Shallow MobileNet), at 224 on ImageNet with the paper_v1 preset.

  python launch.py --sweep=experiments/v1_ablations.py --workdir=runs/v1_ablations \
      --config.data.data_dir=DIR
"""

from experiments.v1_tradeoff import IMAGENET
from mobilenet_jax.sweeps import definition as sweep

OVERRIDES = tuple(IMAGENET.items())


def get_sweep():
  return sweep.Sweep(
    "v1_ablations",
    (
      sweep.Member("mobilenet", "configs/mobilenet_v1.py", OVERRIDES),
      sweep.Member("conv_mobilenet", "configs/mobilenet_v1_conv.py", OVERRIDES),
      sweep.Member("mobilenet_0.75", "configs/mobilenet_v1.py:width=0.75", OVERRIDES),
      sweep.Member("shallow_mobilenet", "configs/mobilenet_v1_shallow.py", OVERRIDES),
    ),
  )
