"""MNv4-Conv-S (Qin et al. 2024), as timm's mobilenetv4_conv_small spells its table.

  python launch.py --config=configs/mobilenet_v4_conv_small.py --mode=profile
"""

from mobilenet_jax import config as config_lib
from mobilenet_jax import presets

K1 = {"kernel": 1}


def uib(start, middle):
  """UIB options: start and middle depthwise kernels (0 = none)."""
  return {"start_kernel": start, "kernel": middle}


# (block type, t, c, n, s[, options]): the stem, four full convs, the UIB stages (ExtraDW
# uib(k, k), IB uib(0, k), ConvNext-like uib(k, 0)), and the 1x1 conv to 960 before the pool.
BLOCKS = (
    ("conv", 1, 32, 1, 2),
    ("conv", 1, 32, 1, 2),
    ("conv", 1, 32, 1, 1, K1),
    ("conv", 1, 96, 1, 2),
    ("conv", 1, 64, 1, 1, K1),
    ("uib", 3, 96, 1, 2, uib(5, 5)),
    ("uib", 2, 96, 4, 1, uib(0, 3)),
    ("uib", 4, 96, 1, 1, uib(3, 0)),
    ("uib", 6, 128, 1, 2, uib(3, 3)),
    ("uib", 4, 128, 1, 1, uib(5, 5)),
    ("uib", 4, 128, 1, 1, uib(0, 5)),
    ("uib", 3, 128, 1, 1, uib(0, 5)),
    ("uib", 4, 128, 2, 1, uib(0, 3)),
    ("conv", 1, 960, 1, 1, K1),
)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, width=1.0, res=224, preset="modern")
  config = config_lib.base_config()
  config.resolution = arg.res
  config.model.name = "mobilenet_v4_conv_small"
  config.model.blocks = BLOCKS
  config.model.width_multiplier = arg.width
  config.model.channel_rounding = "make_divisible"
  config.model.activation = "relu"
  # After the pool: a 1x1 conv to 1280 without bias, then BN and ReLU.
  config.model.pooled_head_channels = 1280
  config.model.pooled_head_norm = True
  return presets.apply_preset(config, arg.preset)
