"""The trained model as the files mobile runtimes load, checked against JAX, and its latency in
those runtimes.

ONNX through jax2onnx, run by onnxruntime; TFLite through jax2tf and TensorFlow's converter, run
by LiteRT's interpreter (TensorFlow is an optional install). Both trace the `xla` convolutions,
which become the runtimes' own Conv ops and compute the same function as `shifted`. int8 is
post-training static quantization calibrated on training images (evaluation preprocessing),
reported apart from float32 as the papers report their quantized rows.
"""

import dataclasses
import importlib.util
import json
import os
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mobilenet_jax.core import errors, tables
from mobilenet_jax.data import pipeline, sources
from mobilenet_jax.deploy import latency
from mobilenet_jax.models import importers, mobilenet

EXPORT_DIR = "export"
THREADS = (1, 4)  # the runtimes' intra-op threads for latency
TENSORFLOW_HINT = "pip install tensorflow-cpu (TFLite export needs TensorFlow's converter)"


def inference_function(config, variables):
  """images (N, H, W, 3) in [-1, 1] -> logits, with the weights closed over."""
  model = mobilenet.build_model(config, conv_impl="xla")
  return lambda images: model.apply(variables, images, train=False)


def write_onnx(function, config, path):
  """The float32 ONNX graph of `function`, with a dynamic batch dimension."""
  from jax2onnx import to_onnx  # with sympy, half a second of every launch.py start

  shape = jax.ShapeDtypeStruct(("batch", *mobilenet.input_shape(config)[1:]), jnp.float32)
  to_onnx(
    function,
    inputs=[shape],
    model_name=config.model.name,
    input_names=["images"],
    output_names=["logits"],
    return_mode="file",
    output_path=path,
  )


def quantize_onnx(float_path, int8_path, calibration):
  """Static int8 (QDQ: int8 weights per output channel, int8 activations) from the ranges the
  `calibration` batches reach, after onnxruntime's recommended shape inference and folding."""
  from onnxruntime import quantization

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
    int8_path,
    Calibration(calibration),
    quant_format=quantization.QuantFormat.QDQ,
    per_channel=True,
    activation_type=quantization.QuantType.QInt8,
    weight_type=quantization.QuantType.QInt8,
  )
  os.remove(prepared)


def _tensorflow():
  if importlib.util.find_spec("tensorflow") is None:
    raise errors.UserError(f"--format=tflite: TensorFlow is not installed; {TENSORFLOW_HINT}")
  import tensorflow as tf
  from jax.experimental import jax2tf

  return tf, jax2tf


def write_tflite(function, config, path, calibration=None):
  """The TFLite flatbuffer of `function` at batch 1; with `calibration` batches, int8 weights
  and activations (float32 input and output, as LiteRT's examples feed them)."""
  tf, jax2tf = _tensorflow()
  shape = mobilenet.input_shape(config)
  # TF ops, not one XlaCallModule op: the TFLite converter maps TF ops only.
  converted = tf.function(
    jax2tf.convert(function, with_gradient=False, native_serialization=False),
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
  with open(path, "wb") as f:
    f.write(converter.convert())


class OnnxModel:
  """An exported .onnx file in onnxruntime on this machine's CPU."""

  def __init__(self, path, threads=1):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
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
    self.input = self.interpreter.get_input_details()[0]["index"]
    self.output = self.interpreter.get_output_details()[0]["index"]

  def __call__(self, images):
    logits = []
    for image in images:  # converted at batch 1, as a phone runs it
      self.interpreter.set_tensor(self.input, image[None])
      self.interpreter.invoke()
      logits.append(self.interpreter.get_tensor(self.output)[0])
    return np.stack(logits)


def write_onnx_file(function, config, path, calibration=None):
  """write_onnx, then with `calibration` batches quantize_onnx in the float file's place."""
  if calibration is None:
    return write_onnx(function, config, path)
  write_onnx(function, config, path + ".float")
  quantize_onnx(path + ".float", path, calibration)
  os.remove(path + ".float")


@dataclasses.dataclass(frozen=True)
class Format:
  """An export format: its writer, the runtime that loads it, and a check before any work."""

  write: Callable[..., None]  # (function, config, path, calibration batches or None)
  runtime: Callable[[str, int], Callable]  # (path, threads) -> images -> logits
  check: Callable[[], Any] = lambda: None  # raises errors.UserError where it cannot be written


# --format: the files --mode=export writes.
FORMATS = {
  "onnx": Format(write_onnx_file, OnnxModel),
  "tflite": Format(write_tflite, TfliteModel, _tensorflow),
}


def latency_ms(model, config, repeats=30, warmup=5):
  """Median wall time of one batch-1 call after `warmup` calls, in milliseconds."""
  image = np.random.default_rng(0).uniform(-1, 1, mobilenet.input_shape(config)).astype(np.float32)
  return 1000 * latency.median_seconds(model, (image,), repeats, warmup)


def onnx_latency(config, variables, workdir):
  """Writes WORKDIR/export/model.onnx; returns its onnxruntime batch-1 latency per thread count,
  as summary.json records it."""
  os.makedirs(os.path.join(workdir, EXPORT_DIR), exist_ok=True)
  path = os.path.join(workdir, EXPORT_DIR, "model.onnx")
  write_onnx(inference_function(config, variables), config, path)
  names = {t: "onnxruntime_latency_ms" + ("" if t == 1 else f"_{t}_threads") for t in THREADS}
  return {names[t]: latency_ms(OnnxModel(path, t), config) for t in THREADS}


@dataclasses.dataclass
class Agreement:
  """An exported model against JAX on the same images."""

  count: int
  max_logit_difference: float
  same_top1: int  # images whose top-1 class is the same in both
  top1: float  # the exported model's accuracy
  jax_top1: float


def compare(jax_logits, exported, batches, label_offset=0):
  """`exported` against `jax_logits` (both images -> logits) over (images, labels, mask) batches."""
  count = same = correct = jax_correct = 0
  difference = 0.0
  for images, labels, mask in batches:
    keep = mask > 0
    images, labels = images[keep], labels[keep] + label_offset
    ours, theirs = np.asarray(jax_logits(images)), exported(images)
    difference = max(difference, float(np.abs(ours - theirs).max()))
    same += int((ours.argmax(-1) == theirs.argmax(-1)).sum())
    correct += int((theirs.argmax(-1) == labels).sum())
    jax_correct += int((ours.argmax(-1) == labels).sum())
    count += len(labels)
  return Agreement(count, difference, same, correct / count, jax_correct / count)


def check_batches(config, count):
  """Batches (images, labels, mask) of the first `count` validation examples, preprocessed as
  for evaluation."""
  config = config.copy_and_resolve_references()
  config.data.max_eval_examples = count
  batches, _ = pipeline.eval_batches(sources.load_split(config.data, "val"), config)
  return [
    (pipeline.to_float(images), labels, mask) for images, labels, mask in pipeline.iterate(batches)
  ]


def calibration_batches(config, count=100, batch_size=10):
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


def check_request(formats: Sequence[str], check_examples: int) -> None:
  """Before any work: the one line that says what a format needs installed, or that the number
  of check images is not one."""
  if check_examples < 0:
    raise errors.UserError(
      f"--check_examples={check_examples}; allowed: integers >= 0 (0 = every validation image)"
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
  out: Callable[[str], Any] = print,
) -> list[dict]:
  """Writes WORKDIR/export/model[_int8].{onnx,tflite} of the model `config` describes with
  `variables`; checks each on the first `check_examples` validation images and measures its
  batch-1 latency; writes export.json and returns its rows."""
  check_request(formats, check_examples)
  function = inference_function(config, variables)
  jax_logits = jax.jit(function)
  directory = os.path.join(workdir, EXPORT_DIR)
  os.makedirs(directory, exist_ok=True)
  checks = check_batches(config, check_examples)
  calibration = calibration_batches(config) if int8 else None
  rows = []
  for kind in formats:
    for quantized in (False, True) if int8 else (False,):
      path = os.path.join(directory, f"model{'_int8' if quantized else ''}.{kind}")
      out(f"export: writing {path}")
      FORMATS[kind].write(function, config, path, calibration if quantized else None)
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
          *(f"{r[f'latency_ms_{t}_threads']:.2f}" for t in THREADS),
        )
        for r in rows
      ],
    )
  )
  out(
    f"Batch-1 latency on this machine's CPU ({os.cpu_count()} cores), median of 30 warm calls;"
    " not a phone's."
  )
  return rows
