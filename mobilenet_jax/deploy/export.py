"""The trained model as the files mobile runtimes load, checked against JAX, and its latency in
those runtimes.

Both formats are written from one function, the folded model: BatchNorm folded into each conv's
kernel and bias and ReLU6 as a clip, so the runtimes see one Conv (+ its fused activation) per
layer, as the published int8 MobileNets are built, and quantize no tensor between a conv and its
BN. ONNX through jax2onnx, then onnxruntime's basic (portable) graph optimizations, which fold
jax2onnx's NHWC<->NCHW transposes and the bias Adds into the Convs; TFLite through jax2tf and
TensorFlow's converter, run by LiteRT's interpreter (TensorFlow is an optional install). Both
trace the `xla` convolutions, which compute the same function as `shifted`. int8 is
post-training static quantization calibrated on training images (evaluation preprocessing),
reported apart from float32 as the papers report their quantized rows; an int8 ONNX file is
scored by onnxruntime's integer kernels and by its own arithmetic (each op in float between its
DequantizeLinear and QuantizeLinear, as written).
"""

import dataclasses
import importlib.util
import json
import os
import pathlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.core import errors, tables
from mobilenet_jax.data import pipeline, sources
from mobilenet_jax.deploy import latency
from mobilenet_jax.models import importers, layers, mobilenet, quantization

EXPORT_DIR = "export"
CALIBRATION_EXAMPLES = 100  # training images post-training int8 is calibrated on, by default
THREADS = (1, 4)  # the runtimes' intra-op threads for latency
TENSORFLOW_HINT = "pip install tensorflow-cpu (TFLite export needs TensorFlow's converter)"


def model_function(config, variables):
  """images (N, H, W, 3) in [-1, 1] -> logits of the model as it trains, weights closed over."""
  model = mobilenet.build_model(config, conv_impl="xla")
  return lambda images: model.apply(variables, images, train=False)


def inference_function(config, variables):
  """model_function's logits computed by the folded model, the function the exports hold."""
  model = mobilenet.build_model(config, conv_impl="xla", folded=True)
  folded = layers.fold_batch_norm(variables, config.model.bn_epsilon)
  return lambda images: model.apply(folded, images)


def _sink_pool_transpose(graph):
  """jax2onnx returns each conv's output to NHWC (a Transpose) before its bias Add; onnxruntime
  cancels the pairs between convs but keeps the one before the pool, which leaves the last conv's
  bias and activation outside it (and an int8 graph would quantize its pre-bias output). Moves
  that Transpose past the per-channel Adds and Clip / Relu into the ReduceMean's axes, in place."""
  from onnx import numpy_helper

  consumers = {}
  for node in graph.node:
    for name in node.input:
      consumers.setdefault(name, []).append(node)
  constants = {i.name: i for i in graph.initializer}
  for transpose in [n for n in graph.node if n.op_type == "Transpose"]:
    if [a.ints for a in transpose.attribute if a.name == "perm"] != [[0, 2, 3, 1]]:
      continue
    chain, tensor = [], transpose.output[0]
    while len(consumers.get(tensor, ())) == 1 and consumers[tensor][0].op_type in (
      "Add",
      "Clip",
      "Relu",
    ):
      node = consumers[tensor][0]
      other = [name for name in node.input if name != tensor][:1]
      if node.op_type == "Add" and not (
        other and other[0] in constants and len(constants[other[0]].dims) in (1, 4)
      ):
        break
      chain.append(node)
      tensor = node.output[0]
    pool = consumers.get(tensor, [])
    if len(pool) != 1 or pool[0].op_type != "ReduceMean" or pool[0].input[1] not in constants:
      continue
    if list(numpy_helper.to_array(constants[pool[0].input[1]])) != [1, 2]:
      continue
    feed = transpose.output[0]
    for node in chain:
      if node.op_type == "Add":
        index = 1 - list(node.input).index(feed)
        bias = numpy_helper.to_array(constants[node.input[index]])
        name = node.input[index] + "_nchw"
        graph.initializer.append(numpy_helper.from_array(bias.reshape(1, -1, 1, 1), name))
        node.input[index] = name
      feed = node.output[0]
    axes = pool[0].input[1] + "_nchw"
    graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64), axes))
    pool[0].input[1] = axes
    first = (chain or pool)[0]
    first.input[list(first.input).index(transpose.output[0])] = transpose.input[0]
    graph.node.remove(transpose)
    moved = {node.output[0] for node in chain} | {pool[0].output[0]}
    for info in [i for i in graph.value_info if i.name in moved]:
      graph.value_info.remove(info)  # their NHWC shapes; onnxruntime infers the NCHW ones


def jax2onnx_to_onnx():
  """jax2onnx's to_onnx with only the plugins a Linen model needs loaded: JAX's primitives and
  Flax's layers. Its first call would import every plugin, and its Equinox plugins build and
  compile modules as they import: 12.7 s of a tiny model's first export, 0.46 s the next."""
  import jax2onnx  # with sympy, half a second of every launch.py start
  from jax2onnx import plugins
  from jax2onnx.plugins import plugin_system

  if not plugin_system._already_imported_plugins:
    for tree in ("jax", "flax"):
      plugin_system._import_tree(
        pathlib.Path(plugins.__file__).parent / tree, f"{plugins.__name__}.{tree}"
      )
    plugin_system._already_imported_plugins = True
  return jax2onnx.to_onnx


def write_onnx(function, config, path):
  """The float32 ONNX graph of `function`, with a dynamic batch dimension, after onnxruntime's
  basic optimizations (constant folding, transpose cancelling, Conv+Add fusion)."""
  import onnxruntime

  shape = jax.ShapeDtypeStruct(("batch", *mobilenet.input_shape(config)[1:]), jnp.float32)
  traced = jax2onnx_to_onnx()(
    function,
    inputs=[shape],
    model_name=config.model.name,
    input_names=["images"],
    output_names=["logits"],
    return_mode="proto",
  )
  _sink_pool_transpose(traced.graph)
  options = onnxruntime.SessionOptions()
  options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
  options.optimized_model_filepath = path + ".partial"
  onnxruntime.InferenceSession(
    traced.SerializeToString(), options, providers=["CPUExecutionProvider"]
  )
  os.replace(path + ".partial", path)  # a file at `path` is a finished one


def quantized_tensors(path):
  """The tensors of a folded float graph that onnxruntime's QDQ quantizer quantizes, in graph
  order: the (transposed) input, each conv's output after its fused activation, each residual
  sum, the pooled features and the logits; quantization.quantization_points' order."""
  import onnx

  graph = onnx.load(path).graph
  constants = {i.name for i in graph.initializer}
  consumers = {}
  for node in graph.node:
    for name in node.input:
      consumers.setdefault(name, []).append(node)
  inputs = {i.name for i in graph.input}
  names = []
  for node in graph.node:
    if node.op_type == "Transpose" and node.input[0] in inputs:
      names.append(node.output[0])
    elif node.op_type == "Conv":
      after = consumers.get(node.output[0], [])
      fused = len(after) == 1 and after[0].op_type in ("Clip", "Relu")
      names.append(after[0].output[0] if fused else node.output[0])
    elif node.op_type == "Add" and not constants & set(node.input):
      names.append(node.output[0])
    elif node.op_type in ("ReduceMean", "Gemm"):
      names.append(node.output[0])
  return names


def quantize_onnx(float_path, int8_path, calibration, ranges=None):
  """Static int8 (QDQ: int8 weights per output channel, int8 activations) from the ranges the
  `calibration` batches reach, after onnxruntime's recommended shape inference and folding;
  with `ranges` (quantization.quantization_points of a quantization-aware model), every
  activation takes its given scale and zero point instead, and `calibration` is not read."""
  from onnxruntime import quantization

  extra = {}
  if ranges is not None:
    names = quantized_tensors(float_path)
    if len(names) != len(ranges):
      raise errors.UserError(
        f"{float_path}: {len(names)} tensors to quantize but the quantization-aware model has "
        f"{len(ranges)} ranges; the graph is not the model's folded function"
      )
    extra = {
      "TensorQuantOverrides": {
        name: [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero_point, np.int8)}]
        for name, (scale, zero_point) in zip(names, ranges)
      },
      # The weights' scales stay max|w| / 127, the ones the model trained with, but where a
      # channel's int32 bias would overflow at input scale x weight scale (its weights ~0):
      # onnxruntime raises that channel's scale, as TFLite's converter does, rather than clip
      # the bias (V2 1.0's distilled QAT had two channels' biases clipped to ~0).
    }
    calibration = [calibration[0][:1]]  # the API reads a batch; every range is given

  class Calibration(quantization.CalibrationDataReader):
    def __init__(self, batches):
      self._batches = iter(batches)

    def get_next(self):
      images = next(self._batches, None)
      return None if images is None else {"images": images}

  prepared = int8_path + ".prepared"
  quantization.quant_pre_process(float_path, prepared)
  quantization.quantize_static(
    prepared,
    int8_path + ".partial",
    Calibration(calibration),
    quant_format=quantization.QuantFormat.QDQ,
    per_channel=True,
    activation_type=quantization.QuantType.QInt8,
    weight_type=quantization.QuantType.QInt8,
    extra_options=extra,
  )
  os.remove(prepared)
  os.replace(int8_path + ".partial", int8_path)


def _tensorflow():
  if importlib.util.find_spec("tensorflow") is None:
    raise errors.UserError(f"--format=tflite: TensorFlow is not installed; {TENSORFLOW_HINT}")
  import tensorflow as tf
  from jax.experimental import jax2tf

  return tf, jax2tf


def write_tflite(function, config, path, calibration=None, ranges=None):
  """The TFLite flatbuffer of `function` at batch 1; with `calibration` batches, int8 weights
  and activations (float32 input and output, as LiteRT's examples feed them); with `ranges`
  (quantization.quantization_points of a quantization-aware model), every activation takes its
  given scale and zero point instead, and `calibration` is only run through."""
  tf, jax2tf = _tensorflow()
  shape = mobilenet.input_shape(config)
  converted = tf.function(
    jax2tf.convert(function, with_gradient=False),
    input_signature=[tf.TensorSpec(shape, tf.float32)],
    autograph=False,
  )
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [converted.get_concrete_function()], converted
  )
  if calibration is not None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
      [images[i : i + 1]] for images in calibration for i in range(len(images))
    )
    # The converter's own two steps, calibrate then quantize, with the ranges set between.
    converter._experimental_calibrate_only = ranges is not None
  flatbuffer = converter.convert()
  if ranges is not None:
    flatbuffer = _quantize_tflite_with_ranges(flatbuffer, ranges, path)
  with open(path + ".partial", "wb") as f:
    f.write(flatbuffer)
  os.replace(path + ".partial", path)


# The TFLite ops whose outputs quantization.quantization_points lists, after the model input:
# each conv's (its activation fused), each residual sum, the pool's and the logits'.
TFLITE_QUANTIZED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUM", "MEAN", "FULLY_CONNECTED")


def _quantize_tflite_with_ranges(calibrated, ranges, path):
  """TFLite's int8 quantizer on a calibrated flatbuffer whose measured ranges are replaced by
  `ranges`, in graph order: it then quantizes the weights per channel (max|w| / 127, as the
  model trained) and the int32 biases at the learned input scales, as it does any model."""
  from tensorflow.lite.python import convert
  from tensorflow.lite.tools import flatbuffer_utils

  model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
  graph = model.subgraphs[0]
  points = [(graph.inputs[0], 1)]
  for op in graph.operators:
    kind = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex)
    if kind in TFLITE_QUANTIZED_OPS:
      # The converter folds the pool's 1/(H*W) into the classifier: its SUM holds H*W means.
      summed = np.prod(graph.tensors[op.inputs[0]].shape) // np.prod(
        graph.tensors[op.outputs[0]].shape
      )
      points.append((op.outputs[0], summed if kind == "SUM" else 1))
  if len(points) != len(ranges):
    raise errors.UserError(
      f"{path}: {len(points)} tensors to quantize but the quantization-aware model has "
      f"{len(ranges)} ranges; the graph is not the model's folded function"
    )
  qmin, qmax = quantization.ACTIVATION_RANGE
  for (tensor, factor), (scale, zero_point) in zip(points, ranges):
    stats = graph.tensors[tensor].quantization
    stats.min = np.array([(qmin - zero_point) * scale * factor], np.float32)
    stats.max = np.array([(qmax - zero_point) * scale * factor], np.float32)
  return convert.mlir_quantize(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


class OnnxModel:
  """An exported .onnx file in onnxruntime on this machine's CPU.

  `integer_kernels=False` runs an int8 (QDQ) file op by op as written, each int8 tensor
  dequantized into a float op: the int8 model's arithmetic in float. Otherwise onnxruntime's
  fused integer kernels, with 32-bit sums on every x86 CPU (session.x64quantprecision).
  """

  def __init__(self, path, threads=1, integer_kernels=True):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    if not integer_kernels:
      options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    # Without it, x86 without VNNI sums pairs of u8 x s8 products in 16 bits and saturates
    # (V2's QAT file: 83.6% top-1 against 89.2% with it; docs/results.md).
    options.add_session_config_entry("session.x64quantprecision", "1")
    self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

  def __call__(self, images):
    return self.session.run(None, {"images": images})[0]


class TfliteModel:
  """An exported .tflite file in LiteRT's interpreter (ai-edge-litert, else TensorFlow's)."""

  def __init__(self, path, threads=1):
    if importlib.util.find_spec("ai_edge_litert") is not None:
      from ai_edge_litert.interpreter import Interpreter
    else:
      Interpreter = _tensorflow()[0].lite.Interpreter
    self.interpreter = Interpreter(model_path=path, num_threads=threads)
    self.interpreter.allocate_tensors()
    self.input = self.interpreter.get_input_details()[0]
    self.output = self.interpreter.get_output_details()[0]

  def __call__(self, images):
    # A full-integer model (as Coral's) takes and gives integers: its own scale and zero point.
    (in_scale, in_zero), (out_scale, out_zero) = (
      self.input["quantization"],
      self.output["quantization"],
    )
    if in_scale:
      dtype = self.input["dtype"]
      images = np.clip(
        np.round(images / in_scale + in_zero), np.iinfo(dtype).min, np.iinfo(dtype).max
      ).astype(dtype)
    logits = []
    for image in images:  # converted at batch 1, as a phone runs it
      self.interpreter.set_tensor(self.input["index"], image[None])
      self.interpreter.invoke()
      logits.append(self.interpreter.get_tensor(self.output["index"])[0])
    logits = np.stack(logits)
    return (logits.astype(np.float32) - out_zero) * out_scale if out_scale else logits


def write_onnx_file(function, config, path, calibration=None, ranges=None):
  """write_onnx, then with `calibration` batches quantize_onnx (with a quantization-aware
  model's `ranges`, if given) in the float file's place."""
  if calibration is None:
    return write_onnx(function, config, path)
  write_onnx(function, config, path + ".float")
  quantize_onnx(path + ".float", path, calibration, ranges)
  os.remove(path + ".float")


@dataclasses.dataclass(frozen=True)
class Format:
  """An export format: its writer, the runtime that loads it, and a check before any work."""

  # (function, config, path, calibration batches or None[, a quantization-aware model's ranges])
  write: Callable[..., None]
  runtime: Callable[[str, int], Callable]  # (path, threads) -> images -> logits
  check: Callable[[], Any] = lambda: None  # raises errors.UserError where it cannot be written
  # path -> images -> logits: an int8 file's own arithmetic, without this CPU's integer kernels
  arithmetic: Callable[[str], Callable] | None = None


# --format: the files --mode=export writes.
FORMATS = {
  "onnx": Format(
    write_onnx_file, OnnxModel, arithmetic=lambda path: OnnxModel(path, integer_kernels=False)
  ),
  "tflite": Format(write_tflite, TfliteModel, _tensorflow),
}


def latency_ms(model, config, repeats=30, warmup=5):
  """Median wall time of one batch-1 call after `warmup` calls, in milliseconds."""
  image = np.random.default_rng(0).uniform(-1, 1, mobilenet.input_shape(config)).astype(np.float32)
  return 1000 * latency.median_seconds(model, (image,), repeats, warmup)


def latency_names(prefix, runtime="onnxruntime"):
  """summary.json's names of a runtime's latencies, per thread count."""
  return {t: f"{prefix}{runtime}_latency_ms" + ("" if t == 1 else f"_{t}_threads") for t in THREADS}


def onnx_latency(config, variables, workdir):
  """Writes WORKDIR/export/model.onnx; returns its onnxruntime batch-1 latency per thread count,
  as summary.json records it."""
  os.makedirs(os.path.join(workdir, EXPORT_DIR), exist_ok=True)
  path = os.path.join(workdir, EXPORT_DIR, "model.onnx")
  write_onnx(inference_function(config, variables), config, path)
  return {name: latency_ms(OnnxModel(path, t), config) for t, name in latency_names("").items()}


def learned_ranges(config, variables):
  """A quantization-aware model's (scale, zero point) per quantized tensor, in graph order."""
  images = np.zeros(mobilenet.input_shape(config), np.float32)
  return quantization.quantization_points(variables, mobilenet.build_model(config), images)


def quantization_inputs(config, variables, calibration_examples):
  """(calibration batches, ranges) for a model's int8 files: a quantization-aware model's learned
  ranges with one batch that no range is read from (the quantizers' APIs take calibration
  batches), else `calibration_examples` training images and no ranges."""
  if config.model.quantized:
    return [np.zeros(mobilenet.input_shape(config), np.float32)], learned_ranges(config, variables)
  return calibration_batches(config, calibration_examples), None


def write_int8_files(config, variables, float_onnx, directory, calibration, ranges=None):
  """DIRECTORY/model_int8.onnx quantized from `float_onnx`, and model_int8.tflite where
  TensorFlow's converter is installed: (the ONNX path, the TFLite path or None)."""
  onnx_path = os.path.join(directory, "model_int8.onnx")
  quantize_onnx(float_onnx, onnx_path, calibration, ranges)
  if importlib.util.find_spec("tensorflow") is None:
    return onnx_path, None
  tflite_path = os.path.join(directory, "model_int8.tflite")
  write_tflite(inference_function(config, variables), config, tflite_path, calibration, ranges)
  return onnx_path, tflite_path


def int8_model(config, variables, workdir):
  """Writes WORKDIR/export/model_int8.onnx from the model.onnx that onnx_latency wrote, and where
  TensorFlow's converter is installed model_int8.tflite: with config.model.quantized, with the
  ranges the quantization-aware model learned (no calibration), else post-training int8
  calibrated on config.training.int8_calibration_examples training images. Returns
  summary.json's int8 entries: the ONNX file's top-1 on the whole validation split and the
  fraction of images whose top-1 is the JAX model's (the float model's, or the
  quantization-aware model's own simulation), both by its arithmetic
  (OnnxModel(integer_kernels=False)); the same two by onnxruntime's integer kernels and of
  the TFLite file in LiteRT; each runtime's batch-1 latency per thread count."""
  calibration, ranges = quantization_inputs(
    config, variables, config.training.int8_calibration_examples
  )
  directory = os.path.join(workdir, EXPORT_DIR)
  path, tflite_path = write_int8_files(
    config, variables, os.path.join(directory, "model.onnx"), directory, calibration, ranges
  )
  models = [OnnxModel(path, integer_kernels=integer) for integer in (False, True)]
  litert = tflite_path is not None
  if litert:
    models.append(TfliteModel(tflite_path))
  jax_logits, offset = jax.jit(model_function(config, variables)), importers.label_offset(config)
  arithmetic, kernels, *tflite = compare_all(jax_logits, models, check_batches(config, 0), offset)
  entries = {
    "int8_top1": arithmetic.top1,
    "int8_same_top1": arithmetic.same_top1 / arithmetic.count,
    "int8_onnxruntime_top1": kernels.top1,
    "int8_onnxruntime_same_top1": kernels.same_top1 / kernels.count,
    **{name: latency_ms(OnnxModel(path, t), config) for t, name in latency_names("int8_").items()},
  }
  if litert:
    entries["int8_litert_top1"] = tflite[0].top1
    entries["int8_litert_same_top1"] = tflite[0].same_top1 / tflite[0].count
    for t, name in latency_names("int8_", "litert").items():
      entries[name] = latency_ms(TfliteModel(tflite_path, t), config)
  return entries


@dataclasses.dataclass
class Agreement:
  """An exported model against JAX on the same images."""

  count: int
  max_logit_difference: float
  same_top1: int  # images whose top-1 class is the same in both (ties: one class in common)
  top1: float  # the exported model's accuracy
  jax_top1: float


def compare(jax_logits, exported, batches, label_offset=0):
  """`exported` against `jax_logits` (both images -> logits) over (images, labels, mask) batches."""
  return compare_all(jax_logits, [exported], batches, label_offset)[0]


def compare_all(jax_logits, models, batches, label_offset=0):
  """compare's Agreement of each of `models`, in one pass over `batches` (read and scored by
  JAX once)."""
  count = jax_correct = 0
  same, correct, difference = [0] * len(models), [0] * len(models), [0.0] * len(models)
  for images, labels, mask in batches:
    keep = mask > 0
    images, labels = images[keep], labels[keep] + label_offset
    ours = np.asarray(jax_logits(images))
    jax_correct += int((ours.argmax(-1) == labels).sum())
    count += len(labels)
    for i, model in enumerate(models):
      theirs = model(images)
      difference[i] = max(difference[i], float(np.abs(ours - theirs).max()))
      same[i] += int(np.sum(shared_top1(ours, theirs)))
      correct[i] += int((theirs.argmax(-1) == labels).sum())
  return [
    Agreement(count, difference[i], same[i], correct[i] / count, jax_correct / count)
    for i in range(len(models))
  ]


def shared_top1(logits, other_logits):
  """Per image, whether the two share a class of the highest logit. int8 logits tie (a tiny
  net's take ~140 of 256 levels), and a tie's argmax is the lowest index: one step of rounding
  noise in one runtime would count as another top-1."""
  top = lambda v: v == v.max(-1, keepdims=True)
  return np.any(top(logits) & top(other_logits), -1)


def check_batches(config, count):
  """Batches (images, labels, mask) of the first `count` validation examples (0 = all),
  preprocessed as for evaluation, as they are read."""
  config = config.copy_and_resolve_references()
  config.data.max_eval_examples = count
  config.data.augment_on_device = False  # the runtimes take the host's central crop
  batches, _ = pipeline.eval_batches(sources.load_split(config.data, "val"), config)
  return (
    (pipeline.to_float(images), labels, mask) for images, labels, mask in pipeline.iterate(batches)
  )


def calibration_batches(config, count=CALIBRATION_EXAMPLES, batch_size=10):
  """`count` training images spread evenly over the split (so over its classes), preprocessed
  as for evaluation, in batches."""
  split = sources.load_split(config.data, "train")
  images = np.stack(
    [
      pipeline.eval_preprocess(split.source[int(i)][0], config)
      for i in np.linspace(0, len(split) - 1, min(count, len(split)))
    ]
  )
  return [images[i : i + batch_size] for i in range(0, len(images), batch_size)]


def check_request(
  formats: Sequence[str], check_examples: int, calibration_examples: int = CALIBRATION_EXAMPLES
) -> None:
  """Before any work: the one line that says what a format needs installed, or that a number of
  images is not one."""
  if check_examples < 0:
    raise errors.UserError(
      f"--check_examples={check_examples}; allowed: integers >= 0 (0 = every validation image)"
    )
  if calibration_examples < 1:
    raise errors.UserError(
      f"--calibration_examples={calibration_examples}; allowed: integers >= 1 (the training "
      "images int8's activation ranges are measured on)"
    )
  for kind in formats:
    FORMATS[kind].check()


def export(
  config: Any,
  variables: dict,
  workdir: str,
  formats: Sequence[str],
  int8: bool = False,
  check_examples: int = 250,
  calibration_examples: int = CALIBRATION_EXAMPLES,
  out: Callable[[str], Any] = print,
) -> list[dict]:
  """Writes WORKDIR/export/model[_int8].{onnx,tflite} of the folded model `config` describes
  with `variables` (int8 calibrated on `calibration_examples` training images, or with the
  ranges a quantization-aware model learned); checks each against the JAX model on the first
  `check_examples` validation images and measures its batch-1 latency; writes export.json and
  returns its rows."""
  check_request(formats, check_examples, calibration_examples)
  function = inference_function(config, variables)
  jax_logits = jax.jit(model_function(config, variables))
  checks = list(check_batches(config, check_examples))
  calibration, ranges = (
    quantization_inputs(config, variables, calibration_examples) if int8 else (None, None)
  )
  directory = os.path.join(workdir, EXPORT_DIR)
  os.makedirs(directory, exist_ok=True)
  rows = []
  for kind in formats:
    for quantized in (False, True) if int8 else (False,):
      path = os.path.join(directory, f"model{'_int8' if quantized else ''}.{kind}")
      out(f"export: writing {path}")
      int8_args = (calibration, ranges) if quantized else ()
      FORMATS[kind].write(function, config, path, *int8_args)
      runtimes = {t: FORMATS[kind].runtime(path, t) for t in THREADS}
      agreement = compare(jax_logits, runtimes[1], checks, importers.label_offset(config))
      rows.append(
        {
          "format": kind,
          "precision": "int8" if quantized else "float32",
          "path": path,
          **dataclasses.asdict(agreement),
          **{f"latency_ms_{t}_threads": latency_ms(runtimes[t], config) for t in THREADS},
        }
      )
      arithmetic_of = FORMATS[kind].arithmetic
      if quantized and arithmetic_of is not None:
        arithmetic = arithmetic_of(path)
        rows.append(
          {
            "format": kind,
            "precision": "int8 arithmetic",
            "path": path,
            **dataclasses.asdict(
              compare(jax_logits, arithmetic, checks, importers.label_offset(config))
            ),
            **{f"latency_ms_{t}_threads": None for t in THREADS},
          }
        )
  with open(os.path.join(directory, "export.json"), "w") as f:
    json.dump(rows, f, indent=2)
  out(
    tables.markdown_table(
      (
        "format",
        "precision",
        "images",
        "max logit difference",
        "same top-1",
        "top-1 (JAX)",
        *(f"ms, {t} thread{'s' * (t > 1)}" for t in THREADS),
      ),
      [
        (
          r["format"],
          r["precision"],
          r["count"],
          f"{r['max_logit_difference']:.2e}",
          f"{r['same_top1']}/{r['count']}",
          f"{100 * r['top1']:.1f} ({100 * r['jax_top1']:.1f})",
          *(
            "–" if r[f"latency_ms_{t}_threads"] is None else f"{r[f'latency_ms_{t}_threads']:.2f}"
            for t in THREADS
          ),
        )
        for r in rows
      ],
    )
  )
  out(
    f"Batch-1 latency on this machine's CPU ({os.cpu_count()} cores), median of 30 warm calls;"
    " not a phone's. 'int8 arithmetic': the int8 file op by op in float, as written."
  )
  return rows
