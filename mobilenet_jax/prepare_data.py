"""Datasets on disk: prepares a tensorflow-datasets dataset as ArrayRecord files (the format
training reads), checks that every image of a folder decodes, writes a resized copy.

  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenette [--data_dir=DIR]
  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenet2012 --data_dir=DIR \
      [--manual_dir=DIR_WITH_ILSVRC2012_TARS]
  python -m mobilenet_jax.prepare_data --check --dataset=folder:PATH   # every image decodes?
  python -m mobilenet_jax.prepare_data --dataset=folder:PATH|tfds:NAME \
      --resized_copy=OUT --max_side=256   # JPEGs at most 256 px a side, for a faster input
  python -m mobilenet_jax.prepare_data --dataset=folder:PATH|tfds:NAME \
      --pixel_store=OUT --max_side=256    # decoded pixels: no JPEG decoding while training

Training reads prepared TFDS data through `tfds.data_source` with no TensorFlow; TFDS itself
needs TensorFlow (`pip install tensorflow-cpu`) to encode images while preparing, and only then.
A resized copy is a folder dataset: decoding a JPEG costs about its pixel count, so training at
224 px on images stored at 256 px a side instead of ImageNet's ~470 reads several times faster
(benchmarks/README.md); as FFCV does, pick the side for the largest resolution trained. A pixel
store (`--config.data.dataset=pixels:OUT`) holds the same images decoded, as uint8 pixels in
ArrayRecord files: several times the bytes, and no decoding at all.
"""

import concurrent.futures
import json
import os
import pathlib

import ml_collections
import numpy as np
import tqdm
from absl import app, flags
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from mobilenet_jax.core import errors
from mobilenet_jax.data import sources

_DATASET = flags.DEFINE_string("dataset", None, "tfds:NAME, e.g. tfds:imagenette.")
_DATA_DIR = flags.DEFINE_string(
  "data_dir", "", "TFDS data_dir (default: TFDS's, ~/tensorflow_datasets)."
)
_CHECK = flags.DEFINE_bool(
  "check",
  False,
  "With --dataset=folder:PATH: decode every image of "
  "its train/ and val/ and list the files that fail.",
)
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir",
  "",
  "Where manually downloaded files are "
  "(imagenet2012: ILSVRC2012_img_train.tar, "
  "ILSVRC2012_img_val.tar).",
)
_RESIZED_COPY = flags.DEFINE_string(
  "resized_copy",
  "",
  "Write the dataset's train and val splits "
  "to this folder as JPEGs at most --max_side pixels a side.",
)
_PIXEL_STORE = flags.DEFINE_string(
  "pixel_store",
  "",
  "Write the dataset's train and val splits to this folder as uint8 pixels at most --max_side "
  "pixels a side, in ArrayRecord files (train with --config.data.dataset=pixels:OUT).",
)
_MAX_SIDE = flags.DEFINE_integer(
  "max_side",
  0,
  "With --resized_copy or --pixel_store: the longest side of the stored images, e.g. 256 for "
  "sweeps up to 224 px.",
)
_CLASS_NAMES = flags.DEFINE_string(
  "class_names",
  "",
  "With a folder:PATH dataset: the config.data.class_names file it is trained with, if any.",
)


def prepare(name, data_dir="", manual_dir=""):
  """Downloads (or reads from manual_dir) and writes `name` as ArrayRecord under data_dir."""
  import requests  # tensorflow-datasets downloads with it
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as error:  # tfds raises its own DatasetNotFoundError subclasses
    raise errors.DataError(f"--dataset=tfds:{name}: {error}") from None
  manual_dir = manual_dir or sources.default_manual_dir(builder)
  if name in sources.MANUAL_FILES and not all(
    os.path.exists(os.path.join(manual_dir, f)) for f in sources.MANUAL_FILES[name]
  ):
    raise errors.DataError(
      f"--manual_dir={manual_dir} lacks {list(sources.MANUAL_FILES[name])}."
      + sources.manual_note(name, builder)
    )
  try:
    builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
    )
  except requests.exceptions.RequestException as error:  # not other OSErrors, e.g. a full disk
    raise errors.DataError(
      f"--dataset=tfds:{name}: the download failed "
      f"({type(error).__name__}: {' '.join(str(error).split())}); it "
      "needs network access to the dataset's source"
    ) from None
  except Exception as error:  # TFDS re-raises the ImportError as a RuntimeError
    if "No module named 'tensorflow'" not in str(error):
      raise
    raise errors.DataError(
      f"TFDS needs TensorFlow to prepare {name} (it encodes the images): "
      "pip install tensorflow-cpu, then run this command again. Training "
      "reads the prepared files without it."
    ) from None
  return builder


def _parallel(function, items, description, threads=None):
  """function over items on a thread pool (PIL decodes and encodes outside the GIL), with a
  progress bar; the results in order."""
  with concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count()) as pool:
    return list(
      tqdm.tqdm(pool.map(function, items), total=len(items), unit="image", desc=description)
    )


def check_folder(root, threads=None):
  """[(path, reason)] for every file of a folder dataset's splits that does not decode."""
  files = [
    f
    for split in ("train", "val")
    if (pathlib.Path(root) / split).is_dir()
    for f in sources.load_split(
      ml_collections.ConfigDict({"dataset": f"folder:{root}", "class_names": ""}), split
    ).source.files
  ]

  def problem(path):
    try:
      with sources.opened(path) as image:
        sources.decoded(image)
    except errors.DataError as error:
      return path, str(error)
    return None

  return [p for p in _parallel(problem, files, f"checking {root}", threads) if p]


COPY_QUALITY = 90  # FFCV's default JPEG quality for its stored images


def _claim(out, record_name, record, flag):
  """Refuses `out` where it holds what another command wrote, or other files; else records
  `record` there, so that the same command resumes and any other is refused."""
  record_path = out / record_name
  if record_path.exists():
    written = json.loads(record_path.read_text())
    if written != record:
      raise errors.DataError(
        f"{flag}={out} holds a copy made with {written}, not {record}; give another folder"
      )
  elif out.exists() and any(out.iterdir()):
    raise errors.DataError(
      f"{flag}={out} is a folder with other files in it; give a new or empty folder"
    )
  out.mkdir(parents=True, exist_ok=True)
  record_path.write_text(json.dumps(record, indent=1) + "\n")


def _thumbnail(image, max_side):
  """A source item's image at most `max_side` pixels a side (aspect kept): uint8 RGB pixels."""
  with sources.opened(image) as pil:
    pil.thumbnail((max_side, max_side), Image.BICUBIC)  # decodes at a DCT scale first
    return np.asarray(sources.decoded(pil))


def write_resized_copy(data_config, out, max_side, threads=None):
  """Writes the dataset's train and val splits to `out` as a folder dataset of JPEGs at most
  `max_side` pixels a side, with class_names.txt in label order; returns [(image, reason)] for
  the images that did not decode. Files already written are kept: an interrupted copy resumes."""
  out = pathlib.Path(out)
  record = {
    "dataset": data_config.dataset,
    "class_names": data_config.class_names,
    "max_side": max_side,
    "quality": COPY_QUALITY,
  }
  splits = {
    name: sources.load_split(data_config, name) for name in ("train", "val")
  }  # before writing
  _claim(out, "resized_copy.json", record, "--resized_copy")
  # Both splits share one class list (sources.load_split), in label order.
  (out / "class_names.txt").write_text("".join(f"{name}\n" for name in splits["train"].class_names))
  problems = []
  for split_name, split in splits.items():
    for name in split.class_names:
      (out / split_name / name).mkdir(parents=True, exist_ok=True)

    def write(index):
      image, label = split.source[index]
      name = pathlib.Path(image).name if isinstance(image, str) else f"{index:08d}.jpg"
      target = (
        out
        / split_name
        / split.class_names[label]
        / (name if name.lower().endswith((".jpg", ".jpeg")) else name + ".jpg")
      )
      if target.exists():
        return None
      try:
        partial = target.with_name(target.name + ".partial")
        Image.fromarray(_thumbnail(image, max_side)).save(partial, "JPEG", quality=COPY_QUALITY)
      except (errors.DataError, *sources.IMAGE_ERRORS) as error:
        return str(image), str(error)
      os.replace(partial, target)  # whole files only, so a resumed copy can trust what exists
      return None

    problems += [
      p for p in _parallel(write, range(len(split)), f"{split_name} -> {out}", threads) if p
    ]
  return problems


SHARD_IMAGES = 1024  # images per ArrayRecord file of a pixel store: the unit a store resumes by
# One record per chunk, so a read decodes one image's record only; pixels stored raw, as FFCV
# stores them: compressing them would cost every read a decompression.
STORE_OPTIONS = "group_size:1,uncompressed"


def write_pixel_store(data_config, out, max_side, threads=None):
  """Writes the dataset's train and val splits to `out` as a pixel store: ArrayRecord files of
  sources.pixel_record (uint8 pixels at most `max_side` a side, aspect kept, and the label), with
  class_names.txt in label order; returns [(image, reason)] for the images that did not decode.
  Each file is written whole or not at all, so an interrupted store resumes where it stopped."""
  out = pathlib.Path(out)
  splits = {name: sources.load_split(data_config, name) for name in ("train", "val")}
  shards = {name: -(-len(split) // SHARD_IMAGES) for name, split in splits.items()}
  record = {
    "dataset": data_config.dataset,
    "class_names": data_config.class_names,
    "max_side": max_side,
    "shards": shards,
  }
  _claim(out, sources.PIXEL_STORE_RECORD, record, "--pixel_store")
  (out / "class_names.txt").write_text("".join(f"{name}\n" for name in splits["train"].class_names))
  problems = []
  for split_name, split in splits.items():
    (out / split_name).mkdir(exist_ok=True)

    def read(index):
      image, label = split.source[index]
      try:
        return _thumbnail(image, max_side), label
      except (errors.DataError, *sources.IMAGE_ERRORS) as error:
        return str(image) if isinstance(image, str) else f"{split_name} image {index}", str(error)

    count = shards[split_name]
    with (
      concurrent.futures.ThreadPoolExecutor(threads or os.cpu_count()) as pool,
      tqdm.tqdm(total=len(split), unit="image", desc=f"{split_name} -> {out}") as progress,
    ):
      for shard in range(count):
        indices = range(shard * SHARD_IMAGES, min((shard + 1) * SHARD_IMAGES, len(split)))
        target = out / split_name / f"{split_name}-{shard:05d}-of-{count:05d}.array_record"
        if not target.exists():
          partial = target.with_name(target.name + ".partial")
          writer = ArrayRecordWriter(str(partial), STORE_OPTIONS)
          for pixels, label in pool.map(read, indices):
            if isinstance(pixels, str):
              problems.append((pixels, label))
            else:
              writer.write(sources.pixel_record(pixels, label))
          writer.close()
          os.replace(partial, target)
        progress.update(len(indices))
  return problems


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  kind, _, name = (_DATASET.value or "").partition(":")
  if _CHECK.value:
    if kind != "folder" or not name:
      raise app.UsageError(f"--check takes --dataset=folder:PATH, not {_DATASET.value!r}")
    return _check(name)
  if _RESIZED_COPY.value and _PIXEL_STORE.value:
    raise app.UsageError("--resized_copy and --pixel_store: give one of them")
  if _RESIZED_COPY.value:
    return _write_copy(
      "--resized_copy",
      write_resized_copy,
      _RESIZED_COPY.value,
      "--config.data.dataset=folder:{out} --config.data.class_names={out}/class_names.txt",
    )
  if _PIXEL_STORE.value:
    return _write_copy(
      "--pixel_store", write_pixel_store, _PIXEL_STORE.value, "--config.data.dataset=pixels:{out}"
    )
  if kind != "tfds" or not name:
    raise app.UsageError(
      f"--dataset={_DATASET.value!r}: expected tfds:NAME (digits and "
      "folder: datasets need no preparation)"
    )
  try:
    builder = prepare(name, _DATA_DIR.value, _MANUAL_DIR.value)
  except errors.DataError as error:
    raise SystemExit(f"error: {error}") from None
  print(
    f"Prepared {name} in {builder.data_dir}; train with "
    f"--config.data.dataset=tfds:{name}"
    + (f" --config.data.data_dir={_DATA_DIR.value}" if _DATA_DIR.value else "")
  )


def _check(root):
  try:
    bad = check_folder(root)
  except errors.DataError as error:
    raise SystemExit(f"error: {error}") from None
  for path, reason in bad:
    print(f"{path}: {reason}")
  if bad:
    raise SystemExit(f"error: {len(bad)} unreadable images in {root}; remove or replace them")
  print(f"{root}: every image decodes")


def _write_copy(flag, write, out, train_flags):
  """--resized_copy or --pixel_store: the dataset's images at most --max_side a side in `out`."""
  dataset = _DATASET.value or ""
  if _MAX_SIDE.value < 1:
    raise SystemExit(
      f"error: {flag} needs --max_side=N (pixels, at least 1), not {_MAX_SIDE.value}"
    )
  if not dataset.startswith(("folder:", "tfds:")):
    raise SystemExit(f"error: --dataset={dataset!r}: {flag} takes folder:PATH or tfds:NAME")
  config = ml_collections.ConfigDict(
    {"dataset": dataset, "data_dir": _DATA_DIR.value, "class_names": _CLASS_NAMES.value}
  )
  try:
    bad = write(config, out, _MAX_SIDE.value)
  except errors.DataError as error:
    raise SystemExit(f"error: {error}") from None
  for image, reason in bad:
    print(f"{image}: {reason}")
  if bad:
    raise SystemExit(f"error: {len(bad)} images did not decode and are not in {out}; the rest are")
  print(f"Wrote {out}; train with {train_flags.format(out=out)}")


if __name__ == "__main__":
  app.run(main)
