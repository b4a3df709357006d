"""MNv4-Conv-S (Qin et al. 2024), as timm's mobilenetv4_conv_small spells its table.

python launch.py --config=configs/mobilenet_v4_conv_small.py --mode=profile
"""

from mobilenet_jax.config import schema as config_lib

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


def get_config(arg=None, name="mobilenet_v4_conv_small", blocks=BLOCKS, resolution=224):
  # After the pool: a 1x1 conv to 1280 without bias, then BN and ReLU.
  return config_lib.model_config(
    arg,
    name,
    blocks,
    preset="modern",
    resolution=resolution,
    channel_rounding="make_divisible",
    activation="relu",
    pooled_head_channels=1280,
    pooled_head_norm=True,
  )
