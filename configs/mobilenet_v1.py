"""MobileNet V1 (Howard et al. 2017), paper Table 1.

python launch.py --config=configs/mobilenet_v1.py:width=0.75,res=192 --mode=profile
"""

from mobilenet_jax.config import schema as config_lib

# Table 1 as (block type, t, c, n, s). The paper prints stride 2 for the last depthwise layer,
# but its input and output are both 7x7; TF-slim's _CONV_DEFS (and every release) use stride 1.
BLOCKS = (
  ("conv", 1, 32, 1, 2),
  ("separable", 1, 64, 1, 1),
  ("separable", 1, 128, 1, 2),
  ("separable", 1, 128, 1, 1),
  ("separable", 1, 256, 1, 2),
  ("separable", 1, 256, 1, 1),
  ("separable", 1, 512, 1, 2),
  ("separable", 1, 512, 5, 1),
  ("separable", 1, 1024, 1, 2),
  ("separable", 1, 1024, 1, 1),
)


def get_config(arg=None):
  return config_lib.model_config(
    arg,
    "mobilenet_v1",
    BLOCKS,
    preset="paper_v1",
    channel_rounding="truncate",  # TF-slim: max(int(c * alpha), 8)
    bn_momentum=0.9997,  # TF-slim mobilenet_v1_arg_scope
    dropout_rate=0.001,
  )  # TF-slim dropout_keep_prob=0.999
