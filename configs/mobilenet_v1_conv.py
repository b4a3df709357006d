"""V1 paper Table 4's "Conv MobileNet": every depthwise-separable block a full 3x3 conv."""

from configs import mobilenet_v1


def get_config(arg=None):
  config = mobilenet_v1.get_config(arg)
  config.model.name = "mobilenet_v1_conv"
  config.model.blocks = tuple(("conv",) + tuple(row[1:]) for row in config.model.blocks)
  return config
