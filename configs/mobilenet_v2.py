"""MobileNet V2 (Sandler et al. 2018), paper Table 2.

  python launch.py --config=configs/mobilenet_v2.py:width=0.5,res=160 --mode=profile
"""

from mobilenet_jax import config as config_lib
from mobilenet_jax import presets

# Table 2 as (block type, t, c, n, s): the stem conv, then the seventeen bottlenecks (the
# paper's text says 19; its own n column sums to 17, as does TF-slim's V2_DEF).
BLOCKS = (
    ("conv", 1, 32, 1, 2),
    ("inverted_residual", 1, 16, 1, 1),
    ("inverted_residual", 6, 24, 2, 2),
    ("inverted_residual", 6, 32, 3, 2),
    ("inverted_residual", 6, 64, 4, 2),
    ("inverted_residual", 6, 96, 3, 1),
    ("inverted_residual", 6, 160, 3, 2),
    ("inverted_residual", 6, 320, 1, 1),
)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, width=1.0, res=224, preset="paper_v2")
  config = config_lib.base_config()
  config.resolution = arg.res
  config.model.name = "mobilenet_v2"
  config.model.blocks = BLOCKS
  config.model.width_multiplier = arg.width
  config.model.channel_rounding = "make_divisible"
  config.model.head_channels = 1280
  config.model.bn_momentum = 0.997  # TF-slim mobilenet training_scope
  config.model.dropout_rate = 0.2  # TF-slim dropout_keep_prob=0.8
  return presets.apply_preset(config, arg.preset)
