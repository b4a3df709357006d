"""V1 paper Figures 4-5 and Tables 6-7: the 16 models α ∈ {1, 0.75, 0.5, 0.25} × {224, 192,
160, 128}, trained with the paper_v1 preset on ImageNet.

  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenet2012 --data_dir=DIR
  python launch.py --sweep=experiments/v1_tradeoff.py --workdir=runs/v1_tradeoff \
      --config.data.data_dir=DIR --dry_run      # one command per member, for an array job
"""

from experiments import common
from mobilenet_jax.sweeps import definition as sweep

# The paper gives no batch size or epoch count. Inception V3's recipe, which V1 follows, used 50
# replicas of batch 32 for 100 epochs; paper_v1 scales lr 0.045 per 32 images to this batch.
IMAGENET = common.imagenet(batch_size=1600, epochs=100)


def get_sweep():
  return sweep.Sweep(
    "v1_tradeoff",
    sweep.grid(
      "configs/mobilenet_v1.py:preset=paper_v1",
      "v1_{width_multiplier:g}_{resolution}",
      {"model.width_multiplier": (1.0, 0.75, 0.5, 0.25), "resolution": (224, 192, 160, 128)},
      fixed=IMAGENET,
    ),
  )
