"""The input pipeline's img/s beside the training step's, with one decoding thread and with one
per core.

  python benchmarks/input.py --points=v2:0.35:128,v2:1.0:224

For each point (arch:alpha:resolution, batch --batch): img/s of the training pipeline
(`data.train_batches`: decode, Inception crop, resize, flip) and of the evaluation pipeline
(`data.eval_batches`: decode, central crop, resize) on two sources, the 250 ImageNet sample
images (ImageNet-sized JPEGs, repeated by the training pipeline's epochs) and the Imagenette
folder (224x224 JPEGs); beside them the training step's img/s on this machine's default device,
measured as `benchmarks/speed.py` measures it, and the ratio of the all-core pipeline to the
step: below 1, that step would wait for its input here.
"""

import argparse
import csv
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed  # noqa: E402
from mobilenet_jax import data, runtime, tables  # noqa: E402

SHARED = os.path.join(os.path.dirname(speed.REPO), "shared", "artifacts")


def imagenet_sample_folder(root):
  """The 250 sample images as a folder dataset's train and val splits (links, no copies)."""
  sample = os.path.join(SHARED, "datasets", "imagenet_sample_250")
  with open(os.path.join(sample, "labels.csv")) as f:
    for row in csv.DictReader(f):
      for split in ("train", "val"):
        os.makedirs(os.path.join(root, split, row["wnid"]), exist_ok=True)
        os.symlink(os.path.join(sample, row["file"]), os.path.join(root, split, row["wnid"],
                                                                 row["file"]))
  return root


def pipeline_images_per_second(batches, threads, count):
  """Images per second over `count` batches, after two that warm the thread pool up."""
  iterator = data.iterate(batches, threads=threads)
  for _ in range(2):
    next(iterator)
  start, images = time.perf_counter(), 0
  for _ in range(count):
    images += len(next(iterator)[0])
  return images / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--points", default="v2:0.35:128,v2:1.0:224")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
  parser.add_argument("--imagenette", default=os.path.join(SHARED, "datasets", "imagenette2_224"))
  args = parser.parse_args()
  runtime.reexec_with_huge_pages()  # the step timed as launch.py runs it
  cores = os.cpu_count()
  sources = {"ImageNet sample (250)": imagenet_sample_folder(tempfile.mkdtemp()),
             "Imagenette folder": args.imagenette}
  rows = []
  for point in args.points.split(","):
    arch, width, res = point.split(":")
    config = speed.load_config(arch, float(width), int(res))
    config.data.batch_size = config.data.eval_batch_size = args.batch
    measures, _ = speed.jax_contender(arch, float(width), int(res), args.batch, "auto", "float32")
    step = args.batch / speed.time_in_turns({"step": {"train": measures["train"]}}, iters=2,
                                            repeats=3)["step"]["train"]
    for source, path in sources.items():
      config.data.dataset = f"folder:{path}"
      for pipeline in ("train", "eval"):
        split = data.load_split(config.data, "train" if pipeline == "train" else "val")
        batches = (data.train_batches(split, config) if pipeline == "train"
                   else data.eval_batches(split, config)[0].repeat())
        speeds = [pipeline_images_per_second(batches, t, args.batches) for t in (1, cores)]
        rows.append((f"{arch} {width}-{res}", source, pipeline, round(speeds[0]),
                     round(speeds[1]), round(step, 1),
                     f"{speeds[1] / step:.1f}" if pipeline == "train" else ""))
        print(*rows[-1], sep=" | ", flush=True)
  print(tables.markdown_table(
      ("point", "source", "pipeline", "img/s, 1 thread", f"img/s, {cores} threads",
       "train step img/s", f"pipeline / step ({cores} threads)"), rows))


if __name__ == "__main__":
  main()
