"""MobileNetV3-Small (Howard et al. 2019, Table 2), as TF-slim's V3_SMALL defines it.

python launch.py --config=configs/mobilenet_v3_small.py:width=1.0,res=224 --mode=profile
"""

from configs import mobilenet_v3_large

RE = mobilenet_v3_large.RE  # Table 2's NL column, as Table 1's
SE5 = mobilenet_v3_large.SE5

# Table 2 as (block type, t, c, n, s[, options]), t = exp size / input channels: the stem, the
# eleven bneck rows, and the 1x1 conv to 576 before the pool.
BLOCKS = (
  ("conv", 1, 16, 1, 2),
  ("inverted_residual", 1, 16, 1, 2, {"se": 0.25, **RE}),
  ("inverted_residual", 72 / 16, 24, 1, 2, RE),
  ("inverted_residual", 88 / 24, 24, 1, 1, RE),
  ("inverted_residual", 4, 40, 1, 2, SE5),
  ("inverted_residual", 6, 40, 2, 1, SE5),
  ("inverted_residual", 3, 48, 2, 1, SE5),
  ("inverted_residual", 6, 96, 3, 2, SE5),
  ("conv", 1, 576, 1, 1, {"kernel": 1}),
)


def get_config(arg=None):
  config = mobilenet_v3_large.get_config(arg)
  config.model.name = "mobilenet_v3_small"
  config.model.blocks = BLOCKS
  config.model.pooled_head_channels = 1024  # a 1x1 conv with bias, no BN, as V3-Large's
  return config
