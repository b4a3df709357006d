"""The input pipeline's img/s beside the training step's, per core and with every core.

  python benchmarks/input.py --points=v2:0.35:128,v2:1.0:224 [--before=REV]
  python benchmarks/input.py --sweeps=experiments/v2_tradeoff.py,experiments/imagenette_tradeoff.py
  python benchmarks/input.py --torchvision [--points=...]
  python benchmarks/input.py --pixel_store=96,128,160,224 --sweeps=...

--pixel_store, --sweeps and --torchvision each print their table; given together, one run prints
them all from the same sources; without any, --points' table.

Sources: the 250 ImageNet sample images (ImageNet-sized JPEGs) linked 40 times each, 10,000
items, so that shuffling costs what it costs on a real dataset; a resized copy of them written by
`prepare_data --resized_copy` with the longest side 8/7 of the resolution (256 for 224); and the
Imagenette folder (224x224 JPEGs).

--points: for each point (arch:alpha:resolution, batch --batch), img/s of the training pipeline
(`pipeline.train_batches`: decode, Inception crop, resize, flip) and of the evaluation pipeline
(`pipeline.eval_batches`: decode, central crop, resize) with one thread, one thread per core, and
one grain worker process per core (`config.data.worker_processes`);
beside them the training step's img/s on this machine's default device, measured as
`benchmarks/speed.py` measures it, and their ratio: below 1, that step would wait for its input.
With --before=REV, revision REV's pipelines are measured too, taking turns with this checkout's
on every row, so one run gives the before and the after on the same machine.

--sweeps: for each member, the training step's img/s on one H100 projected from the measured
V2 1.0-224 (H100_STEP) by mult-adds, and for each input (ImageNet's JPEGs, their resized copy,
their pixel store with the crop on the device: read each step, held in the host's memory, held
on the GPUs) the training pipeline's img/s with one thread, and projected linearly from two
worker processes (two threads for held canvases) at the member's resolution to the host
cores one H100 gets (16 on a one-GPU host, 8 on an 8-GPU node): whether the member would wait
for its input. With the crop on the device, the projected H100 step also does the crop's
mult-adds (`crop_madds`, at the model's efficiency: a projection; --pixel_store measures the
crop's cost on this machine's device); canvases the host sends cross PCIe (PCIE_BYTES); held
canvases that do not fit (half of HOST_RAM_PER_GPU, half of an H100) are read from the store.

--torchvision: the training pipeline beside an independent one doing the same work on the same
files: torchvision's ImageFolder with RandomResizedCrop (the same area and aspect ranges) and a
horizontal flip to uint8 tensors, batched by a DataLoader; one core each (this process, one
thread), then one worker process per core each. Turn by turn, cell by cell.

--pixel_store=96,128,160,224: at each resolution, the training pipeline's img/s per core and
with one worker process per core from the ImageNet sample's JPEGs, its resized copy, its pixel
store (`prepare_data --pixel_store`, side 8/7 of the resolution) cropped on the host, and the
same store with config.data.augment_on_device (the host gathers canvases, the step crops), with
its canvases held on the device (config.data.pixels_on_device: the host sends indices) and in the
host's memory (config.data.pixels_in_host_memory: the host gathers them there); held canvases
with one thread per core rather than worker processes. Beside them V2 1.0's training step on
this machine's default device alone, with the crop in it, and with the gather too.
"""

import argparse
import atexit
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# --library=DIR: the mobilenet_jax measured is DIR's (another revision's, for --before).
LIBRARY = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--library=")), REPO)
sys.path[:0] = [LIBRARY, REPO]

# First, so that LIBRARY's package is the one used.
from benchmarks import speed  # noqa: E402
from mobilenet_jax import prepare_data  # noqa: E402
from mobilenet_jax.core import (
  runtime,  # noqa: E402
  tables,  # noqa: E402
)
from mobilenet_jax.counting import accounting  # noqa: E402
from mobilenet_jax.data import pipeline as input_pipeline  # noqa: E402
from mobilenet_jax.data import sources as data_sources  # noqa: E402
from mobilenet_jax.sweeps import definition  # noqa: E402
from tests.helpers import imagenet_sample_folder  # noqa: E402

SHARED = os.path.join(os.path.dirname(REPO), "shared", "artifacts")
REPEATS = 40
# One H100, V2 1.0-224, batch 256, bfloat16: run A of this README's GPU table (img/s).
H100_STEP = 9_117
HOST_CORES = (16, 8)  # an H100 host's cores per GPU: one GPU with 16, an 8-GPU node's share
HOST_GPUS = (1, 8)  # the GPUs of those two hosts, over which pixels on the device are sharded
# Assumed, not measured: host RAM per H100 (AWS p5.4xlarge, 1 GPU: 256 GiB; p5.48xlarge, 8: 2 TiB)
# and host-to-device bytes/s (half of PCIe Gen5 x16's 64 GB/s), for canvases the host sends.
HOST_RAM_PER_GPU = 256 * 2**30
PCIE_BYTES = 32e9


def repeated(folder, repeats, root):
  """A folder dataset whose every file of `folder` is linked `repeats` times."""
  for dirpath, _, files in os.walk(folder):
    relative = os.path.relpath(dirpath, folder)
    if relative.count(os.sep) != 1:  # only SPLIT/CLASS folders hold images
      continue
    os.makedirs(os.path.join(root, relative), exist_ok=True)
    for name in files:
      for copy in range(repeats):
        os.symlink(os.path.join(dirpath, name), os.path.join(root, relative, f"{copy:02d}_{name}"))
  return root


class Sources:
  """The benchmark's datasets, made once per run in a temporary folder."""

  def __init__(self, imagenette):
    self.root = tempfile.mkdtemp(prefix="input_benchmark_")
    self.sample = imagenet_sample_folder(os.path.join(self.root, "sample"))
    self.imagenette = imagenette
    self.copies = {}
    self.stores = {}

  def imagenet(self):
    path = os.path.join(self.root, "sample_repeated")
    return path if os.path.isdir(path) else repeated(self.sample, REPEATS, path)

  def resized_copy(self, resolution):
    side = speed.store_side(resolution)
    if side not in self.copies:
      copy = os.path.join(self.root, f"copy_{side}")
      config = speed.load_config("v2", 1.0, resolution).data
      config.dataset = f"folder:{self.sample}"
      prepare_data.write_resized_copy(config, copy, side)
      self.copies[side] = repeated(copy, REPEATS, os.path.join(self.root, f"copy_{side}_repeated"))
    return self.copies[side], side

  def pixel_store(self, resolution):
    """A pixel store of the repeated sample (10,000 training records) at 8/7 of `resolution` a
    side."""
    side = speed.store_side(resolution)
    if side not in self.stores:
      # The repeated training split; the validation split once (the tables read training's).
      source = os.path.join(self.root, "store_source")
      if not os.path.isdir(source):
        os.makedirs(source)
        os.symlink(os.path.join(self.imagenet(), "train"), os.path.join(source, "train"))
        os.symlink(os.path.join(self.sample, "val"), os.path.join(source, "val"))
      config = speed.load_config("v2", 1.0, resolution).data
      config.dataset = f"folder:{source}"
      self.stores[side] = os.path.join(self.root, f"store_{side}")
      prepare_data.write_pixel_store(config, self.stores[side], side)
    return self.stores[side]

  def for_point(self, resolution):
    """[(kind, label, folder)]"""
    copy, side = self.resized_copy(resolution)
    return [
      ("original", "ImageNet sample", self.imagenet()),
      ("copy", f"its copy, max side {side}", copy),
      ("imagenette", "Imagenette folder", self.imagenette),
    ]


def images_per_second(iterator, count):
  """Images per second over `count` (images, ...) batches, after two that warm the workers up."""
  for _ in range(2):
    next(iterator)
  start, images = time.perf_counter(), 0
  for _ in range(count):
    images += len(next(iterator)[1])  # the labels: images may be (canvases, sizes)
  return images / (time.perf_counter() - start)


def pipeline_images_per_second(batches, threads, count, processes=0):
  # Without processes, the call a --before revision's pipeline.iterate (which may lack them) takes.
  return images_per_second(
    input_pipeline.iterate(batches, threads=threads, processes=processes)
    if processes
    else input_pipeline.iterate(batches, threads=threads),
    count,
  )


def measure(cell):
  """img/s of one cell: {folder, resolution, pipeline ('train'|'eval'), batch, batches, threads
  (a list: one measurement each), processes (grain worker processes, each with those threads)}."""
  config = speed.load_config("v2", 1.0, cell["resolution"])
  config.data.dataset = cell.get("dataset") or f"folder:{cell['folder']}"
  config.data.augment_on_device = cell.get("on_device", False)
  config.data.pixels_on_device = cell.get("pixels_on_device", False)
  config.data.pixels_in_host_memory = cell.get("pixels_in_host_memory", False)
  config.data.batch_size = config.data.eval_batch_size = cell["batch"]
  split = data_sources.load_split(config.data, "train" if cell["pipeline"] == "train" else "val")
  # With the pixels on the device, the host's part: each example's index and place; with them
  # in its memory, the canvases gathered there.
  stored = {}
  if holds_canvases(cell):
    pixels = input_pipeline.stored_pixels(split, config, 1)
    stored = (
      {"stored_labels": pixels.labels} if config.data.pixels_on_device else {"host_pixels": pixels}
    )
  batches = (
    input_pipeline.train_batches(split, config, **stored)
    if cell["pipeline"] == "train"
    else input_pipeline.eval_batches(split, config)[0].repeat()
  )
  return [
    pipeline_images_per_second(batches, t, cell["batches"], cell.get("processes", 0))
    for t in cell["threads"]
  ]


def holds_canvases(source):
  """Whether a cell's canvases are held in memory: made by threads in the training process,
  which a worker process would only copy on (config.data.pixels_in_host_memory refuses them)."""
  return source.get("pixels_in_host_memory") or source.get("pixels_on_device")


def train_cell(args, resolution, **source):
  """A cell of the training pipeline at `resolution` on one thread; `source`: its folder= or
  dataset= (and on_device=)."""
  return {
    **source,
    "resolution": resolution,
    "pipeline": "train",
    "batch": args.batch,
    "batches": args.batches,
    "threads": [1],
  }


def measure_before(library, cell):
  """measure(cell) with the mobilenet_jax in `library`, in a process of its own."""
  output = subprocess.run(
    [
      sys.executable,
      os.path.abspath(__file__),
      f"--library={library}",
      f"--measure={json.dumps(cell)}",
    ],
    check=True,
    capture_output=True,
    text=True,
  ).stdout
  return json.loads(output.splitlines()[-1])


def extract(revision):
  """Revision's mobilenet_jax/ in a temporary folder (git archive)."""
  folder = tempfile.mkdtemp(prefix=f"mobilenet_jax_{revision}_")
  archive = subprocess.run(
    ["git", "-C", REPO, "archive", revision, "mobilenet_jax"], check=True, capture_output=True
  ).stdout
  tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder, filter="data")
  return folder


def step_images_per_second(config, batch):
  config.data.batch_size = batch
  measures, _ = speed.config_contender(config, batch, "auto", "float32")
  return (
    batch
    / speed.time_in_turns({"step": {"train": measures["train"]}}, iters=2, repeats=3)["step"][
      "train"
    ]
  )


def points_table(args, sources, cores):
  before = extract(args.before) if args.before else None
  rows, per_core = [], {}
  for point in args.points.split(","):
    arch, width, res = point.split(":")
    config = speed.load_config(arch, float(width), int(res))
    step = step_images_per_second(config, args.batch)
    for kind, source, folder in sources.for_point(int(res)):
      for pipeline in ("train", "eval"):
        cell = {
          "folder": folder,
          "resolution": int(res),
          "pipeline": pipeline,
          "batch": args.batch,
          "batches": args.batches,
          "threads": [1, cores],
        }
        old = measure_before(before, cell) if before else None
        new = measure(cell)
        (processes,) = measure({**cell, "threads": [1], "processes": cores})
        row = [f"{arch} {width}-{res}", source, pipeline]
        for index in range(2):
          if old:
            row += [round(old[index]), round(new[index]), f"{new[index] / old[index]:.2f}"]
          else:
            row += [round(new[index])]
        best = max(new[1], processes)
        row += [
          round(processes),
          round(step, 1),
          f"{best / step:.1f}" if pipeline == "train" else "",
        ]
        rows.append(row)
        per_core[point, kind, pipeline] = (old or new)[0], new[0]
        print(*row, sep=" | ", flush=True)
  header = ["point", "source", "pipeline"]
  for threads in ("1 thread", f"{cores} threads"):
    header += (
      [f"before, {threads}", f"img/s, {threads}", "after / before"]
      if before
      else [f"img/s, {threads}"]
    )
  header += [
    f"img/s, {cores} worker processes",
    "train step img/s",
    f"pipeline / step ({cores} cores)",
  ]
  print(tables.markdown_table(header, rows))
  if before:  # per core, the pipeline as it was on ImageNet's own JPEGs against today's
    print(
      tables.markdown_table(
        [
          "point",
          "pipeline",
          "before, originals",
          "after, originals",
          "after, resized copy",
          "copy / before",
        ],
        [
          [
            point,
            pipeline,
            round(per_core[point, "original", pipeline][0]),
            round(per_core[point, "original", pipeline][1]),
            round(per_core[point, "copy", pipeline][1]),
            f"{per_core[point, 'copy', pipeline][1] / per_core[point, 'original', pipeline][0]:.2f}",  # noqa: E501
          ]
          for point in args.points.split(",")
          for pipeline in ("train", "eval")
        ],
      )
    )


def torchvision_images_per_second(folder, resolution, min_crop_area, batch, count, workers):
  """torchvision's training input on the same folder: img/s over `count` batches after two;
  `workers` DataLoader processes (0: this process)."""
  import torch  # benchmarks/requirements.txt
  from torchvision import datasets, transforms

  torch.set_num_threads(1)
  transform = transforms.Compose(
    [
      transforms.RandomResizedCrop(resolution, scale=(min_crop_area, 1.0)),
      transforms.RandomHorizontalFlip(),
      transforms.PILToTensor(),
    ]
  )
  loader = torch.utils.data.DataLoader(
    datasets.ImageFolder(os.path.join(folder, "train"), transform),
    batch_size=batch,
    shuffle=True,
    num_workers=workers,
    drop_last=True,
  )
  return images_per_second(iter(loader), count)


def torchvision_table(args, sources, cores):
  rows = []
  for point in args.points.split(","):
    _, _, res = point.split(":")
    min_crop_area = speed.load_config("v2", 1.0, int(res)).data.min_crop_area
    for _, source, folder in sources.for_point(int(res))[:2]:
      cell = train_cell(args, int(res), folder=folder)
      (ours,) = measure(cell)
      theirs = torchvision_images_per_second(
        folder, int(res), min_crop_area, args.batch, args.batches, 0
      )
      (ours_all,) = measure({**cell, "processes": cores})
      theirs_all = torchvision_images_per_second(
        folder, int(res), min_crop_area, args.batch, args.batches, cores
      )
      row = [
        f"{res} px",
        source,
        round(ours),
        round(theirs),
        f"{ours / theirs:.2f}",
        round(ours_all),
        round(theirs_all),
        f"{ours_all / theirs_all:.2f}",
      ]
      rows.append(row)
      print(*row, sep=" | ", flush=True)
  print(
    tables.markdown_table(
      [
        "resolution",
        "source",
        "ours, 1 core",
        "torchvision, 1 core",
        "ours / torchvision",
        f"ours, {cores} processes",
        f"torchvision, {cores} workers",
        "ours / torchvision",
      ],
      rows,
    )
  )


def pixel_store_table(args, sources, cores):
  rows = []
  for resolution in map(int, args.pixel_store.split(",")):
    store = sources.pixel_store(resolution)
    copy, side = sources.resized_copy(resolution)
    inputs = (
      ("ImageNet sample JPEGs, crop on the host", {"folder": sources.imagenet()}),
      (f"its resized copy ({side} px), crop on the host", {"folder": copy}),
      (f"its pixel store ({side} px), crop on the host", {"dataset": f"pixels:{store}"}),
      (
        f"its pixel store ({side} px), crop on the device",
        {"dataset": f"pixels:{store}", "on_device": True},
      ),
      (
        f"its pixel store ({side} px) in the host's memory, crop on the device ({cores} threads)",
        {"dataset": f"pixels:{store}", "on_device": True, "pixels_in_host_memory": True},
      ),
      (
        f"its pixel store ({side} px) on the device, crop on the device ({cores} threads)",
        {"dataset": f"pixels:{store}", "on_device": True, "pixels_on_device": True},
      ),
    )
    for label, source in inputs:
      cell = train_cell(args, resolution, **source)
      if holds_canvases(source):
        one, every = measure({**cell, "threads": [1, cores]})
      else:
        (one,) = measure(cell)
        (every,) = measure({**cell, "processes": cores})
      rows.append([f"{resolution} px", label, round(one), round(every)])
      print(*rows[-1], sep=" | ", flush=True)
    config = speed.load_config("v2", 1.0, resolution)
    alone = step_images_per_second(config, args.batch)
    config.data.augment_on_device = True
    cropping = step_images_per_second(config, args.batch)
    config.data.pixels_on_device = True
    gathering = step_images_per_second(config, args.batch)
    rows.append(
      [
        f"{resolution} px",
        "V2 1.0 training step alone / with the crop in it / with the gather and the crop",
        f"{alone:.1f}",
        f"{cropping:.1f}",
        f"{gathering:.1f}",
      ]
    )
    print(*rows[-1], sep=" | ", flush=True)
  print(
    tables.markdown_table(
      [
        "resolution",
        "input (batch %d)" % args.batch,
        "img/s, 1 core",
        f"img/s, {cores} processes",
        "step with the gather",
      ],
      [row + [""] * (5 - len(row)) for row in rows],
    )
  )


ON_DEVICE = "pixel store, crop on the device"
IN_HOST_MEMORY = "pixel store in the host's memory"
PIXELS_ON_DEVICE = "pixel store on the device"
CROPPED_ON_DEVICE = (ON_DEVICE, IN_HOST_MEMORY, PIXELS_ON_DEVICE)
# Training images: Imagenette's (its tfds and folder copies), else ImageNet's.
TRAIN_IMAGES = {"imagenette": 9_469, "": 1_281_167}
H100_BYTES = 80e9


def canvas_bytes(config):
  """The bytes config.data.pixels_on_device holds for the member's training split: a canvas
  8/7 of the resolution a side per image."""
  images = next(count for name, count in TRAIN_IMAGES.items() if name in config.data.dataset)
  return images * speed.store_side(config.resolution) ** 2 * 3


def fits(config, gpus):
  """Whether the canvases, sharded over `gpus` H100s, take at most half of each (as
  trainer.check_pixels_fit asks)."""
  return canvas_bytes(config) / gpus <= H100_BYTES / 2


def fits_host(config, gpus):
  """Whether the canvases, whole in the one training process of a host with `gpus` H100s, take
  at most half of its RAM (as trainer.check_pixels_fit asks)."""
  return canvas_bytes(config) <= gpus * HOST_RAM_PER_GPU / 2


def pcie_images_per_second(config):
  """The canvases a second PCIE_BYTES carries to one GPU."""
  return PCIE_BYTES / (speed.store_side(config.resolution) ** 2 * 3)


def crop_madds(resolution):
  """Mult-adds of device_augment's resize of one canvas (8/7 of `resolution` a side) to
  `resolution`, three channels: rows, then columns, as the einsum contracts them."""
  side = speed.store_side(resolution)
  return 3 * (resolution * side * side + resolution * resolution * side)


def projected(two_processes, cores):
  """img/s on `cores` cores, each adding what each of two worker processes gave here: linear, so
  an upper estimate."""
  return two_processes * cores / 2


def sweeps_table(args, sources, cores):
  members = [
    (loaded.name, member)
    for loaded in map(definition.load_sweep, args.sweeps.split(","))
    for member in loaded.members
  ]
  reference = accounting.profile(speed.load_config("v2", 1.0, 224)).madds
  inputs = {
    "ImageNet JPEGs": lambda resolution: {"folder": sources.imagenet()},
    "resized copy": lambda resolution: {"folder": sources.resized_copy(resolution)[0]},
    ON_DEVICE: lambda resolution: {
      "dataset": f"pixels:{sources.pixel_store(resolution)}",
      "on_device": True,
    },
    IN_HOST_MEMORY: lambda resolution: {
      "dataset": f"pixels:{sources.pixel_store(resolution)}",
      "on_device": True,
      "pixels_in_host_memory": True,
    },
    PIXELS_ON_DEVICE: lambda resolution: {
      "dataset": f"pixels:{sources.pixel_store(resolution)}",
      "on_device": True,
      "pixels_on_device": True,
    },
  }
  pipelines = {}
  for resolution in sorted({definition.member_config(m).resolution for _, m in members}):
    for kind, source in inputs.items():
      cell = train_cell(args, resolution, **source(resolution))
      if holds_canvases(source(resolution)):
        one, two = measure({**cell, "threads": [1, 2]})
      else:  # decoding scales with processes, not threads
        (one,) = measure(cell)
        (two,) = measure({**cell, "processes": 2})
      pipelines[resolution, kind] = one, two
      print(resolution, kind, round(one), round(two), flush=True)
  rows, waiting = [], {(kind, c): 0 for kind in inputs for c in HOST_CORES}
  for sweep_name, member in members:
    config = definition.member_config(member)
    madds = accounting.profile(config).madds
    h100 = H100_STEP * reference / madds
    # The crop's share of a training step (forward and backward, 3x the forward's mult-adds).
    crop_share = crop_madds(config.resolution) / (3 * madds)
    row = [
      sweep_name,
      member.name,
      f"{madds / 1e6:.1f}",
      f"{h100:,.0f}",
      f"{100 * crop_share:.1f}%",
    ]
    bounds = {}
    for kind in inputs:
      one, two = pipelines[config.resolution, kind]
      # With the crop on the device, the step does the crop's mult-adds too.
      step = h100 / (1 + crop_share) if kind in CROPPED_ON_DEVICE else h100
      bounds[kind] = [projected(two, c) < step for c in HOST_CORES]
      if kind in (ON_DEVICE, IN_HOST_MEMORY):  # the host's canvases cross PCIe
        bounds[kind] = [b or pcie_images_per_second(config) < step for b in bounds[kind]]
      if kind == IN_HOST_MEMORY:
        # Where the canvases do not fit the host's RAM, the store is read: ON_DEVICE's row.
        row.append(
          f"{canvas_bytes(config) / 1e9:.1f} "
          f"({'/'.join('fits' if fits_host(config, g) else 'no' for g in HOST_GPUS)})"
        )
        bounds[kind] = [
          bound if fits_host(config, gpus) else from_store
          for bound, gpus, from_store in zip(bounds[kind], HOST_GPUS, bounds[ON_DEVICE])
        ]
      if kind == PIXELS_ON_DEVICE:
        # Where the canvases do not fit the host's GPUs: IN_HOST_MEMORY's row (which is the
        # store's where they do not fit its RAM either).
        row.append("/".join("fits" if fits(config, g) else "no" for g in HOST_GPUS))
        bounds[kind] = [
          bound if fits(config, gpus) else in_memory
          for bound, gpus, in_memory in zip(bounds[kind], HOST_GPUS, bounds[IN_HOST_MEMORY])
        ]
      for c, is_bound in zip(HOST_CORES, bounds[kind]):
        waiting[kind, c] += is_bound
      row += [
        round(one),
        f"{projected(two, HOST_CORES[0]):,.0f}",
        "/".join("yes" if b else "no" for b in bounds[kind]),
      ]
    rows.append(row)
    print(*row, sep=" | ", flush=True)
  header = [
    "sweep",
    "member",
    "M mult-adds",
    "step img/s, one H100 (projected)",
    "the crop on the device, share of the step's mult-adds",
  ]
  for kind in inputs:
    if kind == IN_HOST_MEMORY:
      header.append("its canvases, GB (at most half of the host's RAM: 1 / 8 H100s)")
    if kind == PIXELS_ON_DEVICE:
      header.append("… at most half of each H100: 1 / 8 H100s")
    header += [
      f"{kind}: img/s per core",
      f"… on {HOST_CORES[0]} cores (projected)",
      "input-bound with " + "/".join(map(str, HOST_CORES)) + " cores per H100",
    ]
  print(tables.markdown_table(header, rows))
  for (kind, c), count in waiting.items():
    print(f"{kind}, {c} cores per H100: {count} of {len(rows)} members wait for their input")


def main():
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--points", default="v2:0.35:128,v2:1.0:224")
  parser.add_argument("--sweeps", default="", help="sweep files: the per-member table")
  parser.add_argument("--before", default="", help="a git revision whose pipelines to measure too")
  parser.add_argument(
    "--torchvision",
    action="store_true",
    help="the training pipeline beside torchvision's, same files and work",
  )
  parser.add_argument("--pixel_store", default="", help="resolutions: the pixel store's table")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
  parser.add_argument("--imagenette", default=os.path.join(SHARED, "datasets", "imagenette2_224"))
  parser.add_argument("--library", default=REPO, help=argparse.SUPPRESS)
  parser.add_argument("--measure", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.measure:  # a process of --before's, measuring one cell with --library's pipelines
    print(json.dumps(measure(json.loads(args.measure))))
    return
  runtime.reexec_with_huge_pages()  # the step timed as launch.py runs it
  sources = Sources(args.imagenette)
  # The copies and stores are gigabytes: gone when the run ends, finished or not.
  atexit.register(shutil.rmtree, sources.root, True)
  # The tables asked for, in one run that shares their sources (copies and stores made once).
  tables_asked = [
    table
    for asked, table in (
      (args.pixel_store, pixel_store_table),
      (args.sweeps, sweeps_table),
      (args.torchvision, torchvision_table),
    )
    if asked
  ]
  for table in tables_asked or [points_table]:
    table(args, sources, os.cpu_count())


if __name__ == "__main__":
  main()
