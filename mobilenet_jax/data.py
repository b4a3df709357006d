"""One input pipeline for every source: grain MapDatasets, a pure function of (seed, step).

Sources (config.data.dataset): 'digits' (scikit-learn's 8x8 digits, no download), 'glyphs'
(letters rendered from the fonts that ship with matplotlib, no download),
'folder:PATH' (PATH/{train,val}/<class>/*.jpg) and 'tfds:NAME' (a prepared tensorflow-datasets
dataset read through `tfds.data_source`, no TensorFlow at run time). Every source is random
access, so the batch of step t is `batches[t]`: resuming needs the step and nothing else.
"""

import contextlib
import dataclasses
import functools
import importlib.util
import io
import os
import pathlib

import grain
import jax
from absl import flags
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mobilenet_jax import errors

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")



@dataclasses.dataclass
class Split:
  """A random-access split: items are (uint8 HxWx3 image, int label)."""
  source: object
  num_classes: int
  class_names: tuple

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
    raise _unreadable("an image of the dataset" if isinstance(image, bytes) else image,
                      error) from None


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
    raise errors.DataError(f"{error}; find every such file with: python -m "
                           f"mobilenet_jax.prepare_data --check --dataset={dataset}") from None


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
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf")
GLYPH_SIZE = 32
GLYPH_SPLITS = {"train": (10_000, 1), "val": (2_000, 2)}  # (images, seed of their rendering)


@functools.lru_cache(maxsize=2)
def render_glyphs(count, seed, size=GLYPH_SIZE):
  """`count` uint8 (size, size) images of random capital letters and their labels: a random
  font, height 5/8 to 7/8 of the image, rotated by up to 15 degrees and shifted by up to 3
  pixels; a pure function of (count, seed, size) and matplotlib's fonts."""
  rng = np.random.default_rng(seed)
  font_dir = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
  fonts = {}
  labels = rng.integers(0, len(GLYPH_CLASSES), count)
  images = np.zeros((count, size, size), np.uint8)
  for i, label in enumerate(labels):
    key = (GLYPH_FONTS[rng.integers(len(GLYPH_FONTS))],
           int(rng.integers(size * 5 // 8, size * 7 // 8 + 1)))
    if key not in fonts:
      fonts[key] = ImageFont.truetype(os.path.join(font_dir, key[0]), key[1])
    # Drawn on a canvas twice the size, so the rotation never clips the letter.
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    center = size + rng.uniform(-3, 3), size + rng.uniform(-3, 3)
    ImageDraw.Draw(canvas).text(center, GLYPH_CLASSES[label], font=fonts[key], fill=255,
                                anchor="mm")
    canvas = canvas.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR)
    images[i] = np.asarray(canvas)[size // 2:size // 2 + size, size // 2:size // 2 + size]
  return images, labels


def _glyphs(split):
  images, labels = render_glyphs(*GLYPH_SPLITS[split])
  return Split(ArraySource(np.repeat(images[..., None], 3, axis=-1), labels),
               len(GLYPH_CLASSES), GLYPH_CLASSES)


def read_class_names(path):
  try:
    with open(path) as f:
      return tuple(line.strip() for line in f if line.strip())
  except OSError as error:
    raise errors.DataError(
        f"config.data.class_names={path!r}: {error.strerror}; give a file with one "
        "class folder name per line") from None


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
          "once; give each class folder name once per line")
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
        f"{root}/{{train,val}}/<class>/*.jpg")
  present = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
  class_names = _folder_classes(root, class_names_file, present)
  index = {name: i for i, name in enumerate(class_names)}
  unknown = [name for name in present if name not in index]
  if unknown:
    listed_in = (f"config.data.class_names={class_names_file!r}" if class_names_file
                 else f"the training split's class folders ({pathlib.Path(root) / 'train'})")
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
  return (f"\n{name} cannot be downloaded automatically: put {' and '.join(MANUAL_FILES[name])} "
          f"(from image-net.org) in {default_manual_dir(builder)} or pass --manual_dir=DIR")


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
    raise errors.DataError(f"config.data.dataset='tfds:{name}' is not prepared in "
                           f"{builder.data_dir_root}. Prepare it with:\n  "
                           f"{prepare_command(name, data_dir)}{manual_note(name, builder)}")
  if tfds_split not in builder.info.splits:
    tfds_split = "test"
  # An Image feature's JPEG or PNG bytes as stored: the pipeline decodes each knowing its crop,
  # where data_source would decode every image whole first.
  encoded = isinstance(builder.info.features["image"], tfds.features.Image)
  source = tfds.data_source(name, split=tfds_split, data_dir=data_dir or None,
                            decoders={"image": tfds.decode.SkipDecoding()} if encoded else None)
  label = builder.info.features["label"]
  return Split(TfdsSource(source), label.num_classes, tuple(label.names))


def load_split(data_config, split):
  dataset = data_config.dataset
  kind, _, arg = dataset.partition(":")
  if dataset == "digits":
    return _digits(split)
  if dataset == "glyphs":
    return _glyphs(split)
  if kind == "folder" and arg:
    return _folder(arg, split, data_config.class_names)
  if kind == "tfds" and arg:
    return _tfds(arg, split, data_config.data_dir)
  raise errors.DataError(
      f"config.data.dataset={dataset!r}; allowed: 'digits', 'glyphs', 'folder:PATH', "
      "'tfds:NAME' (e.g. tfds:imagenet2012, tfds:imagenette, tfds:cifar10)")


# x / 127.5 - 1 for every uint8 value. Batches leave the pipeline as uint8 (a quarter of the
# bytes to copy and to send to the device) and the train and eval steps look them up here, as
# to_float does on the host: XLA's own division differs from NumPy's in the last bit.
PIXEL_VALUES = np.arange(256, dtype=np.float32) / 127.5 - 1.0


def to_float(pixels):
  """uint8 pixels -> the model's [-1, 1] input."""
  return PIXEL_VALUES[pixels]


def crop_box(height, width, rng, min_area):
  """Inception-style crop (left, top, right, bottom): area in [min_area, 1] of the image, aspect
  ratio in [3/4, 4/3]; the whole image when ten draws do not fit."""
  for _ in range(10):
    area = rng.uniform(min_area, 1.0) * height * width
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    crop_w, crop_h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
    if 0 < crop_w <= width and 0 < crop_h <= height:
      top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
      return left, top, left + crop_w, top + crop_h
  return 0, 0, width, height


def random_resized_crop(image, rng, resolution, min_area):
  """A crop_box of the image resized to resolution², flipped left-right half the time.

  A JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that keeps the crop at least
  `resolution` pixels on each side, and only the crop is resized: the decode and the resize are
  most of the pipeline's time (benchmarks/input.py)."""
  with opened(image) as pil:
    width, height = pil.size
    left, top, right, bottom = crop_box(height, width, rng, min_area)
    flip = rng.uniform() < 0.5
    pil.draft("RGB", (-(-width * resolution // (right - left)),
                      -(-height * resolution // (bottom - top))))
    x_scale, y_scale = pil.size[0] / width, pil.size[1] / height
    box = (left * x_scale, top * y_scale, min(right * x_scale, pil.size[0]),
           min(bottom * y_scale, pil.size[1]))
    resized = decoded(pil).resize((resolution, resolution), Image.BILINEAR, box=box)
    # Flipped by PIL, not as a reversed numpy view, which the batch's stack copies slowly.
    return np.asarray(resized.transpose(Image.FLIP_LEFT_RIGHT) if flip else resized)


def central_crop(image, resolution, fraction):
  """The central `fraction` of each side, resized to resolution², from the fully decoded image
  (what the importers' published accuracies were measured on)."""
  with opened(image) as pil:
    width, height = pil.size
    crop_h, crop_w = max(int(round(height * fraction)), 1), max(int(round(width * fraction)), 1)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    cropped = decoded(pil).crop((left, top, left + crop_w, top + crop_h))
    return np.asarray(cropped.resize((resolution, resolution), Image.BILINEAR))


def eval_preprocess(image, config):
  """A source item's image -> the model's float input, as evaluation preprocesses it."""
  return to_float(central_crop(image, config.resolution, config.data.central_crop_fraction))


def load_image(path, config):
  """One image file, preprocessed exactly as evaluation preprocesses it."""
  try:
    return eval_preprocess(path, config)
  except errors.DataError as error:
    raise errors.DataError(f"--image={error}") from None


def _stack(items):
  images, labels = zip(*items)
  return np.stack(images), np.asarray(labels, np.int32)


def local_batch_size(global_batch):
  count = jax.process_count()
  if global_batch % count:
    raise errors.DataError(f"config.data.batch_size={global_batch} is not divisible by the "
                           f"{count} processes")
  return global_batch // count


def train_batches(split, config):
  """A MapDataset whose item t is this process's part of the global batch of step t: uint8
  images (to_float makes them the model's input) and int32 labels."""
  data = config.data
  local = local_batch_size(data.batch_size)

  def augment(item, rng):
    image, label = item
    with check_hint(data.dataset):
      return random_resized_crop(image, rng, config.resolution, data.min_crop_area), label

  # Shuffled anew each epoch from the seed; each process takes every process_count-th example.
  dataset = (grain.MapDataset.source(split.source).seed(config.seed).shuffle().repeat()
             .random_map(augment))
  dataset = dataset[jax.process_index()::jax.process_count()]
  return dataset.batch(local, drop_remainder=True, batch_fn=_stack)


def eval_batches(split, config):
  """Every example exactly once, as (uint8 images, labels, mask): the last global batch is
  padded, with mask 0 on the padding."""
  data = config.data
  local = local_batch_size(data.eval_batch_size)
  count = len(split) if not data.max_eval_examples else min(len(split), data.max_eval_examples)
  num_batches = -(-count // data.eval_batch_size)
  process = jax.process_index()

  def batch(b):
    start = b * data.eval_batch_size + process * local
    indices = np.arange(start, start + local)
    mask = (indices < count).astype(np.float32)
    items = [split.source[int(i) if i < count else 0] for i in indices]
    with check_hint(data.dataset):
      images = np.stack([central_crop(image, config.resolution, data.central_crop_fraction)
                         for image, _ in items])
    labels = np.asarray([label for _, label in items], np.int32)
    return images, labels, mask

  return grain.MapDataset.range(num_batches).map(batch), count


def iterate(dataset, start=0, threads=None, processes=0):
  """Prefetching iterator over dataset[start:], decoded by a thread pool: in this process, or in
  each of `processes` grain worker processes (items in the same order)."""
  threads = threads or max(min(16, os.cpu_count() or 1) // max(processes, 1), 1)
  items = dataset[start:].to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                            prefetch_buffer_size=4))
  if processes:
    if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags (defaults here)
      flags.FLAGS.mark_as_parsed()
    items = items.mp_prefetch(grain.MultiprocessingOptions(num_workers=processes,
                                                           per_worker_buffer_size=2))
  return iter(items)
