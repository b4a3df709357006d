"""Float, post-training int8 and quantization-aware int8 of quickstart members, side by side.

  python benchmarks/qat.py --out=runs/qat [--members=1.0:32,0.5:16] [--qat_steps=300]
  python benchmarks/qat.py --out=runs/qat_imagenette --config=configs/mobilenet_v2.py:preset=short \
      --members=0.5:128 --set=data.dataset=folder:PATH --set=model.num_classes=10 ...

Each member is the quickstart's (configs/tiny.py:preset=short on glyphs, 300 steps at lr 0.1),
or --config's with the --set overrides (which then replace the quickstart's), run with
training.int8=qat: after the float run, --qat_steps of quantization-aware fine-tuning
(WORKDIR/qat) at --qat_learning_rate, BN frozen after half of them. Beside it, the float model
fine-tuned as long at the same rate without quantization (init_from=workdir:...) and that
model's post-training int8: QAT trains longer than the float run, and this is the float model
with the same training. int8 models are scored on the whole validation split by the int8 ONNX
file's arithmetic (onnxruntime op by op), with in brackets what onnxruntime's integer kernels
give on this CPU; "same top-1" is against the JAX model each was made from (float for
post-training, the quantization-aware simulation for QAT).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mobilenet_jax import trainer  # noqa: E402
from mobilenet_jax.config import command_line  # noqa: E402
from mobilenet_jax.core import tables  # noqa: E402

QUICKSTART = {
  "data.dataset": "glyphs",
  "model.num_classes": 26,
  "training.num_steps": 300,
  "optimizer.learning_rate": 0.1,
}


def member_config(spec, fixed, width, resolution, overrides):
  config = command_line.load_config_file(spec)
  values = {
    **fixed,
    "wandb.mode": "disabled",
    "model.width_multiplier": width,
    "resolution": resolution,
    **overrides,
  }
  return command_line.apply_overrides(config, values.items())


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/qat")
  parser.add_argument("--members", default="1.0:32,0.5:16", help="width:resolution,...")
  parser.add_argument("--qat_steps", type=int, default=300)
  parser.add_argument("--qat_learning_rate", type=float, default=0.005)
  parser.add_argument("--config", default="configs/tiny.py:preset=short")
  parser.add_argument("--set", action="append", help="KEY=VALUE, a config override (repeated)")
  args = parser.parse_args()
  fixed = dict(s.partition("=")[::2] for s in args.set) if args.set else QUICKSTART
  config = lambda width, resolution, overrides: member_config(
    args.config, fixed, width, resolution, overrides
  )
  rows = []
  for member in args.members.split(","):
    width, resolution = float(member.split(":")[0]), int(member.split(":")[1])
    name = f"alpha{width:g}_res{resolution}"
    float_dir = os.path.join(args.out, name)
    qat_settings = {
      "qat.num_steps": args.qat_steps,
      "qat.freeze_bn_step": args.qat_steps // 2,
      "qat.learning_rate": args.qat_learning_rate,
    }
    floated = trainer.train_and_evaluate(
      config(width, resolution, {"training.int8": "qat", **qat_settings}), float_dir
    )
    longer = trainer.train_and_evaluate(
      config(
        width,
        resolution,
        {
          "init_from": f"workdir:{float_dir}",
          "training.int8": "post_training",
          "training.num_steps": args.qat_steps,
          "optimizer.learning_rate": args.qat_learning_rate,
        },
      ),
      os.path.join(args.out, name + "_float_fine_tuned"),
    )
    int8 = lambda s: f"{100 * s['int8_top1']:.1f} ({100 * s['int8_onnxruntime_top1']:.1f})"
    rows.append(
      (
        name,
        floated["eval_count"],
        f"{100 * floated['top1']:.1f}",
        f"{100 * longer['top1']:.1f}",
        int8(longer),
        f"{100 * longer['int8_same_top1']:.1f}%",
        f"{100 * floated['qat_top1']:.1f}",
        int8(floated),
        f"{100 * floated['int8_same_top1']:.1f}%",
        f"{longer['onnxruntime_latency_ms']:.3f} / {longer['int8_onnxruntime_latency_ms']:.3f}"
        f" / {floated['int8_onnxruntime_latency_ms']:.3f}",
      )
    )
  print(
    tables.markdown_table(
      (
        "member",
        "images",
        "float top-1",
        "float, fine-tuned as QAT",
        "its post-training int8",
        "same top-1 as float",
        "QAT (JAX simulation)",
        "QAT int8 ONNX",
        "same top-1 as simulation",
        "ms float / PTQ / QAT int8, 1 thread",
      ),
      rows,
    )
  )


if __name__ == "__main__":
  main()
