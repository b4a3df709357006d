"""A real-image α × ρ grid sized for a few hours on a 2-core CPU: V2 α ∈ {0.35, 0.5, 0.75} ×
resolution {64, 96, 128} on Imagenette (10 ImageNet classes), 10 epochs each with the `short`
recipe that benchmarks/accuracy.py trains beside torchvision. Its table, plot, Spearman and wall
time are in the README.

  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenette
  python launch.py --sweep=experiments/imagenette_tradeoff.py --workdir=runs/imagenette
  # or on an image folder (PATH/{train,val}/<wnid>/*.jpg):
  python launch.py --sweep=experiments/imagenette_tradeoff.py --workdir=runs/imagenette \
      --config.data.dataset=folder:PATH
"""

from mobilenet_jax.sweeps import definition as sweep

BATCH_SIZE = 64
EPOCHS = 10
TRAIN_IMAGES = 9_469  # imagenette2's train split
WIDTHS = (0.75, 0.5, 0.35)
RESOLUTIONS = (128, 96, 64)

FIXED = {
  "data.dataset": "tfds:imagenette",
  "model.num_classes": 10,
  "data.batch_size": BATCH_SIZE,
  "data.eval_batch_size": 125,
  "training.num_steps": EPOCHS * TRAIN_IMAGES // BATCH_SIZE,
  "training.log_every_steps": 50,
  "training.checkpoint_every_steps": 250,
}


def get_sweep():
  return sweep.Sweep(
    "imagenette_tradeoff",
    sweep.grid(
      "configs/mobilenet_v2.py:preset=short",
      "v2_{width_multiplier:g}_{resolution}",
      {"model.width_multiplier": WIDTHS, "resolution": RESOLUTIONS},
      fixed=FIXED,
    ),
  )
