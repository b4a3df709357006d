"""MNv4-Conv-L (Qin et al. 2024) at 384 px, as timm's mobilenetv4_conv_large spells its table.

python launch.py --config=configs/mobilenet_v4_conv_large.py --mode=profile
"""

from configs import mobilenet_v4_conv_small

uib = mobilenet_v4_conv_small.uib

BLOCKS = (
  ("conv", 1, 24, 1, 2),
  ("fused_ib", 4, 48, 1, 2),
  ("uib", 4, 96, 1, 2, uib(3, 5)),
  ("uib", 4, 96, 1, 1, uib(3, 3)),
  ("uib", 4, 192, 1, 2, uib(3, 5)),
  ("uib", 4, 192, 3, 1, uib(3, 3)),
  ("uib", 4, 192, 1, 1, uib(3, 5)),
  ("uib", 4, 192, 5, 1, uib(5, 3)),
  ("uib", 4, 192, 1, 1, uib(3, 0)),
  ("uib", 4, 512, 4, 2, uib(5, 5)),
  ("uib", 4, 512, 1, 1, uib(5, 0)),
  ("uib", 4, 512, 1, 1, uib(5, 3)),
  ("uib", 4, 512, 2, 1, uib(5, 0)),
  ("uib", 4, 512, 1, 1, uib(5, 3)),
  ("uib", 4, 512, 1, 1, uib(5, 5)),
  ("uib", 4, 512, 3, 1, uib(5, 0)),
  ("conv", 1, 960, 1, 1, {"kernel": 1}),
)


def get_config(arg=None):
  return mobilenet_v4_conv_small.get_config(arg, "mobilenet_v4_conv_large", BLOCKS, resolution=384)
