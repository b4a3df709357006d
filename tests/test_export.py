"""--mode=export: ONNX (and TFLite where TensorFlow is installed) equal to the JAX model, on a
trained tiny run and on the shared V1/V2 weights over ImageNet sample images."""

import json

import jax
import numpy as np
import pytest

from mobilenet_jax import evaluate, trainer
from mobilenet_jax.core import errors
from mobilenet_jax.deploy import export
from mobilenet_jax.models import mobilenet, quantization
from tests.helpers import (
  V1_TFJS,
  V2_NPY,
  WNIDS,
  load_config,
  needs_artifacts,
  run_launch,
  tiny_config,
  trained_once,
  v1_config,
  with_tensorflow,
  without_tensorflow,
)

# Whole training runs, exports, imported weights or several processes: not the fast tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_run(shared_tmp_path):
  """30 float steps with ONNX latency and post-training int8."""
  workdir = shared_tmp_path / "tiny_onnx_run"
  config = tiny_config(
    **{"training.num_steps": 30, "training.onnx_latency": True, "training.int8": "post_training"}
  )
  return trained_once(config, workdir)


def test_a_run_with_onnx_latency_records_onnxruntimes_batch1_latency(tiny_run):
  _, workdir = tiny_run
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["onnxruntime_latency_ms"] > 0 and summary["onnxruntime_latency_ms_4_threads"] > 0
  assert (workdir / "export" / "model.onnx").exists()


def test_a_run_with_post_training_int8_records_its_int8_top1_and_latency(tiny_run):
  config, workdir = tiny_run
  summary = json.loads((workdir / "summary.json").read_text())
  # Scored on every validation image against the JAX float model the run evaluated.
  assert abs(summary["int8_top1"] - summary["top1"]) < 0.1 and summary["int8_same_top1"] > 0.8
  assert abs(summary["int8_onnxruntime_top1"] - summary["int8_top1"]) < 0.1
  assert summary["int8_onnxruntime_latency_ms"] > 0
  assert summary["int8_onnxruntime_latency_ms_4_threads"] > 0
  assert (workdir / "export" / "model_int8.onnx").exists()
  leftovers = [p for p in (workdir / "export").iterdir() if p.suffix not in (".onnx", ".json")]
  assert leftovers in ([], [workdir / "export" / "model_int8.tflite"])


@with_tensorflow
def test_with_tensorflow_installed_an_int8_run_records_its_tflite_int8_in_litert(tiny_run):
  _, workdir = tiny_run
  summary = json.loads((workdir / "summary.json").read_text())
  # TensorFlow's converter quantizes the same folded function on its own: close, not equal.
  assert abs(summary["int8_litert_top1"] - summary["int8_top1"]) < 0.1
  assert summary["int8_litert_same_top1"] > 0.8
  assert summary["int8_litert_latency_ms"] > 0 and summary["int8_litert_latency_ms_4_threads"] > 0
  assert (workdir / "export" / "model_int8.tflite").exists()


@pytest.fixture(scope="session")
def qat_run(shared_tmp_path):
  """A float run of 30 steps with training.int8='qat': then 60 steps of quantization-aware
  fine-tuning in WORKDIR/qat, BN frozen after its step 50. Returns (config, workdir)."""
  workdir = shared_tmp_path / "tiny_qat_run"
  config = tiny_config(
    **{
      "training.num_steps": 30,
      "training.int8": "qat",
      "qat.num_steps": 60,
      "qat.freeze_bn_step": 50,
    }
  )
  return trained_once(config, workdir)


def test_same_top1_counts_a_tie_as_agreeing_with_either_tied_class():
  """int8 logits tie; one step of rounding noise in one runtime must not make another top-1."""
  step = 0.0336  # the tiny QAT run's logit scale
  ours = np.array([[2 * step, 2 * step, 0], [2 * step, step, 0], [0, 2 * step, 2 * step]])
  theirs = np.array([[2 * step, 3 * step, 0], [2 * step, 2 * step, 0], [3 * step, 2 * step, 0]])
  batches = [(np.zeros((3, 1), np.float32), np.array([0, 0, 1]), np.ones(3))]
  agreement = export.compare(lambda images: ours, lambda images: theirs, batches)
  # Ties on our side, on theirs, and a class each that the other does not rank first.
  assert (agreement.same_top1, agreement.count) == (2, 3)
  assert (agreement.jax_top1, agreement.top1) == (1.0, 1 / 3)


def test_a_quantization_aware_runs_int8_onnx_computes_its_jax_simulation(qat_run):
  import onnx
  from onnx import numpy_helper

  config, float_workdir = qat_run
  workdir = float_workdir / "qat"
  summary = json.loads((workdir / "summary.json").read_text())
  # The bar: the runtime's int8 arithmetic has the JAX simulation's top-1 on >= 99% of
  # the validation images (the file's float arithmetic rounds its sums; the simulation's are
  # exact, as the integer kernels' are).
  assert summary["int8_same_top1"] >= 0.99 and summary["int8_onnxruntime_same_top1"] >= 0.99
  assert abs(summary["int8_top1"] - summary["top1"]) <= 0.01
  assert summary["int8_onnxruntime_latency_ms"] > 0
  # Every activation's scale and zero point is the one the run learned, none re-calibrated.
  config = trainer.quantization_aware_config(config, float_workdir)
  variables = run_variables(config, workdir)
  images = jax.numpy.zeros(mobilenet.input_shape(config))
  learned = quantization.quantization_points(variables, mobilenet.build_model(config), images)
  graph = onnx.load(workdir / "export" / "model_int8.onnx").graph
  constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
  written = [
    (float(constants[n.input[1]]), int(constants[n.input[2]]))
    for n in graph.node
    if n.op_type == "QuantizeLinear" and constants[n.input[1]].ndim == 0
  ]
  assert written == learned and len(learned) == 18


def write_one_conv(path, kernel, bias=None, relu=False):
  """A float ONNX file of images (1, 4, 4, C) -> one 1x1 Conv (OIHW `kernel`) [-> Relu], as
  exports lay out a folded layer."""
  import onnx
  from onnx import TensorProto, helper, numpy_helper

  constants = {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}
  nodes = [
    helper.make_node("Transpose", ["images"], ["nchw"], perm=[0, 3, 1, 2]),
    helper.make_node("Conv", ["nchw", *constants], ["conv" if relu else "logits"]),
  ]
  if relu:
    nodes.append(helper.make_node("Relu", ["conv"], ["logits"]))
  graph = helper.make_graph(
    nodes,
    "one_conv",
    [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4, 4, kernel.shape[1]])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, kernel.shape[0], 4, 4])],
    [numpy_helper.from_array(v, k) for k, v in constants.items()],
  )
  onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_a_learned_range_export_keeps_the_bias_of_a_channel_whose_weights_are_zero(tmp_path):
  """A channel whose kernel is ~0 and bias is not: at input scale x weight scale (max|w| / 127)
  its int32 bias would overflow and be clipped to ~0; the exporter lets onnxruntime raise that
  channel's weight scale (as TFLite's converter does), so the int8 file still outputs the bias."""
  kernel = np.array([0.5, 1e-12], np.float32).reshape(2, 1, 1, 1)
  bias = np.array([0.1, 3.0], np.float32)
  write_one_conv(tmp_path / "float.onnx", kernel, bias, relu=True)
  images = np.random.default_rng(0).uniform(-1, 1, (1, 4, 4, 1)).astype(np.float32)
  # Learned ranges: the input at 1/127, the output in [0, 3.5].
  ranges = [(1 / 127, 0), (3.5 / 255, -128)]
  export.quantize_onnx(str(tmp_path / "float.onnx"), str(tmp_path / "int8.onnx"), [images], ranges)
  logits = export.OnnxModel(str(tmp_path / "int8.onnx"), integer_kernels=False)(images)
  np.testing.assert_allclose(logits[0, 1], 3.0, atol=3.5 / 255)
  np.testing.assert_allclose(logits[0, 0], np.maximum(0.5 * images[0, ..., 0] + 0.1, 0), atol=0.02)


def test_the_simulation_evaluates_a_layer_as_integer_runtimes_sum_it():
  """int8 codes times int8 codes summed exactly, plus the bias rounded to int32 at input scale x
  weight scale: what onnxruntime's and LiteRT's kernels add up; float32 sums of the dequantized
  values round along the way."""
  rng = np.random.default_rng(0)
  input_scale, inputs = np.float32(6 / 255), 512
  x = rng.integers(0, 256, (64, inputs)).astype(np.float32) * input_scale
  kernel = rng.normal(0, 0.05, (inputs, 32)).astype(np.float32)
  bias = rng.normal(0, 1, 32).astype(np.float32)
  ours = np.asarray(quantization.integer_layer(x, kernel, bias, jax.numpy.matmul, input_scale))
  codes, weight_scale = map(np.asarray, quantization.weight_codes(kernel))
  unit = input_scale * weight_scale
  exact = np.rint(x / input_scale).astype(np.int64) @ codes.astype(np.int64)
  exact = exact + np.rint(bias / unit).astype(np.int64)
  np.testing.assert_array_equal(ours, (exact * unit).astype(np.float32))
  float_sums = np.asarray(x @ quantization.fake_quantize_weights(kernel) + bias)
  assert np.any(float_sums != ours)


def test_onnxruntimes_integer_kernels_sum_in_32_bits(tmp_path):
  """Large int8 inputs times weights of 127: on an x86 CPU without VNNI onnxruntime's u8s8
  kernels sum pairs of products in 16 bits and saturate unless session.x64quantprecision is on;
  OnnxModel's integer kernels then compute what the file's arithmetic computes."""
  channels = 64
  write_one_conv(tmp_path / "f.onnx", np.ones((8, channels, 1, 1), np.float32))
  images = np.random.default_rng(0).uniform(0.9, 1, (1, 4, 4, channels)).astype(np.float32)
  ranges = [(2 / 255, 0), (2 * channels / 255, 0)]  # inputs in [-1, 1], sums in [-64, 64]
  export.quantize_onnx(str(tmp_path / "f.onnx"), str(tmp_path / "int8.onnx"), [images], ranges)
  arithmetic = export.OnnxModel(str(tmp_path / "int8.onnx"), integer_kernels=False)(images)
  kernels = export.OnnxModel(str(tmp_path / "int8.onnx"))(images)
  sums = np.broadcast_to(np.sum(images, -1)[:, None], arithmetic.shape)  # NCHW
  np.testing.assert_allclose(arithmetic, sums, atol=2 * channels / 255)
  np.testing.assert_array_equal(kernels, arithmetic)


def test_int8_qat_records_the_fine_tunings_int8_in_the_float_runs_summary(qat_run):
  _, workdir = qat_run
  summary = json.loads((workdir / "summary.json").read_text())
  child = json.loads((workdir / "qat" / "summary.json").read_text())
  assert summary["status"] == child["status"] == "finished"
  assert (summary["steps"], child["steps"]) == (30, 60)
  assert summary["qat_top1"] == child["top1"] and summary["int8_top1"] == child["int8_top1"]
  for name in ("int8_same_top1", "int8_onnxruntime_top1", "int8_onnxruntime_latency_ms_4_threads"):
    assert summary[name] == child[name]
  assert summary["onnxruntime_latency_ms"] > 0  # the float model's, beside its int8 one
  # The float run's checkpoints were all written before the fine-tuning's first one, and kept.
  float_files = [p for p in (workdir / "checkpoints").rglob("*") if p.is_file()]
  qat_files = [p for p in (workdir / "qat" / "checkpoints").rglob("*") if p.is_file()]
  assert float_files and qat_files
  assert max(p.stat().st_mtime_ns for p in float_files) < min(
    p.stat().st_mtime_ns for p in qat_files
  )


@with_tensorflow
def test_with_tensorflow_installed_a_quantization_aware_runs_litert_int8_computes_its_simulation(
  qat_run,
):
  _, workdir = qat_run
  summary = json.loads((workdir / "summary.json").read_text())
  child = json.loads((workdir / "qat" / "summary.json").read_text())
  assert child["int8_litert_same_top1"] >= 0.99 and child["int8_litert_latency_ms"] > 0
  for name in ("int8_litert_top1", "int8_litert_same_top1", "int8_litert_latency_ms_4_threads"):
    assert summary[name] == child[name]


def test_quantization_aware_training_freezes_bn_statistics_at_its_step(qat_run):
  import orbax.checkpoint as ocp

  _, float_workdir = qat_run
  workdir = float_workdir / "qat"
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state",))
  stats = {
    step: manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state[
      "batch_stats"
    ]["block_03"]["expand"]["bn"]
    for step in (50, 60)
  }
  for name in ("mean", "var"):
    np.testing.assert_array_equal(stats[50][name], stats[60][name])
  assert stats[60]["steps"] == 60
  assert stats[60]["output"]["high"] != stats[50]["output"]["high"]  # ranges keep tracking


def test_quantization_aware_training_from_a_mismatched_workdir_names_it(tiny_run, tmp_path):
  _, float_workdir = tiny_run
  config = tiny_config(
    **{
      "model.quantized": True,
      "init_from": f"workdir:{float_workdir}",
      "model.width_multiplier": 0.5,
    }
  )
  with pytest.raises(
    errors.WeightsError, match=r"does not fit config.model \(tiny, width_multiplier=0.5"
  ):
    trainer.train_and_evaluate(config, str(tmp_path / "qat"))
  config.init_from = f"workdir:{tmp_path / 'missing'}"
  with pytest.raises(errors.WeightsError, match=r"missing does not exist"):
    trainer.train_and_evaluate(config, str(tmp_path / "qat"))
  assert not (tmp_path / "qat").exists()


def test_int8_without_a_training_split_to_calibrate_on_is_one_line_and_writes_nothing(
  tiny_run, tmp_path
):
  from PIL import Image

  config, workdir = tiny_run
  variables = run_variables(config, workdir)
  for i in range(2):
    folder = tmp_path / "data" / "val" / f"class_{i}"
    folder.mkdir(parents=True)
    Image.new("RGB", (40, 40), (100 * i, 0, 0)).save(folder / "a.jpg")
  config = config.copy_and_resolve_references()
  config.data.dataset = f"folder:{tmp_path / 'data'}"
  with pytest.raises(errors.DataError, match=r"no directory .*data/train; expected"):
    export.export(config, variables, str(tmp_path / "run"), ["onnx"], int8=True, check_examples=2)
  assert not (tmp_path / "run").exists()


def test_the_exported_v2_graph_is_one_conv_per_layer_with_its_activation_fused(tmp_path):
  import collections

  import onnx

  config = load_config("mobilenet_v2", "width=0.35,res=32")
  # The graph's structure, not its numbers: weights drawn by numpy, no init to compile.
  shapes = jax.eval_shape(
    mobilenet.build_model(config).init,
    jax.random.key(0),
    jax.ShapeDtypeStruct(mobilenet.input_shape(config), jax.numpy.float32),
  )
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: rng.uniform(0.5, 1.5, s.shape).astype(s.dtype), shapes)
  path = str(tmp_path / "v2.onnx")
  export.write_onnx(export.inference_function(config, variables), config, path)
  ops = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
  # V2's 52 convs, 35 of them followed by ReLU6 (the 17 projections are linear), its 10
  # residual adds, one transpose of the NHWC input, the pool and the classifier: BatchNorm is
  # in the Convs' weights (the head conv's too, its output transpose sunk into the pool), no op
  # computes it.
  assert ops == {
    "Conv": 52,
    "Clip": 35,
    "Add": 10,
    "Transpose": 1,
    "ReduceMean": 1,
    "Gemm": 1,
  }, ops
  assert sorted(p.name for p in tmp_path.iterdir()) == ["v2.onnx"]  # no traced or partial file


def test_an_interrupted_onnx_export_leaves_no_file_a_later_check_would_take_for_finished(
  tmp_path, monkeypatch
):
  import onnxruntime

  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  config = tiny_config()
  init = jax.jit(
    mobilenet.build_model(config).init, compiler_options=mobilenet.INIT_COMPILER_OPTIONS
  )
  variables = init(jax.random.key(0), jax.numpy.zeros(mobilenet.input_shape(config)))
  monkeypatch.setattr(onnxruntime, "InferenceSession", interrupted)
  with pytest.raises(KeyboardInterrupt):
    export.write_onnx(
      export.inference_function(config, variables), config, str(tmp_path / "m.onnx")
    )
  assert list(tmp_path.iterdir()) == []


def run_variables(config, workdir):
  """The run's latest checkpoint's weights, as --mode=export loads them."""
  return evaluate.inference_variables(config, mobilenet.build_model(config), str(workdir))[0]


def test_a_trained_run_exports_to_onnx_float_and_int8_checked_and_timed(tiny_run):
  config, workdir = tiny_run
  rows = export.export(
    config, run_variables(config, workdir), str(workdir), ["onnx"], int8=True, check_examples=128
  )
  assert [(r["format"], r["precision"]) for r in rows] == [
    ("onnx", "float32"),
    ("onnx", "int8"),
    ("onnx", "int8 arithmetic"),
  ]
  float32, int8, arithmetic = rows
  assert arithmetic["same_top1"] > 64 and arithmetic["latency_ms_1_threads"] is None
  assert (workdir / "export" / "model.onnx").exists() and (
    workdir / "export" / "model_int8.onnx"
  ).exists()
  assert float32["count"] == 128 and float32["same_top1"] == 128
  assert float32["max_logit_difference"] < 1e-4 and float32["top1"] == float32["jax_top1"]
  assert 0 < int8["max_logit_difference"] and int8["same_top1"] > 64  # quantized: close, not equal
  assert all(r[f"latency_ms_{t}_threads"] > 0 for r in rows[:2] for t in export.THREADS)
  assert json.loads((workdir / "export" / "export.json").read_text()) == rows


def test_exporting_a_quantization_aware_run_writes_its_learned_ranges_not_calibrated_ones(
  qat_run, tmp_path
):
  import onnx

  float_config, float_workdir = qat_run
  config = trainer.quantization_aware_config(float_config, float_workdir)
  workdir = float_workdir / "qat"
  variables = run_variables(config, workdir)
  rows = export.export(config, variables, str(tmp_path), ["onnx"], int8=True, check_examples=128)
  written, trained = (
    onnx.load(directory / "export" / "model_int8.onnx").graph.initializer
    for directory in (tmp_path, workdir)
  )
  assert {i.name: i.raw_data for i in written} == {i.name: i.raw_data for i in trained}
  assert rows[2]["precision"] == "int8 arithmetic" and rows[2]["same_top1"] >= 127


@with_tensorflow
def test_a_quantization_aware_runs_tflite_int8_has_its_learned_ranges_and_computes_its_simulation(
  qat_run, tmp_path
):
  from ai_edge_litert.interpreter import Interpreter

  float_config, float_workdir = qat_run
  config = trainer.quantization_aware_config(float_config, float_workdir)
  variables = run_variables(config, float_workdir / "qat")
  rows = export.export(config, variables, str(tmp_path), ["tflite"], int8=True, check_examples=128)
  assert rows[1]["precision"] == "int8" and rows[1]["same_top1"] >= 127
  learned = export.learned_ranges(config, variables)
  # The logits differ from the simulation's by float rounding at a few round() ties: a step.
  assert rows[1]["max_logit_difference"] <= 2.01 * learned[-1][0]
  activations = [
    d["quantization"]
    for d in Interpreter(str(tmp_path / "export" / "model_int8.tflite")).get_tensor_details()
    if d["dtype"] == np.int8 and d["quantization_parameters"]["scales"].size == 1
  ]
  pooled = len(learned) - 2  # the pool's sum of its 2x2 features' means: four times the scale
  learned[pooled] = (4 * learned[pooled][0], learned[pooled][1])
  # Each learned range is in the file; the converter derives it from a min and max: 1e-6.
  for scale, zero in learned:
    assert any(z == zero and np.isclose(s, scale, rtol=1e-6) for s, z in activations), scale


@needs_artifacts("mobilenet_v2_1.0_224_tfslim_float_npy")
@needs_artifacts("mobilenet_v1_0.75_224_keras_tfjs")
def test_shared_v1_and_v2_weights_in_onnxruntime_equal_jax_on_imagenet_images(imagenet_folder):
  v2 = load_config("mobilenet_v2")
  v2.init_from, v2.model.num_classes = f"slim_npy:{V2_NPY}", 1001
  v1 = v1_config(f"keras_tfjs:{V1_TFJS}")
  for config, offset in ((v1, 0), (v2, 1)):
    config.data.dataset = f"folder:{imagenet_folder}"
    config.data.class_names, config.data.eval_batch_size = str(WNIDS), 50
    variables, _ = evaluate.inference_variables(config, mobilenet.build_model(config))
    function = export.inference_function(config, variables)
    path = str(imagenet_folder / f"{config.model.name}.onnx")
    export.write_onnx(function, config, path)
    agreement = export.compare(
      jax.jit(function), export.OnnxModel(path), export.check_batches(config, 50), offset
    )
    # float32 in both; the runtimes sum in other orders (measured on all 250 images: 4.0e-5 for
    # V1 and 4.2e-5 for V2, every top-1 the same; README's export table).
    assert agreement.count == 50 and agreement.same_top1 == 50, agreement
    assert agreement.max_logit_difference < 1e-3 and agreement.top1 == agreement.jax_top1


@with_tensorflow
def test_tflite_export_equals_jax(tiny_run, tmp_path):
  config, workdir = tiny_run
  rows = export.export(
    config, run_variables(config, workdir), str(tmp_path), ["tflite"], int8=True, check_examples=64
  )
  assert rows[0]["same_top1"] == 64 and rows[0]["max_logit_difference"] < 1e-4
  assert rows[1]["precision"] == "int8" and rows[1]["same_top1"] > 32


@without_tensorflow
def test_tflite_without_tensorflow_says_what_to_install(tiny_run):
  config, workdir = tiny_run
  with pytest.raises(
    errors.UserError, match=r"TensorFlow is not installed; pip install tensorflow-cpu"
  ):
    export.export(config, run_variables(config, workdir), str(workdir), ["tflite"])
  assert not (workdir / "export" / "model.tflite").exists()


def test_export_without_a_workdir_is_one_line():
  result = run_launch("--config=configs/tiny.py", "--mode=export")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.startswith("error: --mode=export needs --workdir=DIR")


@pytest.mark.parametrize(
  "flags, message",
  [
    (
      ["--int8", "--calibration_examples=0"],
      "error: --calibration_examples=0; allowed: integers >= 1 (the training images int8's "
      "activation ranges are measured on)\n",
    ),
    (
      ["--check_examples=-3"],
      "error: --check_examples=-3; allowed: integers >= 0 (0 = every validation image)\n",
    ),
  ],
  ids=["calibration_size_of_zero", "negative_check_count"],
)
def test_a_bad_image_count_is_one_line_and_writes_nothing(tmp_path, flags, message):
  result = run_launch("--config=configs/tiny.py", "--mode=export", f"--workdir={tmp_path}", *flags)
  assert result.returncode == 1 and result.stderr == message
  assert not (tmp_path / "export").exists()


def test_a_hybrid_exports_to_onnx_with_its_attention_and_equals_jax(tmp_path):
  import collections

  import onnx

  config = load_config("mobilenet_v4_hybrid_medium", "width=0.25,res=32")
  mqa = [row for row in config.model.blocks if row[0] == "mobile_mqa"]
  # Its stem, its first UIB, and one attention block with downsampled keys, one without.
  config.model.blocks = (*config.model.blocks[:3], mqa[0], mqa[-1], config.model.blocks[-1])
  model = mobilenet.build_model(config, conv_impl="xla")
  images = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  init = jax.jit(model.init, compiler_options=mobilenet.INIT_COMPILER_OPTIONS)
  variables = init(jax.random.key(0), images)
  path = str(tmp_path / "hybrid.onnx")
  export.write_onnx(export.inference_function(config, variables), config, path)
  ops = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
  # Each Mobile MQA block: its query-key and attention-value matmuls, one softmax.
  assert ops["Softmax"] == 2 and ops["Einsum"] == 4, ops
  logits = np.asarray(jax.jit(model.apply)(variables, images))
  exported = export.OnnxModel(path)(images)
  assert np.abs(exported - logits).max() <= 1e-4 * np.abs(logits).max()
