"""The config schema: every key with its default, and the checks that refuse bad values.

`base_config()` is the single source of truth for which keys exist and what type each has;
config files start from it and change values. `validate()` compares a config against it, so a
misspelt key, a wrong type or a value outside its allowed set fails early with a message that
names the key and what it may be.
"""

import difflib
import math

import ml_collections

from mobilenet_jax import blocks, errors, layers, presets

# config.init_from = 'KIND:PATH': the weight formats importers.py reads.
WEIGHT_KINDS = ("keras_h5", "keras_tfjs", "slim_ckpt", "slim_npy")
CHOICES = {
    "model.channel_rounding": ("truncate", "make_divisible"),
    "model.activation": tuple(layers.ACTIVATIONS),
    "model.dtype": ("float32", "bfloat16"),
    "model.conv_impl": ("auto", "xla", "shifted"),
    "model.kernel_init": ("he_fan_out", "slim", "he_fan_in"),
    "optimizer.name": ("tf1_rmsprop", "momentum", "nesterov"),
    "schedule.name": ("exponential", "cosine"),
    "wandb.mode": ("auto", "online", "offline", "disabled"),
    "resources.placement": ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
}
STRIDES = (1, 2)



def base_config():
  """All config keys with their defaults; a config file adds the model's block table."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Input pixels per side; rho = resolution / 224 in the papers' notation.
  config.resolution = 224

  config.model = ml_collections.ConfigDict()
  config.model.name = "mobilenet_v2"
  # One row per group of identical blocks, as in the papers' tables:
  # (block type, expansion t, output channels c, repeats n, stride of the first repeat s).
  config.model.blocks = ()
  config.model.width_multiplier = 1.0
  # 'truncate' is TF-slim V1's max(int(c * alpha), 8); 'make_divisible' is V2's rounding to
  # multiples of 8 that never goes more than 10% below c * alpha.
  config.model.channel_rounding = "make_divisible"
  config.model.min_channels = 8
  # The 1x1 conv after the blocks (V2's 1280); 0 for none. Scaled only when alpha > 1.
  config.model.head_channels = 0
  # The 1x1 conv after the pool (V3's 1280 or 1024, MNv4's 1280); 0 for none. Scaled as
  # head_channels.
  # With a bias (V3), or with BN (MNv4: pooled_head_norm).
  config.model.pooled_head_channels = 0
  config.model.pooled_head_norm = False
  config.model.num_classes = 1000
  config.model.dropout_rate = 0.0
  config.model.activation = "relu6"
  # TF / Flax convention: running = momentum * running + (1 - momentum) * batch.
  config.model.bn_momentum = 0.997
  config.model.bn_epsilon = 1e-3
  config.model.dtype = "float32"
  # How depthwise and 1x1 convolutions are computed; all give the same numbers and the same
  # parameters. 'auto' picks the fastest measured one for the backend (convolutions.py).
  config.model.conv_impl = "auto"
  # Conv and classifier initialisation (layers.KERNEL_INITS): 'he_fan_out' as torchvision and
  # timm (the default: the init of the reference benchmarks/accuracy.py compares with), 'slim'
  # as the papers' TF-slim code, 'he_fan_in'.
  config.model.kernel_init = "he_fan_out"

  config.data = ml_collections.ConfigDict()
  # 'digits' (ships with scikit-learn), 'folder:PATH' (PATH/{train,val}/<class>/*.jpg) or
  # 'tfds:NAME' (tensorflow-datasets, prepared under data_dir).
  config.data.dataset = "digits"
  config.data.data_dir = ""
  config.data.batch_size = 96  # global, over all devices and processes
  config.data.eval_batch_size = 256
  # Inception-style random-resized crop with the papers' reduced distortion: no crop smaller
  # than this fraction of the image (the papers give no number; Inception uses 0.08).
  config.data.min_crop_area = 0.25
  config.data.central_crop_fraction = 0.875
  config.data.class_names = ""  # optional file: one class folder name per line, fixing labels
  config.data.max_eval_examples = 0  # 0 = the whole split
  # Training batches are made by threads in the training process (0), or by this many grain
  # worker processes, outside its GIL: faster where many cores feed one accelerator
  # (benchmarks/README.md). The batches are the same either way.
  config.data.worker_processes = 0

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "tf1_rmsprop"
  config.optimizer.learning_rate = 0.045  # at reference_batch_size; scaled by batch / reference
  config.optimizer.reference_batch_size = 96
  config.optimizer.rms_decay = 0.9
  config.optimizer.momentum = 0.9
  config.optimizer.epsilon = 1.0
  config.optimizer.weight_decay = 4e-5
  # Regexes over parameter paths that get no L2: depthwise kernels (V1 paper), BN, biases.
  config.optimizer.weight_decay_exclude = ("depthwise/", "/bn/", "bias$")
  config.optimizer.grad_clip_norm = 0.0

  config.schedule = ml_collections.ConfigDict()
  config.schedule.name = "exponential"
  config.schedule.decay_rate = 0.98
  config.schedule.decay_epochs = 1.0
  config.schedule.staircase = True
  config.schedule.warmup_epochs = 0.0

  config.training = ml_collections.ConfigDict()
  config.training.num_steps = 1000
  config.training.label_smoothing = 0.0
  config.training.ema_decay = 0.0  # 0 = no EMA; TF's min(decay, (1 + t) / (10 + t)) warm-up
  config.training.log_every_steps = 50
  config.training.eval_every_steps = 0  # 0 = only at the end
  config.training.checkpoint_every_steps = 500
  config.training.keep_checkpoints = 3
  # Batch-1 latency and inference img/s of the final model, in summary.json.
  config.training.measure_latency = True
  # Also export the final model to ONNX (export/model.onnx) and record its onnxruntime batch-1
  # latency, a mobile-style runtime's, beside JAX's.
  config.training.onnx_latency = False
  config.training.preset = ""

  # Device mesh axes as (name, size) pairs, -1 = all remaining devices. The batch is split
  # over 'data'; parameters are replicated unless a rule (regex over the parameter path,
  # partition spec as a tuple of mesh axis names or None) says otherwise.
  config.mesh = (("data", -1),)
  config.param_sharding = ()

  # Start from imported weights, 'KIND:PATH' (keras_h5, keras_tfjs, slim_ckpt, slim_npy; see
  # importers.py); with init_new_classifier the classifier is fresh (any num_classes).
  config.init_from = ""
  config.init_new_classifier = False

  config.wandb = ml_collections.ConfigDict()
  # 'auto' = online when WANDB_API_KEY is set, else offline (files under the workdir).
  config.wandb.mode = "auto"
  config.wandb.project = "mobilenet_jax"
  config.wandb.entity = ""
  config.wandb.group = ""
  config.wandb.tags = ()

  # What one run asks a Ray cluster for (launch.py --sweep=... --launcher=ray); where a run
  # trains does not change what it computes, so a workdir may resume with other resources.
  config.resources = ml_collections.ConfigDict()
  config.resources.processes = 1  # jax.distributed processes (hosts), one Ray task each
  config.resources.cpus = 1.0  # per process
  config.resources.gpus = 0.0  # per process
  config.resources.tpus = 0.0  # TPU chips per process (Ray's 'TPU' resource)
  # Ray placement-group strategy for the processes: STRICT_SPREAD puts each on its own node.
  config.resources.placement = "SPREAD"
  config.resources.max_retries = 3  # relaunches after a worker or node dies; each resumes
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
          f"config argument {item!r}: expected key=value with key one of {sorted(defaults)}")
    kind = type(defaults[key])
    try:
      parsed[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
    except ValueError:
      raise errors.ConfigError(
          f"config argument {key}={value!r}: expected a {kind.__name__}") from None
  return ml_collections.ConfigDict(parsed)


def _compatible(schema_value, value):
  if isinstance(schema_value, bool) or isinstance(value, bool):
    return isinstance(schema_value, bool) == isinstance(value, bool)
  if isinstance(schema_value, float):
    return isinstance(value, (int, float))
  if isinstance(schema_value, (tuple, list)):
    return isinstance(value, (tuple, list))
  return isinstance(value, type(schema_value))


def check_keys(config, schema, prefix="config"):
  """Refuses keys the schema does not have and values of another type, recursively."""
  for key in config.keys():
    path = f"{prefix}.{key}"
    if key not in schema:
      close = difflib.get_close_matches(key, list(schema.keys()), n=1)
      hint = f" (did you mean {close[0]!r}?)" if close else ""
      raise errors.ConfigError(
          f"unknown config key {path!r}{hint}; keys allowed under {prefix}: "
          f"{sorted(schema.keys())}")
    value, expected = config[key], schema[key]
    if isinstance(expected, ml_collections.ConfigDict):
      if not isinstance(value, ml_collections.ConfigDict):
        raise errors.ConfigError(
            f"{path} must be a config group with keys {sorted(expected.keys())}")
      check_keys(value, expected, path)
    elif not _compatible(expected, value):
      raise errors.ConfigError(
          f"{path}={value!r} has type {type(value).__name__}; expected "
          f"{type(expected).__name__} like the default {expected!r}")


def _choice(config, key):
  value = config
  for part in key.split("."):
    value = value[part]
  if value not in CHOICES[key]:
    raise errors.ConfigError(f"config.{key}={value!r}; allowed values: {list(CHOICES[key])}")


def parse_init_from(spec):
  """config.init_from's (kind, path)."""
  kind, sep, path = spec.partition(":")
  if not sep or kind not in WEIGHT_KINDS or not path:
    raise errors.ConfigError(f"config.init_from={spec!r}: expected KIND:PATH with KIND one of "
                             f"{list(WEIGHT_KINDS)}")
  return kind, path


def validate(config):
  """Raises errors.ConfigError for the first problem found; returns the config unchanged."""
  check_keys(config, base_config())
  model = config.model
  for key in ("model.channel_rounding", "model.activation", "model.dtype", "model.conv_impl",
              "model.kernel_init", "optimizer.name", "schedule.name", "wandb.mode",
              "resources.placement"):
    _choice(config, key)
  total_stride = blocks.check_rows(model.blocks)
  if not model.width_multiplier > 0 or not math.isfinite(model.width_multiplier):
    raise errors.ConfigError(f"config.model.width_multiplier={model.width_multiplier}; "
                             "allowed: a finite number > 0 (the papers use 0.25 to 1.4)")
  if config.resolution < total_stride:
    raise errors.ConfigError(
        f"config.resolution={config.resolution} collapses the feature map: the blocks "
        f"downsample by {total_stride}, so allowed resolutions are integers >= {total_stride}")
  if model.num_classes < 1:
    raise errors.ConfigError(
        f"config.model.num_classes={model.num_classes}; allowed: integers >= 1")
  if not 0 <= model.dropout_rate < 1:
    raise errors.ConfigError(f"config.model.dropout_rate={model.dropout_rate}; allowed: [0, 1)")
  if not 0 < model.bn_momentum < 1:
    raise errors.ConfigError(f"config.model.bn_momentum={model.bn_momentum}; allowed: (0, 1), "
                             "in TF/Flax convention (0.997 keeps 99.7% of the running value)")
  if not model.bn_epsilon > 0:
    raise errors.ConfigError(f"config.model.bn_epsilon={model.bn_epsilon}; allowed: > 0")
  for key in ("batch_size", "eval_batch_size"):
    if config.data[key] < 1:
      raise errors.ConfigError(f"config.data.{key}={config.data[key]}; allowed: integers >= 1")
  if not 0 < config.data.min_crop_area <= 1 or not 0 < config.data.central_crop_fraction <= 1:
    raise errors.ConfigError(
        "config.data.min_crop_area and central_crop_fraction must be in (0, 1]")
  if config.training.preset and config.training.preset not in presets.PRESETS:
    raise errors.ConfigError(f"config.training.preset={config.training.preset!r}; allowed: "
                             f"{sorted(presets.PRESETS)} (choose one with the config argument "
                             "preset=NAME)")
  if config.training.num_steps < 1:
    raise errors.ConfigError(
        f"config.training.num_steps={config.training.num_steps}; allowed: >= 1")
  for key, why in (
      ("log_every_steps", "steps between logged metrics"),
      ("checkpoint_every_steps", "steps between checkpoints"),
      ("keep_checkpoints", "0 would delete every checkpoint, the trained model's too")):
    if config.training[key] < 1:
      raise errors.ConfigError(
          f"config.training.{key}={config.training[key]}; allowed: integers >= 1 "
          f"({why})")
  for key, zero in (("training.eval_every_steps", "only at the end"),
                    ("data.max_eval_examples", "the whole split"),
                    ("data.worker_processes", "threads in the training process")):
    group, name = key.split(".")
    if config[group][name] < 0:
      raise errors.ConfigError(f"config.{key}={config[group][name]}; allowed: integers >= 0 "
                               f"(0 = {zero})")
  if "data" not in [name for name, _ in config.mesh]:
    raise errors.ConfigError(
        f"config.mesh={tuple(map(tuple, config.mesh))} has no 'data' axis; the "
        "batch is split over the axis named 'data', e.g. (('data', -1),)")
  if config.init_from:
    parse_init_from(config.init_from)
  for key, lowest in (("processes", 1), ("cpus", 0), ("gpus", 0), ("tpus", 0), ("max_retries", 0)):
    if config.resources[key] < lowest:
      raise errors.ConfigError(f"config.resources.{key}={config.resources[key]}; allowed: "
                               f">= {lowest}")
  if model.min_channels < 1 or model.head_channels < 0 or model.pooled_head_channels < 0:
    raise errors.ConfigError("config.model.min_channels must be >= 1, head_channels and "
                             "pooled_head_channels >= 0")
  return config
