"""MNv4-Conv-M (Qin et al. 2024) at 256 px, as timm's mobilenetv4_conv_medium spells its
table.

  python launch.py --config=configs/mobilenet_v4_conv_medium.py --mode=profile
"""

from configs import mobilenet_v4_conv_small

uib = mobilenet_v4_conv_small.uib

# (block type, t, c, n, s[, options]): the stem, a Fused IB, the UIB stages (ExtraDW uib(k, k),
# ConvNext-like uib(k, 0), FFN uib(0, 0)), and the 1x1 conv to 960 before the pool.
BLOCKS = (
  ("conv", 1, 32, 1, 2),
  ("fused_ib", 4, 48, 1, 2),
  ("uib", 4, 80, 1, 2, uib(3, 5)),
  ("uib", 2, 80, 1, 1, uib(3, 3)),
  ("uib", 6, 160, 1, 2, uib(3, 5)),
  ("uib", 4, 160, 2, 1, uib(3, 3)),
  ("uib", 4, 160, 1, 1, uib(3, 5)),
  ("uib", 4, 160, 1, 1, uib(3, 3)),
  ("uib", 4, 160, 1, 1, uib(3, 0)),
  ("uib", 2, 160, 1, 1, uib(0, 0)),
  ("uib", 4, 160, 1, 1, uib(3, 0)),
  ("uib", 6, 256, 1, 2, uib(5, 5)),
  ("uib", 4, 256, 1, 1, uib(5, 5)),
  ("uib", 4, 256, 2, 1, uib(3, 5)),
  ("uib", 4, 256, 1, 1, uib(0, 0)),
  ("uib", 4, 256, 1, 1, uib(3, 0)),
  ("uib", 2, 256, 1, 1, uib(3, 5)),
  ("uib", 4, 256, 1, 1, uib(5, 5)),
  ("uib", 4, 256, 2, 1, uib(0, 0)),
  ("uib", 2, 256, 1, 1, uib(5, 0)),
  ("conv", 1, 960, 1, 1, {"kernel": 1}),
)


def get_config(arg=None):
  return mobilenet_v4_conv_small.get_config(arg, "mobilenet_v4_conv_medium", BLOCKS, resolution=256)
