"""Prepares a tensorflow-datasets dataset as ArrayRecord files, the format training reads.

  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenette [--data_dir=DIR]
  python -m mobilenet_jax.prepare_data --dataset=tfds:imagenet2012 --data_dir=DIR \
      [--manual_dir=DIR_WITH_ILSVRC2012_TARS]
  python -m mobilenet_jax.prepare_data --check --dataset=folder:PATH   # every image decodes?

Training reads the result through `tfds.data_source` with no TensorFlow; TFDS itself needs
TensorFlow (`pip install tensorflow-cpu`) to encode images while preparing, and only then.
"""

import os

from absl import app
from absl import flags

from mobilenet_jax import data, errors

_DATASET = flags.DEFINE_string("dataset", None, "tfds:NAME, e.g. tfds:imagenette.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data_dir (default: TFDS's, ~/tensorflow_datasets).")
_CHECK = flags.DEFINE_bool("check", False, "With --dataset=folder:PATH: decode every image of "
                           "its train/ and val/ and list the files that fail.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", "", "Where manually downloaded files are "
                                  "(imagenet2012: ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar).")

def prepare(name, data_dir="", manual_dir=""):
  """Downloads (or reads from manual_dir) and writes `name` as ArrayRecord under data_dir."""
  import tensorflow_datasets as tfds
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as error:  # tfds raises its own DatasetNotFoundError subclasses
    raise errors.DataError(f"--dataset=tfds:{name}: {error}") from None
  manual_dir = manual_dir or data.default_manual_dir(builder)
  if name in data.MANUAL_FILES and not all(os.path.exists(os.path.join(manual_dir, f))
                                      for f in data.MANUAL_FILES[name]):
    raise errors.DataError(f"--manual_dir={manual_dir} lacks {list(data.MANUAL_FILES[name])}."
                         + data.manual_note(name, builder))
  try:
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as error:  # TFDS re-raises the ImportError as a RuntimeError
    if "No module named 'tensorflow'" not in str(error):
      raise
    raise errors.DataError(f"TFDS needs TensorFlow to prepare {name} (it encodes the images): "
                         "pip install tensorflow-cpu, then run this command again. Training "
                         "reads the prepared files without it.") from None
  return builder


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  kind, _, name = (_DATASET.value or "").partition(":")
  if _CHECK.value:
    if kind != "folder" or not name:
      raise app.UsageError(f"--check takes --dataset=folder:PATH, not {_DATASET.value!r}")
    return _check(name)
  if kind != "tfds" or not name:
    raise app.UsageError(f"--dataset={_DATASET.value!r}: expected tfds:NAME (digits and "
                         "folder: datasets need no preparation)")
  try:
    builder = prepare(name, _DATA_DIR.value, _MANUAL_DIR.value)
  except errors.DataError as error:
    raise SystemExit(f"error: {error}") from None
  print(f"Prepared {name} in {builder.data_dir}; train with "
        f"--config.data.dataset=tfds:{name}"
        + (f" --config.data.data_dir={_DATA_DIR.value}" if _DATA_DIR.value else ""))


def _check(root):
  try:
    bad = data.check_folder(root)
  except errors.DataError as error:
    raise SystemExit(f"error: {error}") from None
  for path, reason in bad:
    print(f"{path}: {reason}")
  if bad:
    raise SystemExit(f"error: {len(bad)} unreadable images in {root}; remove or replace them")
  print(f"{root}: every image decodes")


if __name__ == "__main__":
  app.run(main)
