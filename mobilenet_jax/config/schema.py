"""The config schema: every key declared once, with its default, its doc, what values it allows,
its role, the value that runs written before it existed used, and its earlier defaults.

`base_config()`, `validate()`, a workdir's comparisons (workdir.py), the sweep report's grouping,
the unknown-key messages and `launch.py --mode=keys` all read `KEYS`. Adding a knob is one `Key`
line here plus its use; a registry-backed key (`choices=` a registry) allows the registry's names.
Checks that relate keys to each other are the short list in `CROSS_CHECKS`.
"""

import dataclasses
import difflib
import math
from typing import Any, Callable

import ml_collections

from mobilenet_jax.config import presets
from mobilenet_jax.core import errors, tracking
from mobilenet_jax.data import sources
from mobilenet_jax.models import blocks, convolutions, importers, layers, mobilenet, quantization
from mobilenet_jax.train import optim

# What a key is to a run. A workdir resumes with other values of placement keys only; scores a
# checkpoint only with its own model keys; the sweep report groups members over every key but
# seed, placement and bookkeeping ones.
ROLES = {
  "model": "the function the weights compute: a checkpoint is scored only with its own values",
  "recipe": "how the weights are trained",
  "seed": "one draw of the recipe: the report gives the mean and spread over seeds",
  "placement": "where and how a run trains, not what it computes: a workdir resumes with others",
  "bookkeeping": "where a run is filed (W&B): not part of the configuration the report groups",
}
NOT_ADDED = object()  # a key that runs have had from the first release


@dataclasses.dataclass(frozen=True)
class Bound:
  """Numbers from `low` to `high`, each end open or closed; `why` explains the limit."""

  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False
  why: str = ""

  def allows(self, value):
    return (
      math.isfinite(value)
      and (value > self.low if self.low_open else value >= self.low)
      and (value < self.high if self.high_open else value <= self.high)
    )

  def __str__(self):
    if self.high == math.inf:
      text = f"{'>' if self.low_open else '>='} {self.low:g}"
    else:
      text = (
        f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
        f"{')' if self.high_open else ']'}"
      )
    return text + (f" ({self.why})" if self.why else "")


POSITIVE = Bound(0, low_open=True)
AT_LEAST_1 = Bound(1)
FRACTION = Bound(0, 1, low_open=True)  # (0, 1]


@dataclasses.dataclass(frozen=True)
class Key:
  name: str  # dotted, below `config`
  default: Any
  doc: str
  role: str
  choices: Any = None  # a tuple of values, or a registry (a dict: its names)
  bound: Bound | None = None
  empty_allowed: bool = False  # '' passes `choices` (nothing chosen)
  # For a 'NAME:ARG' value of a registry: reads the whole spelling, or raises a one-line error.
  parse: Callable[[str], Any] | None = None
  before: Any = NOT_ADDED
  # The key's defaults in earlier releases: a workdir that recorded one of them, asked for the
  # current default, is the run it names and continues with what it recorded.
  earlier_defaults: tuple = ()

  def allowed(self):
    """What the key allows, in words."""
    if self.choices is not None:
      return str(list(self.choices)) + (" or ''" if self.empty_allowed else "")
    return str(self.bound) if self.bound else f"a {type(self.default).__name__}"


def _k(name, default, doc, role="recipe", **kwargs):
  return Key(name, default, doc, role, **kwargs)


KEYS = (
  _k("seed", 0, "The run's random seed: initial weights, dropout and the input order.", "seed"),
  _k(
    "resolution",
    224,
    "Input pixels per side; rho = resolution / 224 in the papers' notation.",
    "model",
    bound=AT_LEAST_1,
  ),
  # The model.
  _k(
    "model.name",
    "mobilenet_v2",
    "The architecture's name (importers and reports read it).",
    "model",
  ),
  _k(
    "model.blocks",
    (),
    "The block table, one row per group of identical blocks as in the "
    "papers: (block type, expansion t, output channels c, repeats n, stride s[, options]).",
    "model",
  ),
  _k(
    "model.width_multiplier",
    1.0,
    "alpha: every layer's channels scaled by it.",
    "model",
    bound=Bound(0, low_open=True, why="a finite number; the papers use 0.25 to 1.4"),
  ),
  _k(
    "model.channel_rounding",
    "make_divisible",
    "'truncate' is TF-slim V1's max(int(c * "
    "alpha), 8); 'make_divisible' is V2's multiples of 8, never 10% below c * alpha.",
    "model",
    choices=("truncate", "make_divisible"),
  ),
  _k(
    "model.min_channels", 8, "No layer narrower than this after alpha.", "model", bound=AT_LEAST_1
  ),
  _k(
    "model.head_channels",
    0,
    "The 1x1 conv after the blocks (V2's 1280); 0 for none. Scaled only when alpha > 1.",
    "model",
    bound=Bound(0),
  ),
  _k(
    "model.pooled_head_channels",
    0,
    "The 1x1 conv after the pool (V3's 1280 or 1024, MNv4's "
    "1280); 0 for none. Scaled as head_channels.",
    "model",
    bound=Bound(0),
    before=0,
  ),
  _k(
    "model.pooled_head_norm",
    False,
    "The pooled head with BN (MNv4), not a bias (V3).",
    "model",
    before=False,
  ),
  _k(
    "model.num_classes",
    1000,
    "Classifier outputs (1001 for TF-slim's background class).",
    "model",
    bound=AT_LEAST_1,
  ),
  _k(
    "model.dropout_rate",
    0.0,
    "Dropout before the classifier.",
    "model",
    bound=Bound(0, 1, high_open=True),
  ),
  _k(
    "model.activation",
    "relu6",
    "The blocks' activation where a row names none.",
    "model",
    choices=layers.ACTIVATIONS,
  ),
  _k(
    "model.bn_momentum",
    0.997,
    "TF / Flax convention: running = momentum * running + (1 - momentum) * batch.",
    "model",
    bound=Bound(0, 1, True, True, "in TF/Flax convention (0.997 keeps 99.7% of the running value)"),
  ),
  _k(
    "model.bn_epsilon",
    1e-3,
    "BN's epsilon (PyTorch-trained weights: 1e-5).",
    "model",
    bound=POSITIVE,
  ),
  _k(
    "model.padding",
    "same",
    "Every conv's padding: 'same' as TF (the odd pixel at the end), 'symmetric' as PyTorch "
    "(k // 2 each side), which timm's PyTorch-trained weights need.",
    "model",
    choices=convolutions.PADDINGS,
    before="same",
  ),
  _k(
    "model.input_mean",
    mobilenet.NEUTRAL_NORMALIZATION,
    "Per-channel mean of [0, 1] pixels the model subtracts; 0.5 with std 0.5 is [-1, 1].",
    "model",
    before=mobilenet.NEUTRAL_NORMALIZATION,
  ),
  _k(
    "model.input_std",
    mobilenet.NEUTRAL_NORMALIZATION,
    "Per-channel std the model divides the centred pixels by (ImageNet's: 0.229, 0.224, 0.225).",
    "model",
    before=mobilenet.NEUTRAL_NORMALIZATION,
  ),
  _k(
    "model.stem_fixed_below_width",
    0.0,
    "The first row keeps its channels when width_multiplier is below this: timm keeps MNv4's "
    "stem at 32 below 1.0 (and V3's at 16 below 0.75); 0 = always scaled, as TF Model Garden.",
    "model",
    bound=Bound(0),
    before=0.0,
  ),
  _k(
    "model.dtype",
    "float32",
    "Activations' dtype (parameters stay float32).",
    "model",
    choices=("float32", "bfloat16"),
  ),
  _k(
    "model.conv_impl",
    "auto",
    "How depthwise and 1x1 convolutions are computed; all give the "
    "same numbers and parameters. 'auto' picks the fastest measured for the backend.",
    "model",
    choices=("auto", *convolutions.CONV_IMPLS),
  ),
  _k(
    "model.kernel_init",
    "he_fan_out",
    "Conv and classifier initialisation: 'he_fan_out' as "
    "torchvision and timm, 'slim' as the papers' TF-slim code, 'he_fan_in'.",
    "model",
    choices=layers.KERNEL_INITS,
    before="he_fan_in",
  ),
  _k(
    "model.quantized",
    False,
    "Quantization-aware: the model computes what its int8 export computes (BN folded, int8 "
    "weights per channel and activations per tensor, straight-through gradients).",
    "model",
    before=False,
  ),
  # The data.
  _k(
    "data.dataset",
    "digits",
    "A registered source: 'digits' and 'glyphs' (no download), "
    "'folder:PATH' (PATH/{train,val}/<class>/*.jpg), 'tfds:NAME' (prepared under data_dir), "
    "'pixels:PATH' (a pixel store, prepare_data --pixel_store).",
    choices=sources.DATASETS,
    parse=sources.parse_dataset,
  ),
  _k("data.data_dir", "", "tensorflow-datasets' data directory ('' = its default)."),
  _k("data.batch_size", 96, "Global batch, over all devices and processes.", bound=AT_LEAST_1),
  _k("data.eval_batch_size", 256, "Global evaluation batch.", bound=AT_LEAST_1),
  _k(
    "data.min_crop_area",
    0.25,
    "Inception-style crops cover at least this fraction of the "
    "image (the papers' reduced distortion; Inception uses 0.08).",
    bound=FRACTION,
  ),
  _k(
    "data.central_crop_fraction",
    0.875,
    "Evaluation's central crop, per side.",
    "model",
    bound=FRACTION,
  ),
  _k("data.class_names", "", "Optional file: one class folder name per line, fixing labels."),
  _k(
    "data.augment_on_device",
    False,
    "The training crop and evaluation's central crop drawn and resized in the jitted steps from "
    "each image's stored pixels (a pixel store, digits or glyphs); the host sends them uncropped.",
    before=False,
  ),
  _k(
    "data.pixels_on_device",
    False,
    "With augment_on_device: the training split's canvases held in the accelerators' memory, "
    "sharded over the devices, read once at the start; the host sends each example's index "
    "(the same batches, no pixels through the host).",
    "placement",
    before=False,
  ),
  _k(
    "data.pixels_in_host_memory",
    False,
    "With augment_on_device: the training split's canvases read once into this process's memory "
    "and each batch's gathered there (the same batches, no store reads), where the accelerators "
    "cannot hold them; batches made by threads (worker_processes=0).",
    "placement",
    before=False,
  ),
  _k(
    "data.allow_upsampling",
    False,
    "Train from a pixel store whose max_side is below config.resolution (every crop upsampled).",
    before=False,
  ),
  _k(
    "data.max_eval_examples",
    0,
    "Examples evaluated; 0 = the whole split.",
    bound=Bound(0, why="0 = the whole split"),
  ),
  _k(
    "data.worker_processes",
    0,
    "Training batches made by threads in the training process "
    "(0) or by this many grain worker processes; the batches are the same either way.",
    "placement",
    bound=Bound(0, why="0 = threads in the training process"),
  ),
  # The optimizer and its schedule.
  _k(
    "optimizer.name", "tf1_rmsprop", "The update rule (optim.OPTIMIZERS).", choices=optim.OPTIMIZERS
  ),
  _k(
    "optimizer.learning_rate",
    0.045,
    "At reference_batch_size; scaled by batch / reference.",
    bound=Bound(0),
  ),
  _k(
    "optimizer.reference_batch_size", 96, "The batch learning_rate is given for.", bound=AT_LEAST_1
  ),
  _k(
    "optimizer.rms_decay",
    0.9,
    "TF1 RMSprop's decay of the squared-gradient average.",
    bound=Bound(0, 1),
  ),
  _k("optimizer.momentum", 0.9, "Momentum (0 = none).", bound=Bound(0, 1)),
  _k("optimizer.epsilon", 1.0, "TF1 RMSprop's epsilon, inside the square root.", bound=Bound(0)),
  _k(
    "optimizer.weight_decay",
    4e-5,
    "Coupled L2, added to the gradient before the update.",
    bound=Bound(0),
  ),
  _k(
    "optimizer.weight_decay_exclude",
    ("depthwise/", "/bn/", "bias$"),
    "Regexes over parameter paths that get no L2: depthwise kernels (V1 paper), BN, biases.",
  ),
  _k("optimizer.grad_clip_norm", 0.0, "Global-norm gradient clipping; 0 = none.", bound=Bound(0)),
  _k(
    "schedule.name",
    "exponential",
    "The learning-rate decay (optim.SCHEDULES).",
    choices=optim.SCHEDULES,
  ),
  _k(
    "schedule.decay_rate",
    0.98,
    "Exponential: the factor per decay_epochs.",
    bound=Bound(0, 1, low_open=True),
  ),
  _k("schedule.decay_epochs", 1.0, "Exponential: epochs between decays.", bound=POSITIVE),
  _k("schedule.staircase", True, "Exponential: drop in steps, not continuously."),
  _k("schedule.warmup_epochs", 0.0, "Linear warmup from 0, in epochs.", bound=Bound(0)),
  # Training.
  _k("training.num_steps", 1000, "Training steps.", bound=AT_LEAST_1),
  _k("training.label_smoothing", 0.0, "Label smoothing.", bound=Bound(0, 1, high_open=True)),
  _k(
    "training.ema_decay",
    0.0,
    "0 = no EMA of weights; TF's min(decay, (1 + t) / (10 + t)) warm-up.",
    bound=Bound(0, 1, high_open=True),
  ),
  _k(
    "training.log_every_steps",
    50,
    "Steps between logged metrics.",
    bound=Bound(1, why="steps between logged metrics"),
  ),
  _k(
    "training.eval_every_steps",
    0,
    "Steps between evaluations; 0 = only at the end.",
    bound=Bound(0, why="0 = only at the end"),
  ),
  _k(
    "training.checkpoint_every_steps",
    500,
    "Steps between checkpoints.",
    bound=Bound(1, why="steps between checkpoints"),
  ),
  _k(
    "training.keep_checkpoints",
    3,
    "Checkpoints kept.",
    bound=Bound(1, why="0 would delete every checkpoint, the trained model's too"),
  ),
  _k(
    "training.measure_latency",
    True,
    "Batch-1 latency and inference img/s of the final model, in summary.json.",
    before=True,
  ),
  _k(
    "training.onnx_latency",
    False,
    "Also export the final model to ONNX "
    "(export/model.onnx) and record its onnxruntime batch-1 latency.",
    before=False,
  ),
  _k(
    "training.int8",
    "none",
    "int8 of the final model recorded beside float: 'post_training' exports it (folded, "
    "calibrated on training images), 'qat' fine-tunes it quantization-aware in WORKDIR/qat "
    "(config.qat) and exports that with the ranges it learned; either records its int8 "
    "onnxruntime top-1 and latency.",
    choices=("none", "post_training", "qat"),
    before="none",
  ),
  _k(
    "training.int8_calibration_examples",
    100,
    "Training images post-training int8's activation ranges are calibrated on.",
    bound=AT_LEAST_1,
    before=100,
  ),
  # Quantization-aware training (config.model.quantized, or training.int8='qat').
  _k(
    "qat.num_steps",
    300,
    "training.int8='qat': steps of quantization-aware fine-tuning after the float run.",
    bound=AT_LEAST_1,
    before=300,
  ),
  # 0.005 until 2026-12-07: once BN froze, a quickstart member fell 13 points below float at
  # 0.005; at 0.001 all nine stay above it (docs/results.md).
  _k(
    "qat.learning_rate",
    0.001,
    "training.int8='qat': the fine-tuning's optimizer.learning_rate (its schedule is the float "
    "run's, over qat.num_steps).",
    bound=POSITIVE,
    before=0.005,
    earlier_defaults=(0.005,),
  ),
  _k(
    "qat.freeze_bn_step",
    200,
    "Steps after which BN's running statistics are frozen and the folded conv stops using "
    "batch statistics.",
    bound=Bound(0),
    before=200,
  ),
  _k(
    "qat.range_decay",
    0.99,
    "EMA decay of each activation's int8 range (batch min and max).",
    bound=Bound(0, 1, high_open=True),
    before=0.99,
  ),
  _k(
    "training.preset",
    "",
    "The named recipe the config argument preset=NAME applied.",
    choices=presets.PRESETS,
    empty_allowed=True,
  ),
  # Devices.
  _k(
    "mesh",
    (("data", -1),),
    "Device mesh axes as (name, size) pairs, -1 = all remaining "
    "devices; the batch is split over 'data'.",
  ),
  _k(
    "param_sharding",
    (),
    "(regex over parameter paths, partition spec as a tuple of mesh axis "
    "names or None) rules; parameters are replicated otherwise.",
  ),
  # Weights to start from.
  _k(
    "init_from",
    "",
    "Imported weights to start from, 'KIND:PATH' (importers.FORMATS).",
    choices=importers.FORMATS,
    empty_allowed=True,
    parse=importers.parse_init_from,
  ),
  _k("init_new_classifier", False, "With init_from: a fresh classifier (any num_classes)."),
  # A teacher to learn from (train/distill.py).
  _k(
    "distill.teacher",
    "",
    "The teacher's weights, 'KIND:PATH' as init_from names them; '' = no teacher.",
    choices=importers.FORMATS,
    empty_allowed=True,
    parse=importers.parse_init_from,
    before="",
  ),
  _k(
    "distill.teacher_config",
    "",
    "The teacher's config file 'FILE[:ARG]' (its architecture, width and resolution); '' = "
    "the student's model, in float.",
    before="",
  ),
  _k(
    "distill.teacher_classes",
    "",
    "The teacher's class names, one per line in its output order (past TF-slim's background "
    "slot), matched to the student's by name; '' = the same outputs as the student's.",
    before="",
  ),
  _k(
    "distill.temperature",
    1.0,
    "Both distributions are softened by it (Hinton et al. 2015); the loss is scaled by its square.",
    bound=POSITIVE,
    before=1.0,
  ),
  _k(
    "distill.weight",
    1.0,
    "The distillation loss's share against the label loss: 0 = labels only, 1 = teacher only.",
    bound=Bound(0, 1),
    before=1.0,
  ),
  _k(
    "distill.cache",
    "",
    "A directory of the teacher's outputs for every step, computed once by the first run that "
    "needs them and read by every run with the same teacher, data, seed and batch (a sweep's "
    "members); needs data.augment_on_device. '' = the teacher runs in every step.",
    "placement",
    before="",
  ),
  # W&B.
  _k(
    "wandb.mode",
    "auto",
    "'auto' = online when WANDB_API_KEY is set, else offline (files under the workdir).",
    "bookkeeping",
    choices=tracking.WANDB_MODES,
  ),
  _k("wandb.project", "mobilenet_jax", "W&B project.", "bookkeeping"),
  _k("wandb.entity", "", "W&B entity ('' = the key's default).", "bookkeeping"),
  _k("wandb.group", "", "W&B group (a sweep sets its name).", "bookkeeping"),
  _k("wandb.tags", (), "W&B tags (alpha and resolution are added).", "bookkeeping"),
  # What one run asks a Ray cluster for (launch.py --sweep=... --launcher=ray).
  _k(
    "resources.processes",
    1,
    "jax.distributed processes (hosts), one Ray task each.",
    "placement",
    bound=AT_LEAST_1,
  ),
  _k("resources.cpus", 1.0, "CPUs per process.", "placement", bound=Bound(0)),
  _k("resources.gpus", 0.0, "GPUs per process.", "placement", bound=Bound(0)),
  _k(
    "resources.tpus",
    0.0,
    "TPU chips per process (Ray's 'TPU' resource).",
    "placement",
    bound=Bound(0),
  ),
  _k(
    "resources.placement",
    "SPREAD",
    "Ray placement-group strategy; STRICT_SPREAD puts each process on its own node.",
    "placement",
    choices=("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
  ),
  _k(
    "resources.max_retries",
    3,
    "Relaunches after a worker or node dies; each resumes.",
    "placement",
    bound=Bound(0),
  ),
)
BY_NAME = {key.name: key for key in KEYS}


def role(dotted: str) -> str:
  """The role of a 'config.'-prefixed dotted key (or of a key below one, as in model.blocks)."""
  name = dotted[len("config.") :] if dotted.startswith("config.") else dotted
  while name not in BY_NAME and "." in name:
    name = name.rsplit(".", 1)[0]
  return BY_NAME[name].role if name in BY_NAME else "recipe"


def added_keys() -> dict[str, Any]:
  """{'config.' + key: value} for the keys added after runs had been written."""
  return {f"config.{key.name}": key.before for key in KEYS if key.before is not NOT_ADDED}


def changed_defaults() -> dict[str, tuple[Any, tuple]]:
  """{'config.' + key: (its default, its earlier defaults)} for the keys whose default changed."""
  return {
    f"config.{key.name}": (key.default, key.earlier_defaults)
    for key in KEYS
    if key.earlier_defaults
  }


def base_config() -> ml_collections.ConfigDict:
  """All config keys with their defaults; a config file adds the model's block table."""
  config = ml_collections.ConfigDict()
  for key in KEYS:
    *groups, leaf = key.name.split(".")
    node = config
    for group in groups:
      if group not in node:
        node[group] = ml_collections.ConfigDict()
      node = node[group]
    node[leaf] = key.default
  return config


def model_config(arg, name, blocks, preset, **model):
  """A config file's config: the base config with a block table, the config argument's
  width=, res= and preset= applied, and the model fields that differ from the defaults."""
  arg = parse_arg(arg, width=1.0, res=model.pop("resolution", 224), preset=preset)
  config = base_config()
  config.resolution = arg.res
  config.model.name = name
  config.model.blocks = blocks
  config.model.width_multiplier = arg.width
  for key, value in model.items():
    config.model[key] = value
  return presets.apply_preset(config, arg.preset)


def parse_arg(arg, **defaults):
  """Parses a config file's 'key=value,key=value' argument into `defaults`' keys and types."""
  parsed = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    if not sep or key not in defaults:
      raise errors.ConfigError(
        f"config argument {item!r}: expected key=value with key one of {sorted(defaults)}"
      )
    kind = type(defaults[key])
    try:
      parsed[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    except ValueError:
      raise errors.ConfigError(
        f"config argument {key}={value!r}: expected a {kind.__name__}"
      ) from None
  return ml_collections.ConfigDict(parsed)


def _compatible(schema_value, value):
  if isinstance(schema_value, bool) or isinstance(value, bool):
    return isinstance(schema_value, bool) == isinstance(value, bool)
  if isinstance(schema_value, float):
    return isinstance(value, (int, float))
  if isinstance(schema_value, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(schema_value))


def unknown_key(path, allowed):
  """The one message for a key the schema does not have: the closest key and the allowed ones."""
  *_, key = path.split(".")
  prefix = path.rsplit(".", 1)[0]
  close = difflib.get_close_matches(key, list(allowed), n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  return f"unknown config key {path}{hint}; keys allowed under {prefix}: {sorted(allowed)}"


def check_keys(config, schema, prefix="config"):
  """Refuses keys the schema does not have and values of another type, recursively."""
  for key in config.keys():
    path = f"{prefix}.{key}"
    if key not in schema:
      raise errors.ConfigError(unknown_key(path, schema.keys()))
    value, expected = config[key], schema[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise errors.ConfigError(
          f"{path} must be a config group with keys {sorted(expected.keys())}"
        )
      check_keys(value, expected, path)
    elif not _compatible(expected, value):
      raise errors.ConfigError(
        f"{path}={value!r} has type {type(value).__name__}; expected "
        f"{type(expected).__name__} like the default {expected!r}"
      )


def value_of(config, name):
  for part in name.split("."):
    config = config[part]
  return config


def check_value(key, value):
  """Refuses a value outside the key's choices or bound, naming the key and what it allows."""
  if key.empty_allowed and value == "":
    return
  if key.parse is not None:
    key.parse(value)
  elif key.choices is not None and value not in key.choices:
    raise errors.ConfigError(f"config.{key.name}={value!r}; allowed: {key.allowed()}")
  if key.bound is not None and not key.bound.allows(value):
    raise errors.ConfigError(f"config.{key.name}={value}; allowed: {key.bound}")


def _blocks_fit_the_resolution(config):
  total_stride = blocks.check_rows(config.model.blocks)
  if config.resolution < total_stride:
    raise errors.ConfigError(
      f"config.resolution={config.resolution} collapses the feature map: the blocks "
      f"downsample by {total_stride}, so allowed resolutions are integers >= {total_stride}"
    )


def _quantized_layers_are_supported(config):
  if config.model.quantized or config.training.int8 == "qat":
    quantization.check_supported(
      config.model,
      mobilenet.build_plan(config.model),
      mobilenet.pooled_head_channels(config.model),
      "config.model.quantized=True" if config.model.quantized else "config.training.int8='qat'",
    )
  if config.model.quantized and config.training.int8 != "none":
    raise errors.ConfigError(
      f"config.training.int8={config.training.int8!r} with config.model.quantized=True: a "
      "quantization-aware run exports its own int8 model with the ranges it learned; set "
      "training.int8='none'"
    )
  if config.training.int8 == "qat" and config.qat.freeze_bn_step > config.qat.num_steps:
    raise errors.ConfigError(
      f"config.qat.freeze_bn_step={config.qat.freeze_bn_step} is after the fine-tuning's last "
      f"step (config.qat.num_steps={config.qat.num_steps}); BN would never be frozen"
    )


def _input_normalization_is_per_channel(config):
  for key in ("input_mean", "input_std"):
    value = tuple(config.model[key])
    if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
      raise errors.ConfigError(f"config.model.{key}={value!r}: give 3 numbers, one per RGB channel")
  if min(config.model.input_std) <= 0:
    raise errors.ConfigError(
      f"config.model.input_std={tuple(config.model.input_std)!r}: every std must be > 0"
    )


def _mesh_has_a_data_axis(config):
  if "data" not in [name for name, _ in config.mesh]:
    raise errors.ConfigError(
      f"config.mesh={tuple(map(tuple, config.mesh))} has no 'data' axis; the "
      "batch is split over the axis named 'data', e.g. (('data', -1),)"
    )


def _held_pixels_are_cropped_on_the_device(config):
  data = config.data
  for key in ("pixels_on_device", "pixels_in_host_memory"):
    if data[key] and not data.augment_on_device:
      raise errors.ConfigError(
        f"config.data.{key}=True needs config.data.augment_on_device=True: it holds uncropped "
        "pixels for the steps to crop"
      )
  if data.pixels_on_device and data.pixels_in_host_memory:
    raise errors.ConfigError(
      "config.data.pixels_on_device and config.data.pixels_in_host_memory are both True: the "
      "canvases are held in one place, set one"
    )
  if data.pixels_in_host_memory and data.worker_processes:
    raise errors.ConfigError(
      f"config.data.pixels_in_host_memory=True with config.data.worker_processes="
      f"{data.worker_processes}: the canvases are gathered from the training process's memory "
      "by its threads, set worker_processes=0"
    )


def _teacher_keys_have_a_teacher(config):
  for key in ("teacher_config", "teacher_classes", "cache"):
    if config.distill[key] and not config.distill.teacher:
      raise errors.ConfigError(
        f"config.distill.{key}={config.distill[key]!r} without config.distill.teacher: name "
        "the teacher's weights, 'KIND:PATH' as init_from names them"
      )
  if config.distill.cache and not config.data.augment_on_device:
    raise errors.ConfigError(
      f"config.distill.cache={config.distill.cache!r} needs config.data.augment_on_device=True: "
      "only crops drawn on the device are the same for every run that shares the cache"
    )


# Checks over several keys, after every key passed its own.
CROSS_CHECKS: tuple[Callable[[ml_collections.ConfigDict], None], ...] = (
  _blocks_fit_the_resolution,
  _input_normalization_is_per_channel,
  _mesh_has_a_data_axis,
  _quantized_layers_are_supported,
  _held_pixels_are_cropped_on_the_device,
  _teacher_keys_have_a_teacher,
)


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Raises errors.ConfigError for the first problem found; returns the config unchanged."""
  check_keys(config, base_config())
  for key in KEYS:
    check_value(key, value_of(config, key.name))
  for check in CROSS_CHECKS:
    check(config)
  return config
