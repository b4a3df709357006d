"""A real-image α × ρ grid sized for one GPU or a patient CPU: V2 α ∈ {0.35, 0.5, 1.0} ×
resolution {96, 128, 160} on Imagenette (10 ImageNet classes), 10 epochs each, modern preset.

  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenette
  python launch.py --sweep=experiments/imagenette_tradeoff.py --workdir=runs/imagenette
  # or on an image folder (PATH/{train,val}/<wnid>/*.jpg):
  python launch.py --sweep=experiments/imagenette_tradeoff.py --workdir=runs/imagenette \
      --config.data.dataset=folder:PATH
"""

from mobilenet_jax import sweep

BATCH_SIZE = 64
EPOCHS = 10
TRAIN_IMAGES = 9_469  # imagenette2's train split

FIXED = {"data.dataset": "tfds:imagenette", "model.num_classes": 10,
         "data.batch_size": BATCH_SIZE, "data.eval_batch_size": 125,
         "schedule.warmup_epochs": 0.5,
         "training.num_steps": EPOCHS * TRAIN_IMAGES // BATCH_SIZE,
         "training.log_every_steps": 20, "training.checkpoint_every_steps": 200}


def get_sweep():
  return sweep.Sweep("imagenette_tradeoff", sweep.grid(
      "configs/mobilenet_v2.py:preset=modern", "v2_{width_multiplier:g}_{resolution}",
      {"model.width_multiplier": (1.0, 0.5, 0.35), "resolution": (160, 128, 96)}, fixed=FIXED))
