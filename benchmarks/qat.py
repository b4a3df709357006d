"""Float, post-training int8 and quantization-aware int8 of quickstart members, side by side.

  python benchmarks/qat.py --out=runs/qat [--members=1.0:32,0.5:16] [--qat_steps=300]

Each member is the quickstart's (configs/tiny.py:preset=short on glyphs, 300 steps at lr 0.1)
trained with training.int8=post_training, then fine-tuned quantization-aware from its
checkpoint (init_from=workdir:..., model.quantized=True) for --qat_steps at --qat_learning_rate,
BN frozen after half of them. Both int8 models are scored on the whole validation split by the
int8 ONNX file's arithmetic (onnxruntime op by op), with in brackets what onnxruntime's integer
kernels give on this CPU; "same top-1" is against the JAX model each was made from (float for
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
  "wandb.mode": "disabled",
}


def member_config(width, resolution, overrides):
  config = command_line.load_config_file("configs/tiny.py:preset=short")
  values = {**QUICKSTART, "model.width_multiplier": width, "resolution": resolution, **overrides}
  return command_line.apply_overrides(config, values.items())


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="runs/qat")
  parser.add_argument("--members", default="1.0:32,0.5:16", help="width:resolution,...")
  parser.add_argument("--qat_steps", type=int, default=300)
  parser.add_argument("--qat_learning_rate", type=float, default=0.005)
  args = parser.parse_args()
  rows = []
  for member in args.members.split(","):
    width, resolution = float(member.split(":")[0]), int(member.split(":")[1])
    name = f"alpha{width:g}_res{resolution}"
    float_dir = os.path.join(args.out, name)
    floated = trainer.train_and_evaluate(
      member_config(width, resolution, {"training.int8": "post_training"}), float_dir
    )
    qat = trainer.train_and_evaluate(
      member_config(
        width,
        resolution,
        {
          "model.quantized": True,
          "init_from": f"workdir:{float_dir}",
          "training.num_steps": args.qat_steps,
          "qat.freeze_bn_step": args.qat_steps // 2,
          "optimizer.learning_rate": args.qat_learning_rate,
        },
      ),
      os.path.join(args.out, name + "_qat"),
    )
    int8 = lambda s: f"{100 * s['int8_top1']:.1f} ({100 * s['int8_onnxruntime_top1']:.1f})"
    rows.append(
      (
        name,
        floated["eval_count"],
        f"{100 * floated['top1']:.1f}",
        int8(floated),
        f"{100 * floated['int8_same_top1']:.1f}%",
        f"{100 * qat['top1']:.1f}",
        int8(qat),
        f"{100 * qat['int8_same_top1']:.1f}%",
        f"{floated['onnxruntime_latency_ms']:.3f} / {qat['int8_onnxruntime_latency_ms']:.3f}",
      )
    )
  print(
    tables.markdown_table(
      (
        "member",
        "images",
        "float top-1",
        "post-training int8",
        "same top-1 as float",
        "QAT (JAX simulation)",
        "QAT int8 ONNX",
        "same top-1 as simulation",
        "ms float / QAT int8, 1 thread",
      ),
      rows,
    )
  )


if __name__ == "__main__":
  main()
