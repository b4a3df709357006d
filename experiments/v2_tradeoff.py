"""V2 paper Figure 5 and Table 4: α ∈ {0.35, 0.5, 0.75, 1.0} × resolution {96, 128, 160, 192,
224}, plus 1.4 at 224 (22 models), with the paper_v2 preset on ImageNet.

  python launch.py --sweep=experiments/v2_tradeoff.py --workdir=runs/v2_tradeoff \
      --config.data.data_dir=DIR --jobs=1
"""

from mobilenet_jax import sweep

# The paper: 16 asynchronous workers with batch 96 each. It gives no epoch count; the TF-slim
# README's recipe converges after ~700K steps of 8 x 96 images, about 400 epochs.
BATCH_SIZE = 16 * 96
EPOCHS = 400
IMAGENET_TRAIN_IMAGES = 1_281_167

IMAGENET = {"data.dataset": "tfds:imagenet2012", "model.num_classes": 1000,
            "data.batch_size": BATCH_SIZE, "data.eval_batch_size": 1000,
            "training.num_steps": EPOCHS * IMAGENET_TRAIN_IMAGES // BATCH_SIZE,
            "training.log_every_steps": 100, "training.checkpoint_every_steps": 2000}
NAME = "v2_{width_multiplier:g}_{resolution}"


def get_sweep():
  grid = sweep.grid("configs/mobilenet_v2.py:preset=paper_v2", NAME,
                    {"model.width_multiplier": (1.0, 0.75, 0.5, 0.35),
                     "resolution": (224, 192, 160, 128, 96)}, fixed=IMAGENET)
  widest = sweep.grid("configs/mobilenet_v2.py:preset=paper_v2", NAME,
                      {"model.width_multiplier": (1.4,), "resolution": (224,)}, fixed=IMAGENET)
  return sweep.Sweep("v2_tradeoff", widest + grid)
