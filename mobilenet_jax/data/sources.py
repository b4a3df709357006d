"""The datasets a run reads (config.data.dataset), as random-access splits of (image, label).

Sources: 'digits' (scikit-learn's 8x8 digits, no download), 'glyphs'
(letters rendered from the fonts that ship with matplotlib, no download),
'folder:PATH' (PATH/{train,val}/<class>/*.jpg), 'tfds:NAME' (a prepared tensorflow-datasets
dataset read through `tfds.data_source`, no TensorFlow at run time) and 'pixels:PATH' (a pixel
store: decoded uint8 pixels in ArrayRecord files, which `prepare_data --pixel_store` writes).
Every source is random access, so the pipeline's batch of step t is `batches[t]`: resuming needs
the step alone.
"""

import bisect
import contextlib
import dataclasses
import functools
import importlib.util
import io
import json
import os
import pathlib
import struct
from typing import Any, Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mobilenet_jax.core import errors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclasses.dataclass
class Split:
  """A random-access split: items are (uint8 HxWx3 image, int label)."""

  source: object
  num_classes: int
  class_names: tuple
  max_side: int | None = None  # a pixel store's: no stored image is larger a side

  def __len__(self):
    return len(self.source)


class ArraySource:
  def __init__(self, images, labels):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    return self.images[index], int(self.labels[index])


class FolderSource:
  """Items are (file path, label): the pipeline decodes each file knowing the crop it needs."""

  def __init__(self, files, labels):
    self.files, self.labels = files, labels

  def __len__(self):
    return len(self.files)

  def __getitem__(self, index):
    return self.files[index], self.labels[index]


# PIL's errors for a file that is not a whole image (cut, empty, not an image at all).
IMAGE_ERRORS = (OSError, SyntaxError, ValueError)


def _unreadable(name, error):
  return errors.DataError(f"{name} is not a readable image ({error})")


def opened(image):
  """A source item's image (a file path, a file's bytes or uint8 pixels) as a PIL image, not yet
  decoded; a file PIL cannot open is a errors.DataError naming it."""
  if isinstance(image, np.ndarray):
    return Image.fromarray(image)
  try:
    return Image.open(io.BytesIO(image) if isinstance(image, bytes) else image)
  except IMAGE_ERRORS as error:
    raise _unreadable(
      "an image of the dataset" if isinstance(image, bytes) else image, error
    ) from None


def decoded(pil):
  """The opened image's RGB pixels as a PIL image; a cut or corrupt file is a errors.DataError."""
  try:
    pil.load()
  except IMAGE_ERRORS as error:
    raise _unreadable(getattr(pil, "filename", "") or "an image of the dataset", error) from None
  return pil if pil.mode == "RGB" else pil.convert("RGB")


@contextlib.contextmanager
def check_hint(dataset):
  """Adds to an unreadable-image error the command that lists every such file of the dataset."""
  try:
    yield
  except errors.DataError as error:
    if not dataset.startswith("folder:"):
      raise
    raise errors.DataError(
      f"{error}; find every such file with: python -m "
      f"mobilenet_jax.prepare_data --check --dataset={dataset}"
    ) from None


class TfdsSource:
  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    record = self.source[index]
    if isinstance(record["image"], bytes):  # an Image feature's file, read with SkipDecoding
      return record["image"], int(record["label"])
    image = np.asarray(record["image"])
    if image.ndim == 2 or image.shape[-1] == 1:
      image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
    return image, int(record["label"])


@functools.lru_cache(maxsize=1)
def _digit_images():
  """scikit-learn's digits.csv.gz, read as `load_digits` reads it (rows of 64 pixels in 0..16,
  then the label) without importing scikit-learn, which takes 1.5 s on every run."""
  sklearn = importlib.util.find_spec("sklearn").submodule_search_locations[0]
  table = np.loadtxt(os.path.join(sklearn, "datasets", "data", "digits.csv.gz"), delimiter=",")
  images = (table[:, :-1].reshape(-1, 8, 8) * (255 / 16)).astype(np.uint8)
  return np.repeat(images[..., None], 3, axis=-1), table[:, -1].astype(int)


def _digits(split):
  images, labels = _digit_images()
  # A fixed 80/20 split, the same on every machine.
  order = np.random.default_rng(0).permutation(len(images))
  cut = int(0.8 * len(images))
  index = order[:cut] if split == "train" else order[cut:]
  return Split(ArraySource(images[index], labels[index]), 10, tuple(str(d) for d in range(10)))


GLYPH_CLASSES = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# matplotlib's text fonts: DejaVu Sans, Sans Mono and Serif, STIX and Computer Modern; upright,
# bold and slanted, so each letter must be recognised across typefaces.
GLYPH_FONTS = (
  "DejaVuSans.ttf",
  "DejaVuSans-Bold.ttf",
  "DejaVuSans-Oblique.ttf",
  "DejaVuSans-BoldOblique.ttf",
  "DejaVuSansMono.ttf",
  "DejaVuSansMono-Bold.ttf",
  "DejaVuSansMono-Oblique.ttf",
  "DejaVuSansMono-BoldOblique.ttf",
  "DejaVuSerif.ttf",
  "DejaVuSerif-Bold.ttf",
  "DejaVuSerif-Italic.ttf",
  "DejaVuSerif-BoldItalic.ttf",
  "STIXGeneral.ttf",
  "STIXGeneralBol.ttf",
  "STIXGeneralItalic.ttf",
  "STIXGeneralBolIta.ttf",
  "cmr10.ttf",
  "cmss10.ttf",
  "cmtt10.ttf",
  "cmb10.ttf",
  "cmti10.ttf",
)
GLYPH_SIZE = 32
GLYPH_SPLITS = {"train": (10_000, 1), "val": (2_000, 2)}  # (images, seed of their rendering)


@functools.lru_cache(maxsize=2)
def render_glyphs(count, seed, size=GLYPH_SIZE):
  """`count` uint8 (size, size) images of random capital letters and their labels: a random
  font, height 5/8 to 7/8 of the image, rotated by up to 15 degrees and shifted by up to 3
  pixels; a pure function of (count, seed, size) and matplotlib's fonts."""
  import matplotlib  # here: its import would delay every process that reads no glyphs

  rng = np.random.default_rng(seed)
  font_dir = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
  fonts = {}
  labels = rng.integers(0, len(GLYPH_CLASSES), count)
  images = np.zeros((count, size, size), np.uint8)
  for i, label in enumerate(labels):
    key = (
      GLYPH_FONTS[rng.integers(len(GLYPH_FONTS))],
      int(rng.integers(size * 5 // 8, size * 7 // 8 + 1)),
    )
    if key not in fonts:
      fonts[key] = ImageFont.truetype(os.path.join(font_dir, key[0]), key[1])
    # Drawn on a canvas twice the size, so the rotation never clips the letter.
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    center = size + rng.uniform(-3, 3), size + rng.uniform(-3, 3)
    ImageDraw.Draw(canvas).text(
      center, GLYPH_CLASSES[label], font=fonts[key], fill=255, anchor="mm"
    )
    canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
    images[i] = np.asarray(canvas)[size // 2 : size // 2 + size, size // 2 : size // 2 + size]
  return images, labels


def _glyphs(split):
  images, labels = render_glyphs(*GLYPH_SPLITS[split])
  return Split(
    ArraySource(np.repeat(images[..., None], 3, axis=-1), labels), len(GLYPH_CLASSES), GLYPH_CLASSES
  )


def read_class_names(path):
  try:
    with open(path) as f:
      return tuple(line.strip() for line in f if line.strip())
  except OSError as error:
    raise errors.DataError(
      f"config.data.class_names={path!r}: {error.strerror}; give a file with one "
      "class folder name per line"
    ) from None


def _folder_classes(root, class_names_file, present):
  """One class list for both splits: the class_names file's lines, else the training split's
  class folders (this split's `present` ones when there is no training split), so a class
  missing from one split never shifts the other's labels."""
  if class_names_file:
    names = read_class_names(class_names_file)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
      raise errors.DataError(
        f"config.data.class_names={class_names_file!r} lists {repeated} more than "
        "once; give each class folder name once per line"
      )
    return names
  train_dir = pathlib.Path(root) / "train"
  if not train_dir.is_dir():
    return tuple(present)
  return tuple(sorted(p.name for p in train_dir.iterdir() if p.is_dir()))


def _folder(root, split, class_names_file):
  split_dir = pathlib.Path(root) / split
  if not split_dir.is_dir():
    raise errors.DataError(
      f"config.data.dataset='folder:{root}': no directory {split_dir}; expected "
      f"{root}/{{train,val}}/<class>/*.jpg"
    )
  present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
  class_names = _folder_classes(root, class_names_file, present)
  index = {name: i for i, name in enumerate(class_names)}
  unknown = [name for name in present if name not in index]
  if unknown:
    listed_in = (
      f"config.data.class_names={class_names_file!r}"
      if class_names_file
      else f"the training split's class folders ({pathlib.Path(root) / 'train'})"
    )
    raise errors.DataError(f"class folders {unknown[:5]} of {split_dir} are not in {listed_in}")
  files, labels = [], []
  for name in present:
    for path in sorted((split_dir / name).iterdir()):
      if path.suffix.lower() in IMAGE_SUFFIXES:
        files.append(str(path))
        labels.append(index[name])
  if not files:
    raise errors.DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {split_dir}/<class>/")
  return Split(FolderSource(files, labels), len(class_names), class_names)


# Datasets whose files cannot be downloaded by TFDS: what to put in the manual directory.
MANUAL_FILES = {"imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")}


def default_manual_dir(builder):
  return os.path.join(str(builder.data_dir_root), "downloads", "manual")


def manual_note(name, builder):
  if name not in MANUAL_FILES:
    return ""
  return (
    f"\n{name} cannot be downloaded automatically: put {' and '.join(MANUAL_FILES[name])} "
    f"(from image-net.org) in {default_manual_dir(builder)} or pass --manual_dir=DIR"
  )


def prepare_command(name, data_dir):
  command = f"python -m mobilenet_jax.prepare_data --dataset=tfds:{name}"
  return command + (f" --data_dir={data_dir}" if data_dir else "")


def _tfds(name, split, data_dir):
  import tensorflow_datasets as tfds

  tfds_split = {"train": "train", "val": "validation"}[split]
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as error:  # tfds raises its own DatasetNotFoundError subclasses
    raise errors.DataError(f"config.data.dataset='tfds:{name}': {error}") from None
  if not builder.is_prepared():
    raise errors.DataError(
      f"config.data.dataset='tfds:{name}' is not prepared in "
      f"{builder.data_dir_root}. Prepare it with:\n  "
      f"{prepare_command(name, data_dir)}{manual_note(name, builder)}"
    )
  if tfds_split not in builder.info.splits:
    tfds_split = "test"
  # An Image feature's JPEG or PNG bytes as stored: the pipeline decodes each knowing its crop,
  # where data_source would decode every image whole first.
  encoded = isinstance(builder.info.features["image"], tfds.features.Image)
  source = tfds.data_source(
    name,
    split=tfds_split,
    data_dir=data_dir or None,
    decoders={"image": tfds.decode.SkipDecoding()} if encoded else None,
  )
  label = builder.info.features["label"]
  return Split(TfdsSource(source), label.num_classes, tuple(label.names))


# A pixel store's record: height, width and label, then the pixels (uint8 RGB, row-major).
# ArrayRecord hashes every chunk, so a damaged record is found as it is read.
PIXEL_HEADER = struct.Struct("<HHi")
PIXEL_STORE_RECORD = "pixel_store.json"  # what the store holds: its source, max_side, shards


def pixel_record(pixels, label):
  """A pixel store's record of uint8 HxWx3 `pixels` and their label."""
  pixels = np.ascontiguousarray(pixels, np.uint8)
  return PIXEL_HEADER.pack(*pixels.shape[:2], label) + pixels.tobytes()


def _damaged(path, what, error):
  return errors.DataError(
    f"{path}: {what} is damaged ({error}); delete the file and run the command that wrote the "
    "store again, which writes it anew"
  )


class PixelSource:
  """A pixel store's split: items are (uint8 HxWx3 pixels, label), read at random from its
  ArrayRecord shards; a damaged file or record is one line naming it."""

  def __init__(self, paths):
    import grain
    from array_record.python.array_record_module import ArrayRecordReader

    self.paths, lengths = paths, []
    for path in paths:
      try:
        reader = ArrayRecordReader(path)
        lengths.append(reader.num_records())
        reader.close()  # where a cut file is found
      except RuntimeError as error:  # ArrayRecord's own
        raise _damaged(path, "the file", error) from None
    self.records = grain.sources.ArrayRecordDataSource(paths)
    self.starts = np.cumsum([0, *lengths[:-1]]).tolist()

  def __len__(self):
    return len(self.records)

  def __getitem__(self, index):
    try:
      record = self.records[index]
    except RuntimeError as error:  # ArrayRecord's: a chunk whose hash does not match
      shard = bisect.bisect_right(self.starts, index) - 1
      raise _damaged(self.paths[shard], f"record {index - self.starts[shard]}", error) from None
    height, width, label = PIXEL_HEADER.unpack_from(record)
    pixels = np.frombuffer(record, np.uint8, offset=PIXEL_HEADER.size)
    return pixels.reshape(height, width, 3), label


def read_pixel_store(root):
  """The pixel_store.json of the store at `root`; one line if there is none."""
  try:
    return json.loads((pathlib.Path(root) / PIXEL_STORE_RECORD).read_text())
  except FileNotFoundError:
    raise errors.DataError(
      f"config.data.dataset='pixels:{root}': no {PIXEL_STORE_RECORD} there; write the store with "
      f"python -m mobilenet_jax.prepare_data --dataset=folder:PATH|tfds:NAME "
      f"--pixel_store={root} --max_side=N"
    ) from None


def _pixels(root, split):
  store = read_pixel_store(root)
  paths = sorted(str(p) for p in (pathlib.Path(root) / split).glob("*.array_record"))
  if len(paths) != store["shards"][split]:
    raise errors.DataError(
      f"config.data.dataset='pixels:{root}': its {split} split has {len(paths)} of its "
      f"{store['shards'][split]} files; the store is unfinished: run the command that wrote it "
      f"again (--dataset={store['dataset']} --pixel_store={root} "
      f"--max_side={store['max_side']}) to finish it"
    )
  names = read_class_names(pathlib.Path(root) / "class_names.txt")
  return Split(PixelSource(paths), len(names), names, max_side=store["max_side"])


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A source of config.data.dataset: 'NAME', or 'NAME:ARG' where `arg` names what ARG is."""

  load: Callable[[str, str, Any], Split]  # (ARG, 'train' or 'val', config.data) -> the split
  arg: str = ""
  example: str = ""

  def spelled(self, name):
    return f"{name}:{self.arg}" if self.arg else name


DATASETS = {
  "digits": Dataset(lambda arg, split, data: _digits(split)),
  "glyphs": Dataset(lambda arg, split, data: _glyphs(split)),
  "folder": Dataset(lambda arg, split, data: _folder(arg, split, data.class_names), "PATH"),
  "tfds": Dataset(
    lambda arg, split, data: _tfds(arg, split, data.data_dir),
    "NAME",
    "e.g. tfds:imagenet2012, tfds:imagenette, tfds:cifar10",
  ),
  "pixels": Dataset(lambda arg, split, data: _pixels(arg, split), "PATH"),
}


def parse_dataset(dataset: str) -> tuple[str, str]:
  """config.data.dataset's (registered name, argument); one line naming the forms otherwise."""
  name, _, arg = dataset.partition(":")
  if name not in DATASETS or bool(arg) != bool(DATASETS[name].arg):
    examples = "; ".join(d.example for d in DATASETS.values() if d.example)
    raise errors.DataError(
      f"config.data.dataset={dataset!r}; allowed: "
      f"{', '.join(repr(d.spelled(n)) for n, d in DATASETS.items())} ({examples})"
    )
  return name, arg


def load_split(data_config: Any, split: str) -> Split:
  name, arg = parse_dataset(data_config.dataset)
  return DATASETS[name].load(arg, split, data_config)
