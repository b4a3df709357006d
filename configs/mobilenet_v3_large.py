"""MobileNetV3-Large (Howard et al. 2019, Table 1), as TF-slim's V3_LARGE defines it.

python launch.py --config=configs/mobilenet_v3_large.py:width=0.75,res=224 --mode=profile
"""

from mobilenet_jax.config import schema as config_lib

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
  return config_lib.model_config(
    arg,
    "mobilenet_v3_large",
    BLOCKS,
    preset="paper_v3",
    channel_rounding="make_divisible",
    activation="hard_swish",
    pooled_head_channels=1280,  # Table 1's last rows: pool, 1x1 conv with bias (no BN), HS
    bn_momentum=0.99,  # Section 6.1: "batch-normalization ... average decay of 0.99"
    dropout_rate=0.2,
  )  # Section 6.1: dropout keep probability 0.8
