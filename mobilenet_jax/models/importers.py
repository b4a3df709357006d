"""Official MobileNet weights into this project's parameters and BN statistics.

`config.init_from = 'KIND:PATH'`, KIND one of:
  keras_h5    Keras-applications MobileNet V1 weights as Keras 2 saves them (.h5, read with h5py)
  keras_tfjs  the same weights in TF.js Layers format (model.json + binary shards)
  slim_ckpt   a TF-slim checkpoint (MobilenetV1/V2; needs TensorFlow to read)
  slim_npy    a folder with one .npy per TF-slim variable ('/' written as '_', scope dropped)
  workdir     a run of this project: its latest checkpoint (e.g. a float run to fine-tune with
              quantization-aware training)

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


# --- names: our parameter path -> the source's tensor name -----------------------------------

# config.init_from = 'KIND:PATH': each weight format's reader, PATH -> {source name: array}.
READERS = {
  "keras_h5": read_keras_h5,
  "keras_tfjs": read_keras_tfjs,
  "slim_ckpt": read_slim_ckpt,
  "slim_npy": read_slim_npy,
  "workdir": read_workdir,
}


def parse_init_from(spec: str) -> tuple[str, str]:
  """config.init_from's (kind, path)."""
  kind, sep, path = spec.partition(":")
  if not sep or kind not in READERS or not path:
    raise errors.ConfigError(
      f"config.init_from={spec!r}: expected KIND:PATH with KIND one of {list(READERS)}"
    )
  return kind, path


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


def _slim_name(arch):
  def name(module, leaf):
    if module == ("classifier",):
      return f"Logits_Conv2d_1c_1x1_{'weights' if leaf == 'kernel' else 'biases'}"
    layer = _slim_layer(arch, module)
    if module[-1] == "bn":
      return f"{layer}_BatchNorm_{_BN_KERAS[leaf]}"
    return f"{layer}_depthwise_weights" if "depthwise" in module else f"{layer}_weights"

  return name


def _own_name(module, leaf):
  return "/".join((*module, leaf))


def _to_ours(module, leaf, array):
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
  reader = READERS[kind]
  try:
    tensors = reader(path)
  except errors.WeightsError:
    raise
  except (OSError, ValueError, KeyError) as error:  # a folder for a file, a missing model.json
    raise errors.WeightsError(
      f"config.init_from={spec!r}: cannot read {kind} weights from {path} "
      f"({type(error).__name__}: {error})"
    ) from None
  name_of = {"keras_h5": _keras_v1_name, "keras_tfjs": _keras_v1_name, "workdir": _own_name}.get(
    kind, _slim_name(arch)
  )
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
    array = array if kind == "workdir" else _to_ours(module, leaf, array)
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
  report["unexpected"] = sorted(
    set(tensors)
    - used
    - ({n for n in tensors if n.startswith(("conv_preds", "Logits"))} if new_classifier else set())
  )
  problems = report["missing"] + report["misshaped"]
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
