"""A four-block V2-style net on the embedded digits at 16 pixels: the smoke-test config.

python launch.py --config=configs/tiny.py --workdir=runs/tiny
"""

from configs import mobilenet_v2


def get_config(arg=None):
  config = mobilenet_v2.get_config(arg)
  config.model.name = "tiny"
  config.resolution = 16
  config.model.blocks = (
    ("conv", 1, 16, 1, 2),
    ("inverted_residual", 1, 16, 1, 1),
    ("inverted_residual", 6, 24, 2, 2),
    ("inverted_residual", 6, 32, 1, 2),
  )
  config.model.head_channels = 64
  config.model.num_classes = 10
  config.model.bn_momentum = 0.9  # short runs: running statistics must settle in ~100 steps
  config.model.dropout_rate = 0.0
  config.data.dataset = "digits"
  config.data.batch_size = 64
  config.data.eval_batch_size = 64
  config.data.min_crop_area = 0.6  # 8x8 digits cannot lose much of their area
  config.optimizer.reference_batch_size = 64
  config.training.num_steps = 150
  config.training.log_every_steps = 25
  config.training.checkpoint_every_steps = 50
  return config
