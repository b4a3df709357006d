"""How often a quantization-aware run's int8 files and its JAX simulation share their top-1, and
how often two computations of the same int8 model do.

  python benchmarks/int8_agreement.py --workdir=runs/int8_qat/V2_1.0-224/qat \
      [--dataset=folder:../shared/artifacts/datasets/imagenette2_224]

Sides, each scored on the run's validation images (or --dataset's): the simulation with XLA's
convolutions and with the `shifted` ones (the same function, summed in another order), the
ONNX file's own arithmetic (float ops between its DequantizeLinear and QuantizeLinear nodes),
onnxruntime's integer kernels, and the TFLite file where LiteRT is installed. The
int8 files are re-quantized from the run's float ONNX with today's exporter. Prints the
same-top-1 count of every pair (ties count as shared, as export.compare counts them) and each
side's top-1.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from mobilenet_jax import evaluate  # noqa: E402
from mobilenet_jax.config import workdir as workdir_lib  # noqa: E402
from mobilenet_jax.core import tables  # noqa: E402
from mobilenet_jax.deploy import export  # noqa: E402
from mobilenet_jax.models import importers, mobilenet  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="a finished quantization-aware run")
  parser.add_argument("--dataset", default="", help="score these images instead (data.dataset)")
  args = parser.parse_args()
  config = ml_collections.ConfigDict(workdir_lib.read_config(args.workdir))
  if args.dataset:
    config.data.dataset = args.dataset
  variables, _ = evaluate.inference_variables(config, mobilenet.build_model(config), args.workdir)
  float_onnx = os.path.join(args.workdir, export.EXPORT_DIR, "model.onnx")
  onnx_path, tflite_path = export.write_int8_files(
    config,
    variables,
    float_onnx,
    tempfile.mkdtemp(),
    *export.quantization_inputs(config, variables, export.CALIBRATION_EXAMPLES),
  )

  def simulation(impl):
    model = mobilenet.build_model(config, conv_impl=impl)
    return jax.jit(lambda images: model.apply(variables, images, train=False))

  sides = {
    "JAX simulation (xla convs)": simulation("xla"),
    "JAX simulation (shifted convs)": simulation("shifted"),
    "ONNX arithmetic": export.OnnxModel(onnx_path, integer_kernels=False),
    "onnxruntime integer kernels": export.OnnxModel(onnx_path),
  }
  if tflite_path is not None:
    sides["TFLite (LiteRT)"] = export.TfliteModel(tflite_path)
  logits, labels = {name: [] for name in sides}, []
  for images, batch_labels, mask in export.check_batches(config, 0):
    images = images[mask > 0]
    labels.append(batch_labels[mask > 0])
    for name, side in sides.items():
      logits[name].append(np.asarray(side(images)))
  labels = np.concatenate(labels) + importers.label_offset(config)
  logits = {name: np.concatenate(v) for name, v in logits.items()}
  names, count = list(sides), len(labels)
  rows = [
    (a, b, f"{export.shared_top1(logits[a], logits[b]).sum()}/{count}")
    for i, a in enumerate(names)
    for b in names[i + 1 :]
  ]
  print(tables.markdown_table(["side", "beside", "same top-1"], rows))
  top1 = [(n, f"{100 * np.mean(logits[n].argmax(-1) == labels):.1f}%") for n in names]
  print(tables.markdown_table(["side", "top-1"], top1))


if __name__ == "__main__":
  main()
