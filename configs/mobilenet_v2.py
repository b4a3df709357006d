"""MobileNet V2 (Sandler et al. 2018), paper Table 2.

python launch.py --config=configs/mobilenet_v2.py:width=0.5,res=160 --mode=profile
"""

from mobilenet_jax.config import schema as config_lib

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
  return config_lib.model_config(
    arg,
    "mobilenet_v2",
    BLOCKS,
    preset="paper_v2",
    channel_rounding="make_divisible",
    head_channels=1280,
    bn_momentum=0.997,  # TF-slim mobilenet training_scope
    dropout_rate=0.2,
  )  # TF-slim dropout_keep_prob=0.8
