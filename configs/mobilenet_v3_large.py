"""MobileNetV3-Large (Howard et al. 2019, Table 1), as TF-slim's V3_LARGE defines it.

  python launch.py --config=configs/mobilenet_v3_large.py:width=0.75,res=224 --mode=profile
"""

from mobilenet_jax import config as config_lib
from mobilenet_jax import presets

RE = {"act": "relu"}  # Table 1's NL column: RE = ReLU, HS = h-swish (the model's default)
SE5 = {"kernel": 5, "se": 0.25}

# Table 1 as (block type, t, c, n, s[, options]), t = exp size / input channels: the stem, the
# fifteen bneck rows, and the 1x1 conv to 960 before the pool.
BLOCKS = (
    ("conv", 1, 16, 1, 2),
    ("inverted_residual", 1, 16, 1, 1, RE),
    ("inverted_residual", 4, 24, 1, 2, RE),
    ("inverted_residual", 3, 24, 1, 1, RE),
    ("inverted_residual", 3, 40, 3, 2, {**SE5, **RE}),
    ("inverted_residual", 6, 80, 1, 2),
    ("inverted_residual", 2.5, 80, 1, 1),
    ("inverted_residual", 2.3, 80, 2, 1),  # exp size 184
    ("inverted_residual", 6, 112, 2, 1, {"se": 0.25}),
    ("inverted_residual", 6, 160, 3, 2, SE5),
    ("conv", 1, 960, 1, 1, {"kernel": 1}),
)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, width=1.0, res=224, preset="paper_v3")
  config = config_lib.base_config()
  config.resolution = arg.res
  config.model.name = "mobilenet_v3_large"
  config.model.blocks = BLOCKS
  config.model.width_multiplier = arg.width
  config.model.channel_rounding = "make_divisible"
  config.model.activation = "hard_swish"
  # Table 1's last rows: pool, then a 1x1 conv with bias (no BN) to 1280, h-swish.
  config.model.pooled_head_channels = 1280
  config.model.bn_momentum = 0.99  # Section 6.1: "batch-normalization ... average decay of 0.99"
  config.model.dropout_rate = 0.2  # Section 6.1: dropout keep probability 0.8
  return presets.apply_preset(config, arg.preset)
