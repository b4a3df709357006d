"""MNv4-Hybrid-M (Qin et al. 2024) at 256 px, as timm's mobilenetv4_hybrid_medium spells its
table: MNv4-Conv-M's stages with Mobile MQA blocks in the last two, layer scale in every UIB and
attention block.

  python launch.py --config=configs/mobilenet_v4_hybrid_medium.py --mode=profile
"""

from configs import mobilenet_v4_conv_small

LS = {"layer_scale": 1e-5}  # timm's layer_scale_init_value for the Hybrids


def uib(start, middle):
  return {**mobilenet_v4_conv_small.uib(start, middle), **LS}


def mqa(heads, key_dim, kv_stride):
  """Mobile MQA options: query heads, the shared key/value width, the KV downsampling."""
  return {"heads": heads, "key_dim": key_dim, "kv_stride": kv_stride, "kernel": 3, **LS}


# (block type, t, c, n, s[, options]): the stem, a Fused IB, the UIB and Mobile MQA stages, and
# the 1x1 conv to 960 before the pool.
BLOCKS = (
  ("conv", 1, 32, 1, 2),
  ("fused_ib", 4, 48, 1, 2),
  ("uib", 4, 80, 1, 2, uib(3, 5)),
  ("uib", 2, 80, 1, 1, uib(3, 3)),
  ("uib", 6, 160, 1, 2, uib(3, 5)),
  ("uib", 2, 160, 1, 1, uib(0, 0)),
  ("uib", 4, 160, 1, 1, uib(3, 3)),
  ("uib", 4, 160, 1, 1, uib(3, 5)),
  ("mobile_mqa", 1, 160, 1, 1, mqa(4, 64, 2)),
  ("uib", 4, 160, 1, 1, uib(3, 3)),
  ("mobile_mqa", 1, 160, 1, 1, mqa(4, 64, 2)),
  ("uib", 4, 160, 1, 1, uib(3, 0)),
  ("mobile_mqa", 1, 160, 1, 1, mqa(4, 64, 2)),
  ("uib", 4, 160, 1, 1, uib(3, 3)),
  ("mobile_mqa", 1, 160, 1, 1, mqa(4, 64, 2)),
  ("uib", 4, 160, 1, 1, uib(3, 0)),
  ("uib", 6, 256, 1, 2, uib(5, 5)),
  ("uib", 4, 256, 1, 1, uib(5, 5)),
  ("uib", 4, 256, 2, 1, uib(3, 5)),
  ("uib", 2, 256, 1, 1, uib(0, 0)),
  ("uib", 2, 256, 1, 1, uib(3, 5)),
  ("uib", 2, 256, 1, 1, uib(0, 0)),
  ("uib", 4, 256, 1, 1, uib(0, 0)),
  ("mobile_mqa", 1, 256, 1, 1, mqa(4, 64, 1)),
  ("uib", 4, 256, 1, 1, uib(3, 0)),
  ("mobile_mqa", 1, 256, 1, 1, mqa(4, 64, 1)),
  ("uib", 4, 256, 1, 1, uib(5, 5)),
  ("mobile_mqa", 1, 256, 1, 1, mqa(4, 64, 1)),
  ("uib", 4, 256, 1, 1, uib(5, 0)),
  ("mobile_mqa", 1, 256, 1, 1, mqa(4, 64, 1)),
  ("uib", 4, 256, 1, 1, uib(5, 0)),
  ("conv", 1, 960, 1, 1, {"kernel": 1}),
)


def get_config(arg=None):
  return mobilenet_v4_conv_small.get_config(
    arg, "mobilenet_v4_hybrid_medium", BLOCKS, resolution=256
  )
