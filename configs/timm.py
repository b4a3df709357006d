"""timm's MobileNets with everything their published weights need: architecture, width,
padding, BN epsilon, input normalization, resolution and eval crop (timm 1.0's
`mobilenetv3.py` / `efficientnet.py` generators and default pretrained configs).

  python launch.py --config=configs/timm.py:mobilenetv4_hybrid_medium --mode=profile
  python launch.py --config=configs/timm.py:mobilenetv3_large_100 \\
    --config.init_from=timm:model.safetensors --mode=eval

timm's eval resize is bicubic; this project's pipeline resizes bilinearly (top-1 may differ a
little from timm's published figure).
"""

import functools
import importlib

import jax

from mobilenet_jax.core import errors
from mobilenet_jax.models import importers

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # [-1, 1]

# timm name: (this project's config, width, resolution, eval crop, (mean, std), TF-ported).
# PyTorch-trained models pad symmetrically with BN epsilon 1e-5; tf_ ports pad as TF with 1e-3.
MODELS = {
  "mobilenetv1_100": ("mobilenet_v1", 1.0, 224, 0.875, INCEPTION, False),
  **{
    f"mobilenetv2_{round(w * 100):03d}": ("mobilenet_v2", w, 224, 0.875, IMAGENET, False)
    for w in (0.35, 0.5, 0.75, 1.0, 1.4)
  },
  **{
    f"mobilenetv3_large_{round(w * 100):03d}": (
      "mobilenet_v3_large",
      w,
      224,
      0.875,
      IMAGENET,
      False,
    )
    for w in (0.75, 1.0)
  },
  **{
    f"mobilenetv3_small_{round(w * 100):03d}": (
      "mobilenet_v3_small",
      w,
      224,
      0.875,
      IMAGENET,
      False,
    )
    for w in (0.5, 0.75, 1.0)
  },
  **{
    f"tf_mobilenetv3_{size}_{round(w * 100):03d}": (
      f"mobilenet_v3_{size}",
      w,
      224,
      0.875,
      INCEPTION,
      True,
    )
    for size in ("large", "small")
    for w in (0.75, 1.0)
  },
  "mobilenetv4_conv_small_035": ("mobilenet_v4_conv_small", 0.35, 224, 0.875, INCEPTION, False),
  "mobilenetv4_conv_small_050": ("mobilenet_v4_conv_small", 0.5, 224, 0.875, INCEPTION, False),
  "mobilenetv4_conv_small": ("mobilenet_v4_conv_small", 1.0, 224, 0.875, IMAGENET, False),
  "mobilenetv4_conv_medium": ("mobilenet_v4_conv_medium", 1.0, 256, 0.95, IMAGENET, False),
  "mobilenetv4_conv_large": ("mobilenet_v4_conv_large", 1.0, 384, 0.95, IMAGENET, False),
  "mobilenetv4_hybrid_medium": ("mobilenet_v4_hybrid_medium", 1.0, 256, 0.95, IMAGENET, False),
  "mobilenetv4_hybrid_large": ("mobilenet_v4_hybrid_large", 1.0, 384, 0.95, IMAGENET, False),
}
# Below these widths timm keeps the stem's channels (V3: fix_stem below 0.75; MNv4 below 1.0).
_STEM_FIXED_BELOW = {"mobilenet_v3": 0.75, "mobilenet_v4": 1.0}


def get_config(arg=None):
  if arg not in MODELS:
    raise errors.ConfigError(f"configs/timm.py:{arg}: unknown timm model; allowed: {list(MODELS)}")
  architecture, width, resolution, crop, (mean, std), tf_ported = MODELS[arg]
  config = importlib.import_module(f"configs.{architecture}").get_config(
    f"width={width},res={resolution}"
  )
  model = config.model
  model.channel_rounding = "make_divisible"  # timm's round_channels, V1 included
  model.padding = "same" if tf_ported else "symmetric"
  model.bn_epsilon = 1e-3 if tf_ported else 1e-5
  model.input_mean, model.input_std = mean, std
  model.stem_fixed_below_width = _STEM_FIXED_BELOW.get(architecture[:12], 0.0)
  config.data.central_crop_fraction = crop
  config.wandb.tags = (f"timm:{arg}",)
  return config


@functools.lru_cache(maxsize=None)
def _plan(name):
  from mobilenet_jax.models import mobilenet

  return mobilenet.build_plan(get_config(name).model)


@functools.lru_cache(maxsize=None)
def _variable_shapes(name):
  """timm's `name`'s variables, traced, not compiled."""
  from mobilenet_jax.models import mobilenet

  config = get_config(name)
  model = mobilenet.build_model(config)
  return jax.eval_shape(
    functools.partial(model.init, jax.random.key(0)),
    jax.ShapeDtypeStruct(mobilenet.input_shape(config), "float32"),
  )


def models_fitting(tensors):
  """The timm models (of MODELS) whose checkpoints have exactly `tensors`' names and shapes;
  only those with as many blocks and the same stem width (read off the plan) are traced."""
  shapes = {name: tuple(array.shape) for name, array in tensors.items()}
  prefixes = importers.timm_block_prefixes(tensors)
  stem = shapes.get("conv_stem.weight", (0,))[0]
  fitting = []
  for name in MODELS:
    plan = _plan(name)
    if len(plan) - 1 != len(prefixes) or plan[0].out_channels != stem:
      continue
    names = importers.timm_names(plan, prefixes)
    if importers.expected_timm_shapes(_variable_shapes(name), names) == shapes:
      fitting.append(name)
  return fitting


importers.TIMM_LOOKALIKES.append(models_fitting)
