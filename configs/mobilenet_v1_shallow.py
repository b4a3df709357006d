"""V1 paper Table 5's "Shallow MobileNet": "the 5 layers of separable filters with feature
size 14x14x512 in Table 1 are removed"."""

from configs import mobilenet_v1


def get_config(arg=None):
  config = mobilenet_v1.get_config(arg)
  config.model.name = "mobilenet_v1_shallow"
  config.model.blocks = tuple(
    row for row in config.model.blocks if row != ("separable", 1, 512, 5, 1)
  )
  return config
