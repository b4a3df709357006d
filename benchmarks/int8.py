"""Float and post-training int8 exports of the shared ImageNet weights, on the 250 sample images.

  python benchmarks/int8.py --out=runs/int8 [--calibration=10,100,500] [--qat_steps=300]

V1 0.75-224 (Keras weights) and V2 1.0-224 (TF-slim weights), each exported as this project
exports (`deploy/export.py`): the folded float ONNX, and post-training int8 ONNX calibrated on
N Imagenette training images (evaluation preprocessing) for each N of --calibration; TFLite
float and int8 where a converter is installed. Beside them: the unfolded ONNX graph (the model
as it trains, traced by jax2onnx) that exports wrote before folding, and where LiteRT is
installed the published int8 V2 1.0-224 (Coral's full-integer .tflite, `../shared/artifacts`).
With --qat_steps, also each model fine-tuned quantization-aware for that many steps on
Imagenette's training images, taught by the float model's own 1000-way outputs
(config.distill, weight 1: Imagenette's 10 labels are not ImageNet's task), and its int8 ONNX
and TFLite with the ranges it learned.
Each row gives top-1 on the 250 images, how many share the JAX float model's top-1 (a QAT
file: its JAX int8 simulation's; ties count as shared, export.compare) (int8 ONNX:
the int8 model's arithmetic, `OnnxModel(integer_kernels=False)`, then in brackets what
onnxruntime's integer kernels give), its node count, and its 1-thread batch-1
latency; the latencies are measured round-robin over the rows
in one process (median over rounds of each round's median), so they compare side by side.
"""

import argparse
import csv
import importlib.util
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from mobilenet_jax import trainer  # noqa: E402
from mobilenet_jax.config import command_line  # noqa: E402
from mobilenet_jax.core import tables  # noqa: E402
from mobilenet_jax.deploy import export, latency  # noqa: E402
from mobilenet_jax.evaluate import inference_variables  # noqa: E402
from mobilenet_jax.models import mobilenet  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARTIFACTS = os.path.join(REPO, "..", "shared", "artifacts")
SAMPLE = os.path.join(ARTIFACTS, "datasets", "imagenet_sample_250")
IMAGENETTE = os.path.join(ARTIFACTS, "datasets", "imagenette2_224")
CORAL_V2 = os.path.join(ARTIFACTS, "mobilenet_v2_1.0_224_quant_coral.tflite")
MODELS = {
  "V1 0.75-224": (
    "mobilenet_v1",
    "width=0.75",
    "keras_tfjs:" + os.path.join(ARTIFACTS, "mobilenet_v1_0.75_224_keras_tfjs"),
    1000,
  ),
  "V2 1.0-224": (
    "mobilenet_v2",
    "",
    "slim_npy:" + os.path.join(ARTIFACTS, "mobilenet_v2_1.0_224_tfslim_float_npy"),
    1001,
  ),
}


def dataset_folder(root):
  """The 250 sample images as val/, Imagenette's training images as train/ (links), made once
  under --out: the QAT runs' configs name it, so a rerun with the same --out resumes them."""
  if os.path.isdir(os.path.join(root, "train")):
    return root
  with open(os.path.join(SAMPLE, "labels.csv")) as f:
    for row in csv.DictReader(f):
      link = os.path.join(root, "val", row["wnid"], row["file"])
      os.makedirs(os.path.dirname(link), exist_ok=True)
      if not os.path.lexists(link):  # a run killed while linking
        os.symlink(os.path.join(SAMPLE, row["file"]), link)
  os.symlink(os.path.join(IMAGENETTE, "train"), os.path.join(root, "train"))
  return root


def model_config(name, arg, init_from, num_classes, folder):
  config = command_line.load_config_file(os.path.join(REPO, "configs", f"{name}.py:{arg}"))
  config.init_from, config.model.num_classes = init_from, num_classes
  config.data.dataset = f"folder:{folder}"
  config.data.class_names = os.path.join(ARTIFACTS, "imagenet_wnids_1000.txt")
  config.data.eval_batch_size = 50
  return config


def distilled_qat_config(config, steps, learning_rate):
  """`config`'s model fine-tuned quantization-aware, taught by its own float weights."""
  qat = config.copy_and_resolve_references()
  qat.model.quantized = True
  qat.distill.teacher, qat.distill.weight = config.init_from, 1.0
  # BN frozen from the start: batch statistics of 32 Imagenette crops are not ImageNet's, and
  # the frozen student computes exactly the network it learns to match, up to int8.
  qat.qat.freeze_bn_step = 0
  qat.training.num_steps, qat.optimizer.learning_rate = steps, learning_rate
  qat.data.batch_size = qat.optimizer.reference_batch_size = 32
  qat.training.ema_decay = 0.0
  qat.training.log_every_steps, qat.training.checkpoint_every_steps = 25, 100
  qat.training.measure_latency, qat.wandb.mode = False, "disabled"
  return qat


def node_count(path):
  if path.endswith(".onnx"):
    import onnx

    return len(onnx.load(path).graph.node)
  from ai_edge_litert.interpreter import Interpreter

  return len(Interpreter(model_path=path)._get_ops_details())


def side_by_side_ms(models, config, rounds=5, calls=20):
  """Each model's batch-1 latency in ms, interleaved: `rounds` rounds of `calls` calls each."""
  image = np.random.default_rng(0).uniform(-1, 1, mobilenet.input_shape(config)).astype(np.float32)
  medians = {name: [] for name in models}
  for _ in range(rounds):
    for name, model in models.items():
      medians[name].append(latency.median_seconds(model, (image,), calls, 3))
  return {name: 1000 * statistics.median(values) for name, values in medians.items()}


def tflite_available():
  try:
    export.FORMATS["tflite"].check()
    return True
  except Exception:
    return False


def rows_for(label, config, directory, calibration_sizes, qat_steps, qat_learning_rate):
  import jax
  import jax.numpy as jnp

  variables, _ = inference_variables(config, mobilenet.build_model(config))
  jax_logits = jax.jit(export.model_function(config, variables))
  folded = export.inference_function(config, variables)
  checks = list(export.check_batches(config, 0))
  offset = config.model.num_classes - 1000
  files = {}
  unfolded = os.path.join(directory, "unfolded.onnx")
  export.jax2onnx_to_onnx()(
    export.model_function(config, variables),
    inputs=[jax.ShapeDtypeStruct(("batch", 224, 224, 3), jnp.float32)],
    input_names=["images"],
    output_names=["logits"],
    return_mode="file",
    output_path=unfolded,
  )
  files["onnxruntime float32, unfolded (before)"] = unfolded
  kinds = ["onnx"] + (["tflite"] if tflite_available() else [])
  for kind in kinds:
    path = os.path.join(directory, f"model.{kind}")
    export.FORMATS[kind].write(folded, config, path, None)
    files[f"{kind} float32, folded"] = path
    for size in calibration_sizes:
      path = os.path.join(directory, f"model_int8_{size}.{kind}")
      calibration = export.calibration_batches(config, size)
      export.FORMATS[kind].write(folded, config, path, calibration)
      files[f"{kind} int8, {size} calibration images"] = path
  qat_logits = None
  if qat_steps:
    qat = distilled_qat_config(config, qat_steps, qat_learning_rate)
    qat_dir = os.path.join(directory, "qat")
    trainer.train_and_evaluate(qat, qat_dir)
    qat_variables, _ = inference_variables(qat, mobilenet.build_model(qat), qat_dir)
    qat_logits = jax.jit(export.model_function(qat, qat_variables))
    files[f"onnx int8, QAT distilled {qat_steps} steps"] = os.path.join(
      qat_dir, export.EXPORT_DIR, "model_int8.onnx"
    )
    if "tflite" in kinds:
      path = os.path.join(qat_dir, export.EXPORT_DIR, "model_int8.tflite")
      export.write_tflite(
        export.inference_function(qat, qat_variables),
        qat,
        path,
        [np.zeros(mobilenet.input_shape(qat), np.float32)],  # read by no range
        export.learned_ranges(qat, qat_variables),
      )
      files[f"tflite int8, QAT distilled {qat_steps} steps"] = path
  if offset and os.path.exists(CORAL_V2) and importlib.util.find_spec("ai_edge_litert"):
    files["tflite int8, published (Coral)"] = CORAL_V2
  runtimes = {
    name: export.FORMATS["tflite" if path.endswith(".tflite") else "onnx"].runtime(path, 1)
    for name, path in files.items()
  }
  jax_top1 = export.compare(jax_logits, jax_logits, checks, offset).top1
  rows = [(label, "JAX float32", f"{100 * jax_top1:.1f}%", "", "", "")]
  if qat_logits is not None:
    simulated = export.compare(jax_logits, qat_logits, checks, offset)
    rows.append(
      (
        "",
        f"JAX int8 simulation, QAT distilled {qat_steps} steps",
        f"{100 * simulated.top1:.1f}%",
        f"{simulated.same_top1}/{simulated.count}",
        "",
        "",
      )
    )
  ms = side_by_side_ms(runtimes, config)
  for name, runtime in runtimes.items():
    # A QAT file is compared with the simulation it was trained as (the 99% bar).
    reference = qat_logits if "QAT" in name else jax_logits
    agreement = export.compare(reference, runtime, checks, offset)
    top1 = f"{100 * agreement.top1:.1f}%"
    same = f"{agreement.same_top1}/{agreement.count}"
    if "onnx int8" in name:  # the int8 model's arithmetic, then this CPU's integer kernels
      arithmetic = export.compare(
        reference, export.OnnxModel(files[name], integer_kernels=False), checks, offset
      )
      top1 = f"{100 * arithmetic.top1:.1f}% ({top1})"
      same = f"{arithmetic.same_top1}/{arithmetic.count} ({same})"
    rows.append(("", name, top1, same, node_count(files[name]), f"{ms[name]:.2f}"))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=None, help="Where the exported files go (default: temp).")
  parser.add_argument("--calibration", default="100", help="Calibration sizes, comma-separated.")
  parser.add_argument("--models", default=",".join(MODELS), help="Of: " + ", ".join(MODELS))
  parser.add_argument("--qat_steps", type=int, default=0, help="Distilled QAT steps (0: none).")
  parser.add_argument(
    "--qat_learning_rate", type=float, default=3e-5, help="TF1 RMSprop's, batch 32."
  )
  args = parser.parse_args()
  out = args.out or tempfile.mkdtemp()
  folder = dataset_folder(os.path.join(out, "dataset"))
  sizes = [int(size) for size in args.calibration.split(",")]
  rows = []
  for label in args.models.split(","):
    directory = os.path.join(out, label.replace(" ", "_"))
    os.makedirs(directory, exist_ok=True)
    config = model_config(*MODELS[label], folder)
    rows += rows_for(label, config, directory, sizes, args.qat_steps, args.qat_learning_rate)
    print(f"{label}: done", flush=True)
  print(
    tables.markdown_table(
      ("model", "runtime, precision", "top-1 (250)", "same top-1 as JAX", "nodes", "ms, 1 thread"),
      rows,
    )
  )


if __name__ == "__main__":
  main()
