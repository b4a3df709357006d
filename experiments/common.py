"""Overrides the ImageNet sweeps share."""

IMAGENET_TRAIN_IMAGES = 1_281_167


def imagenet(batch_size, epochs):
  """tfds:imagenet2012 with 1000 classes for `epochs` epochs of global batch `batch_size`."""
  return {
    "data.dataset": "tfds:imagenet2012",
    "model.num_classes": 1000,
    "data.batch_size": batch_size,
    "data.eval_batch_size": 1000,
    "training.num_steps": epochs * IMAGENET_TRAIN_IMAGES // batch_size,
    "training.log_every_steps": 100,
    "training.checkpoint_every_steps": 2000,
  }
