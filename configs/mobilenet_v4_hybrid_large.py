"""MNv4-Hybrid-L (Qin et al. 2024) at 384 px, as timm's mobilenetv4_hybrid_large spells its
table: a 24-channel stem, GELU, Mobile MQA with 8 heads in the last two stages.

  python launch.py --config=configs/mobilenet_v4_hybrid_large.py --mode=profile
"""

from configs import mobilenet_v4_conv_small, mobilenet_v4_hybrid_medium

uib, mqa = mobilenet_v4_hybrid_medium.uib, mobilenet_v4_hybrid_medium.mqa

BLOCKS = (
  ("conv", 1, 24, 1, 2),
  ("fused_ib", 4, 48, 1, 2),
  ("uib", 4, 96, 1, 2, uib(3, 5)),
  ("uib", 4, 96, 1, 1, uib(3, 3)),
  ("uib", 4, 192, 1, 2, uib(3, 5)),
  ("uib", 4, 192, 3, 1, uib(3, 3)),
  ("uib", 4, 192, 1, 1, uib(3, 5)),
  ("uib", 4, 192, 2, 1, uib(5, 3)),
  ("mobile_mqa", 1, 192, 1, 1, mqa(8, 48, 2)),
  ("uib", 4, 192, 1, 1, uib(5, 3)),
  ("mobile_mqa", 1, 192, 1, 1, mqa(8, 48, 2)),
  ("uib", 4, 192, 1, 1, uib(5, 3)),
  ("mobile_mqa", 1, 192, 1, 1, mqa(8, 48, 2)),
  ("uib", 4, 192, 1, 1, uib(5, 3)),
  ("mobile_mqa", 1, 192, 1, 1, mqa(8, 48, 2)),
  ("uib", 4, 192, 1, 1, uib(3, 0)),
  ("uib", 4, 512, 1, 2, uib(5, 5)),
  ("uib", 4, 512, 3, 1, uib(5, 5)),
  ("uib", 4, 512, 1, 1, uib(5, 0)),
  ("uib", 4, 512, 1, 1, uib(5, 3)),
  ("uib", 4, 512, 2, 1, uib(5, 0)),
  ("uib", 4, 512, 1, 1, uib(5, 3)),
  ("uib", 4, 512, 1, 1, uib(5, 5)),
  ("mobile_mqa", 1, 512, 1, 1, mqa(8, 64, 1)),
  ("uib", 4, 512, 1, 1, uib(5, 0)),
  ("mobile_mqa", 1, 512, 1, 1, mqa(8, 64, 1)),
  ("uib", 4, 512, 1, 1, uib(5, 0)),
  ("mobile_mqa", 1, 512, 1, 1, mqa(8, 64, 1)),
  ("uib", 4, 512, 1, 1, uib(5, 0)),
  ("mobile_mqa", 1, 512, 1, 1, mqa(8, 64, 1)),
  ("uib", 4, 512, 1, 1, uib(5, 0)),
  ("conv", 1, 960, 1, 1, {"kernel": 1}),
)


def get_config(arg=None):
  config = mobilenet_v4_conv_small.get_config(
    arg, "mobilenet_v4_hybrid_large", BLOCKS, resolution=384
  )
  config.model.activation = "gelu"
  return config
