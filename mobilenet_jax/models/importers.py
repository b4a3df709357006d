"""Official MobileNet weights into this project's parameters and BN statistics.

`config.init_from = 'KIND:PATH'`, KIND one of:
  keras_h5    Keras-applications MobileNet V1 weights as Keras 2 saves them (.h5, read with h5py)
  keras_tfjs  the same weights in TF.js Layers format (model.json + binary shards)
  slim_ckpt   a TF-slim checkpoint (MobilenetV1/V2; needs TensorFlow to read)
  slim_npy    a folder with one .npy per TF-slim variable ('/' written as '_', scope dropped)
  workdir     a run of this project: its latest checkpoint (e.g. a float run to fine-tune with
              quantization-aware training)
  timm        a timm checkpoint: the hub's model.safetensors (.pth / .bin where PyTorch is
              installed), for the model configs/timm.py:MODEL builds

Every tensor of the model must be found with its exact shape: a wrong α or class count is
refused with the expected and found shapes. TF-slim classifiers have 1001 outputs with index 0 =
background; the import records that as `label_offset = 1` and evaluation shifts the dataset's
labels by it, so a 1000-wnid class list scores a 1001-class model correctly.
"""

import dataclasses
import functools
import glob
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mobilenet_jax.core import errors
from mobilenet_jax.models import mobilenet

log = logging.getLogger(__name__)

_BN_KERAS = {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"}


@dataclasses.dataclass
class Imported:
  params: dict
  batch_stats: dict
  label_offset: int  # 1 for TF-slim's background class at index 0
  report: dict  # {'missing', 'unexpected', 'misshaped', 'substituted', 'defaulted'}
  labels: tuple = ()  # class names shipped with the weights, when there are any


# --- readers: each returns {source tensor name: array} in the source's own layout -------------


def read_keras_h5(path):
  import h5py

  tensors = {}
  with h5py.File(path, "r") as f:
    root = f["model_weights"] if "model_weights" in f else f  # model.save vs save_weights
    for layer in root.attrs["layer_names"]:
      layer = layer.decode() if isinstance(layer, bytes) else layer
      for weight in root[layer].attrs.get("weight_names", []):
        weight = weight.decode() if isinstance(weight, bytes) else weight
        tensors[weight.split(":")[0]] = np.asarray(root[layer][weight])
  return tensors


def read_keras_tfjs(path):
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  with open(os.path.join(folder, "model.json")) as f:
    manifest = json.load(f)["weightsManifest"]
  tensors = {}
  for group in manifest:
    buffer = b"".join(open(os.path.join(folder, p), "rb").read() for p in group["paths"])
    for weight in group["weights"]:
      if weight["dtype"] != "float32":
        raise errors.WeightsError(
          f"{path}: tensor {weight['name']} is {weight['dtype']}; only float32 "
          "TF.js weights are supported (not quantized ones)"
        )
    sizes = [int(np.prod(weight["shape"])) * 4 for weight in group["weights"]]
    if sum(sizes) != len(buffer):  # a cut or padded shard: checked before any reshape
      raise errors.WeightsError(
        f"{path}: group {group['paths']} has {len(buffer)} bytes, the manifest "
        f"describes {sum(sizes)}"
      )
    offset = 0
    for weight, size in zip(group["weights"], sizes):
      tensors[weight["name"]] = np.frombuffer(buffer[offset : offset + size], "<f4").reshape(
        weight["shape"]
      )
      offset += size
  return tensors


def tfjs_labels(path):
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  metadata = os.path.join(folder, "metadata.json")
  if not os.path.exists(metadata):
    return ()
  with open(metadata) as f:
    return tuple(json.load(f).get("labels", ()))


def _slim_stem(name):
  """'MobilenetV2/expanded_conv_1/expand/weights' -> 'expanded_conv_1_expand_weights'."""
  return name.split("/", 1)[1].replace("/", "_") if "/" in name else name


def read_slim_ckpt(path):
  try:
    import tensorflow as tf
  except ModuleNotFoundError:
    raise errors.WeightsError(
      f"config.init_from=slim_ckpt:{path} needs TensorFlow to read the "
      "checkpoint (pip install tensorflow-cpu); or convert it once to a "
      "folder of .npy files and use slim_npy:"
    ) from None
  reader = tf.train.load_checkpoint(path)
  return {
    _slim_stem(name): reader.get_tensor(name)
    for name in reader.get_variable_to_shape_map()
    if not name.endswith(("/ExponentialMovingAverage", "global_step")) and "RMSProp" not in name
  }


def read_slim_npy(path):
  files = sorted(glob.glob(os.path.join(path, "*.npy")))
  if not files:
    raise errors.WeightsError(f"config.init_from=slim_npy:{path}: no .npy files there")
  tensors = {}
  for f in files:
    try:
      tensors[os.path.basename(f)[:-4]] = np.load(f)
    except (OSError, ValueError, EOFError) as error:  # cut in its header or its data
      raise errors.WeightsError(
        f"config.init_from=slim_npy:{path}: {f} is not a whole .npy file ({error})"
      ) from None
  return tensors


def read_workdir(path):
  """A run's workdir: its latest checkpoint's trained (not EMA) weights and BN statistics, as
  'module/.../leaf' names; read only, so the run is never touched."""
  import orbax.checkpoint as ocp

  directory = os.path.join(os.path.abspath(path), "checkpoints")
  if not os.path.isdir(directory):
    raise errors.WeightsError(f"config.init_from=workdir:{path}: no checkpoints/ there")
  manager = ocp.CheckpointManager(
    directory, options=ocp.CheckpointManagerOptions(read_only=True), item_names=("state",)
  )
  step = manager.latest_step()
  if step is None:
    raise errors.WeightsError(f"config.init_from=workdir:{path}: checkpoints/ holds none")
  state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
  return {
    jax.tree_util.keystr(keys, simple=True, separator="/"): np.asarray(array)
    for collection in ("params", "batch_stats")
    for keys, array in jax.tree_util.tree_flatten_with_path(state[collection])[0]
  }


def read_timm(path):
  """timm's state dict, as numpy; BN's num_batches_tracked counters dropped (nothing reads them)."""
  if path.endswith((".pth", ".bin", ".pt")):
    try:
      import torch
    except ModuleNotFoundError:
      raise errors.WeightsError(
        f"config.init_from=timm:{path}: a PyTorch checkpoint needs PyTorch to read; use the "
        "model's model.safetensors from its hub page instead (no PyTorch needed)"
      ) from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    tensors = {name: value.numpy() for name, value in state.items()}
  else:
    from safetensors.numpy import load_file

    try:
      tensors = load_file(path)
    except Exception as error:  # safetensors' own error type for a cut or foreign file
      raise errors.WeightsError(
        f"config.init_from=timm:{path} is not a whole safetensors file "
        f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
      ) from None
  return {
    name: value for name, value in tensors.items() if not name.endswith("num_batches_tracked")
  }


# --- names: our parameter path -> the source's tensor name -----------------------------------


def _keras_v1_name(module, leaf):
  """Keras-applications MobileNet V1: conv1, conv_dw_i / conv_pw_i (+ _bn), conv_preds."""
  if module == ("classifier",):
    return f"conv_preds/{leaf}"
  block = int(module[0].split("_")[1])
  layer = "conv1" if block == 0 else f"conv_{'dw' if module[1] == 'depthwise' else 'pw'}_{block}"
  if module[-1] == "bn":
    return f"{layer}_bn/{_BN_KERAS[leaf]}"
  return f"{layer}/{'depthwise_kernel' if module[1] == 'depthwise' else 'kernel'}"


def _slim_layer(arch, module):
  if module[0] == "head":
    return "Conv_1"
  block = int(module[0].split("_")[1])
  if arch == "mobilenet_v1":
    return "Conv2d_0" if block == 0 else f"Conv2d_{block}_{module[1]}"
  if block == 0:
    return "Conv"
  scope = "expanded_conv" if block == 1 else f"expanded_conv_{block - 1}"
  return f"{scope}_{module[1]}"


def _slim_names(config, tensors):
  arch = config.model.name

  def name(module, leaf):
    if module == ("classifier",):
      return f"Logits_Conv2d_1c_1x1_{'weights' if leaf == 'kernel' else 'biases'}"
    layer = _slim_layer(arch, module)
    if module[-1] == "bn":
      return f"{layer}_BatchNorm_{_BN_KERAS[leaf]}"
    return f"{layer}_depthwise_weights" if "depthwise" in module else f"{layer}_weights"

  return name


_BN_TIMM = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
# Our layer name in a block -> timm's, per block type (timm's _efficientnet_blocks.py); a ConvBN
# becomes (conv, bn) names, a bare conv or dense one name.
_TIMM_LAYERS = {
  "conv": {"conv_bn": ("conv", "bn1")},
  "separable": {"depthwise": ("conv_dw", "bn1"), "pointwise": ("conv_pw", "bn2")},
  "inverted_residual": {  # t = 1: timm's DepthwiseSeparable, else its InvertedResidual
    "expand": ("conv_pw", "bn1"),
    "depthwise": ("conv_dw", "bn2"),
    "project": ("conv_pwl", "bn3"),
  },
  "depthwise_separable": {"depthwise": ("conv_dw", "bn1"), "project": ("conv_pw", "bn2")},
  "fused_ib": {"expand": ("conv_exp", "bn1"), "project": ("conv_pwl", "bn2")},
  "uib": {
    "start_depthwise": ("dw_start.conv", "dw_start.bn"),
    "expand": ("pw_exp.conv", "pw_exp.bn"),
    "depthwise": ("dw_mid.conv", "dw_mid.bn"),
    "project": ("pw_proj.conv", "pw_proj.bn"),
  },
  "mobile_mqa": {
    "bn": (None, "norm"),
    "query": ("attn.query.proj",),
    "key_down": ("attn.key.down_conv", "attn.key.norm"),
    "key": ("attn.key.proj",),
    "value_down": ("attn.value.down_conv", "attn.value.norm"),
    "value": ("attn.value.proj",),
    "output": ("attn.output.proj",),
  },
}


def _natural(name):
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


_TIMM_TOP = ("conv_stem.", "bn1.", "blocks.", "conv_head.", "bn2.", "norm_head.", "classifier.")


def _timm_order(name):
  """timm's network order: the stem, the blocks, the head, the classifier."""
  rank = next((i for i, top in enumerate(_TIMM_TOP) if name.startswith(top)), len(_TIMM_TOP))
  return rank, _natural(name)


def timm_block_prefixes(tensors):
  """timm's 'blocks.S.I' prefixes of a state dict, in network order."""
  found = {m.group(0) for m in (re.match(r"blocks\.\d+\.\d+", n) for n in tensors) if m}
  return sorted(found, key=_natural)


def timm_names(plan, prefixes):
  """(module path, leaf) -> timm's tensor name, for the model `plan` describes; the blocks after
  the stem take the checkpoint's block prefixes in order."""
  by_block = {p.name: p for p in plan}
  order = {p.name: i for i, p in enumerate(plan)}

  def name(module, leaf):
    top = module[0]
    if top == "classifier":
      return f"classifier.{leaf if leaf == 'bias' else 'weight'}"
    if top == "head":
      return "conv_head.weight" if module[1] == "conv" else f"bn2.{_BN_TIMM[leaf]}"
    if top == "pooled_head":
      if module[1] == "bn":
        return f"norm_head.{_BN_TIMM[leaf]}"
      return f"conv_head.{'weight' if leaf == 'kernel' else 'bias'}"
    block = by_block[top]
    if order[top] == 0:
      return "conv_stem.weight" if module[2] == "conv" else f"bn1.{_BN_TIMM[leaf]}"
    index = order[top] - 1
    prefix = prefixes[index] if index < len(prefixes) else f"blocks.?.{index}"
    if len(module) == 1:  # a block's own parameter: layer scale
      return f"{prefix}.layer_scale.gamma"
    if module[1] == "squeeze_excite":
      return f"{prefix}.se.conv_{module[2]}.{'weight' if leaf == 'kernel' else 'bias'}"
    kind = block.block
    if kind == "inverted_residual" and block.hidden_channels == block.in_channels:
      kind = "depthwise_separable"
    names = _TIMM_LAYERS[kind][module[1]]
    if len(module) == 2:  # a bare conv ('kernel') or a standalone BN
      return (
        f"{prefix}.{names[0]}.weight"
        if leaf == "kernel"
        else f"{prefix}.{names[1]}.{_BN_TIMM[leaf]}"
      )
    if module[2] == "conv":
      return f"{prefix}.{names[0]}.weight"
    return f"{prefix}.{names[1]}.{_BN_TIMM[leaf]}"

  return name


def _timm_names(config, tensors):
  return timm_names(mobilenet.build_plan(config.model), timm_block_prefixes(tensors))


def _timm_to_ours(module, leaf, array, expected_shape):
  """PyTorch layouts -> ours: conv (O, I/g, kh, kw) -> HWIO, depthwise (C, 1, k, k) -> (k, k, 1, C);
  a 1x1 conv or Linear used as a dense layer (O, I[, 1, 1]) -> (I, O)."""
  if array.ndim == 4 and len(expected_shape) == 4:
    return array.transpose(2, 3, 1, 0)
  if array.ndim in (2, 4) and len(expected_shape) == 2:
    return array.reshape(array.shape[:2]).T
  return array


def _own_names(config, tensors):
  return lambda module, leaf: "/".join((*module, leaf))


def _unchanged(module, leaf, array, expected_shape):
  return array


def _to_ours(module, leaf, array, expected_shape):
  """Source layouts -> ours: depthwise (k,k,C,1) -> (k,k,1,C); 1x1-conv classifier -> dense."""
  if "depthwise" in module and leaf == "kernel" and array.ndim == 4:
    return array.transpose(0, 1, 3, 2)
  if module == ("classifier",) and leaf == "kernel" and array.ndim == 4:
    return array.reshape(array.shape[2:])
  return array


def label_offset(config: ml_collections.ConfigDict) -> int:
  """1 where the weights' classifier is TF-slim's 1001-way one (index 0 = background)."""
  kind = parse_init_from(config.init_from)[0] if config.init_from else ""
  return int(
    kind.startswith("slim") and not config.init_new_classifier and config.model.num_classes == 1001
  )


def load(config, variables):
  """config.init_from's weights for the model that `config` describes; `variables` (a fresh
  init, or its shapes) gives the expected shapes and, with config.init_new_classifier, the
  classifier."""
  spec, new_classifier = config.init_from, config.init_new_classifier
  kind, path = parse_init_from(spec)
  if not os.path.exists(path):
    raise errors.WeightsError(f"config.init_from={spec!r}: {path} does not exist")
  arch = config.model.name
  if kind.startswith("keras") and arch != "mobilenet_v1":
    raise errors.WeightsError(
      f"config.init_from={spec!r}: Keras-applications weights are MobileNet V1; "
      f"config.model.name is {arch!r}"
    )
  weight_format = FORMATS[kind]
  try:
    tensors = weight_format.read(path)
  except errors.WeightsError:
    raise
  except (OSError, ValueError, KeyError) as error:  # a folder for a file, a missing model.json
    raise errors.WeightsError(
      f"config.init_from={spec!r}: cannot read {kind} weights from {path} "
      f"({type(error).__name__}: {error})"
    ) from None
  name_of = weight_format.names(config, tensors)
  report = {"missing": [], "unexpected": [], "misshaped": [], "substituted": [], "defaulted": []}
  used = set()

  def take(path_keys, expected):
    module, leaf = tuple(path_keys[1:-1]), path_keys[-1]
    if new_classifier and module == ("classifier",):
      return np.asarray(expected)
    name = name_of(module, leaf)
    if name not in tensors:
      # A file named '<variable>_<note>.npy' stands in for a missing '<variable>.npy' (e.g. a
      # classifier dequantized from another release); the report says so.
      stand_ins = sorted(n for n in tensors if n.startswith(name + "_") and n not in used)
      if len(stand_ins) == 1:
        report["substituted"].append(f"{name} <- {stand_ins[0]}")
        name = stand_ins[0]
      elif leaf == "scale" and kind.startswith("slim") and arch == "mobilenet_v1":
        report["defaulted"].append(f"{name} = 1 (TF-slim V1 batch norm has no scale)")
        return np.ones(expected.shape, expected.dtype)
      else:
        report["missing"].append(f"{'/'.join(path_keys)} (source name {name})")
        return None
    used.add(name)
    array = np.asarray(tensors[name])
    array = weight_format.to_ours(module, leaf, array, expected.shape)
    if array.shape != expected.shape:
      report["misshaped"].append(
        f"{'/'.join(path_keys)}: model expects {expected.shape}, {name} is {array.shape}"
      )
      return None
    return array.astype(expected.dtype)

  def walk(collection):
    return jax.tree_util.tree_map_with_path(
      lambda p, x: take((collection,) + tuple(k.key for k in p), x), variables[collection]
    )

  params, batch_stats = walk("params"), walk("batch_stats")
  old_classifier = ("conv_preds", "Logits", "classifier.") if new_classifier else ()
  report["unexpected"] = sorted(n for n in set(tensors) - used if not n.startswith(old_classifier))
  problems = report["missing"] + report["misshaped"]
  if weight_format.mismatch and (problems or report["unexpected"]):
    raise errors.WeightsError(weight_format.mismatch(config, tensors, variables, name_of))
  if problems:
    raise errors.WeightsError(
      f"config.init_from={spec!r} does not fit config.model ({arch}, width_multiplier="
      f"{config.model.width_multiplier}, num_classes={config.model.num_classes}): "
      f"{len(report['misshaped'])} mis-shaped, {len(report['missing'])} missing:\n  "
      + "\n  ".join(problems[:12])
      + ("\n  ..." if len(problems) > 12 else "")
    )
  labels = tfjs_labels(path) if kind == "keras_tfjs" else ()
  return Imported(params, batch_stats, label_offset(config), report, labels)


# Functions {timm name: array} -> the timm models whose checkpoints have exactly these names and
# shapes; configs/timm.py registers its table's.
TIMM_LOOKALIKES: list = []


def expected_timm_shapes(variables, name_of):
  """{timm name: our shape in PyTorch's layout} of the model whose `variables` (or shapes) are
  given."""
  expected = {}
  for collection in ("params", "batch_stats"):
    for keys, leaf in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
      path = tuple(k.key for k in keys)
      shape = tuple(leaf.shape)
      if len(shape) == 4:
        shape = (shape[3], shape[2], shape[0], shape[1])
      elif len(shape) == 2:
        shape = shape[::-1]
      expected[name_of(path[:-1], path[-1])] = shape
  return expected


def _first_difference(tensors, expected):
  """The first tensor (in timm's order) whose name or shape the model does not have, in words."""
  for name in sorted(set(tensors) | set(expected), key=_timm_order):
    if name not in expected:
      return f"the file has {name} {tuple(tensors[name].shape)}, which the model has not"
    if name not in tensors:
      return f"the model needs {name} {expected[name]}, which the file has not"
    found = tuple(tensors[name].shape)
    if np.prod(found) != np.prod(expected[name]) or found[:1] != expected[name][:1]:
      return f"{name} is {found} in the file, the model's is {expected[name]}"
  return ""


def timm_mismatch(config, tensors, variables, name_of):
  """The one line for a timm checkpoint that does not fit `config`'s model: its first differing
  tensor and, where one fits it exactly, the timm model it is."""
  line = (
    f"config.init_from={config.init_from!r} does not fit config.model ({config.model.name}, "
    f"width_multiplier={config.model.width_multiplier}): "
    + _first_difference(tensors, expected_timm_shapes(variables, name_of))
  )
  fits = [name for finder in TIMM_LOOKALIKES for name in finder(tensors)]
  if fits:
    line += f"; it looks like timm's {fits[0]} (--config=configs/timm.py:{fits[0]})"
  return line


@dataclasses.dataclass(frozen=True)
class WeightFormat:
  """One KIND of config.init_from = 'KIND:PATH'."""

  read: Callable[[str], dict]  # PATH -> {source name: array}
  names: Callable  # (config, tensors) -> name_of(module path, leaf) -> source name
  to_ours: Callable  # (module, leaf, array, our shape) -> the array in our layout
  # (config, tensors, variables, name_of) -> the one line for a file that does not fit; None:
  # the generic list of missing and mis-shaped tensors
  mismatch: Callable | None = None


def _keras_names(config, tensors):
  return _keras_v1_name


FORMATS = {
  "keras_h5": WeightFormat(read_keras_h5, _keras_names, _to_ours),
  "keras_tfjs": WeightFormat(read_keras_tfjs, _keras_names, _to_ours),
  "slim_ckpt": WeightFormat(read_slim_ckpt, _slim_names, _to_ours),
  "slim_npy": WeightFormat(read_slim_npy, _slim_names, _to_ours),
  "workdir": WeightFormat(read_workdir, _own_names, _unchanged),
  "timm": WeightFormat(read_timm, _timm_names, _timm_to_ours, timm_mismatch),
}


def parse_init_from(spec: str) -> tuple[str, str]:
  """config.init_from's (kind, path)."""
  kind, sep, path = spec.partition(":")
  if not sep or kind not in FORMATS or not path:
    raise errors.ConfigError(
      f"config.init_from={spec!r}: expected KIND:PATH with KIND one of {list(FORMATS)}"
    )
  return kind, path


def load_for_model(config: ml_collections.ConfigDict, model: Any) -> Imported:
  """config.init_from's weights, checked against `model`'s shapes; described on stdout. Only a
  new classifier needs initialised values: otherwise the shapes are traced, not compiled."""
  if config.model.quantized:  # the quantized model's extra statistics (ranges) start fresh
    config = config.copy_and_resolve_references()
    config.model.quantized = False
    model = mobilenet.build_model(config)
  init = functools.partial(model.init, jax.random.key(config.seed))
  images = jax.ShapeDtypeStruct(mobilenet.input_shape(config), jnp.float32)
  if config.init_new_classifier:
    variables = jax.jit(init, compiler_options=mobilenet.INIT_COMPILER_OPTIONS)(
      jnp.zeros(images.shape, images.dtype)
    )
  else:
    variables = jax.eval_shape(init, images)
  imported = load(config, variables)
  if jax.process_index() == 0:
    log.info(describe(imported))
  return imported


def describe(imported):
  r = imported.report
  lines = [
    f"imported: {len(jax.tree.leaves(imported.params))} parameter and "
    f"{len(jax.tree.leaves(imported.batch_stats))} statistic tensors; label offset "
    f"{imported.label_offset}"
  ]
  for key in ("substituted", "defaulted", "unexpected"):
    if r[key]:
      lines.append(f"{key}: " + ", ".join(r[key]))
  return "\n".join(lines)
