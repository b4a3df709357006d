"""One input pipeline for every source: grain MapDatasets, a pure function of (seed, step)."""

import dataclasses
import functools
import os
import sys

import grain
import jax
import ml_collections
import numpy as np
import tqdm
from absl import flags
from PIL import Image

from mobilenet_jax.core import errors
from mobilenet_jax.data import device_augment, sources

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
  with sources.opened(image) as pil:
    width, height = pil.size
    left, top, right, bottom = crop_box(height, width, rng, min_area)
    flip = rng.uniform() < 0.5
    pil.draft(
      "RGB", (-(-width * resolution // (right - left)), -(-height * resolution // (bottom - top)))
    )
    x_scale, y_scale = pil.size[0] / width, pil.size[1] / height
    box = (
      left * x_scale,
      top * y_scale,
      min(right * x_scale, pil.size[0]),
      min(bottom * y_scale, pil.size[1]),
    )
    resized = sources.decoded(pil).resize((resolution, resolution), Image.BILINEAR, box=box)
    # Flipped by PIL, not as a reversed numpy view, which the batch's stack copies slowly.
    return np.asarray(resized.transpose(Image.FLIP_LEFT_RIGHT) if flip else resized)


def central_crop(image, resolution, fraction):
  """The central `fraction` of each side, resized to resolution², from the fully decoded image
  (what the importers' published accuracies were measured on)."""
  with sources.opened(image) as pil:
    width, height = pil.size
    crop_h, crop_w = max(int(round(height * fraction)), 1), max(int(round(width * fraction)), 1)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    cropped = sources.decoded(pil).crop((left, top, left + crop_w, top + crop_h))
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
  return jax.tree.map(lambda *leaves: np.stack(leaves), *images), np.asarray(labels, np.int32)


def canvas_side(split: sources.Split, dataset: str) -> int:
  """The side of the canvases config.data.augment_on_device sends: a pixel store's max_side, or
  an in-memory source's image size; for sources that store JPEGs, one line."""
  if split.max_side:
    return split.max_side
  if isinstance(split.source, sources.ArraySource):
    return max(split.source.images.shape[1:3])
  raise errors.ConfigError(
    f"config.data.augment_on_device=True needs stored pixels: config.data.dataset=pixels:PATH "
    f"(python -m mobilenet_jax.prepare_data --pixel_store=PATH), digits or glyphs, not "
    f"{dataset!r}, whose images are decoded on the host"
  )


@dataclasses.dataclass(frozen=True)
class StoredPixels:
  """config.data.pixels_on_device's or pixels_in_host_memory's copy of a training split, in the
  source's order: each image's canvas and true size (rows past the split's length pad the row
  count to the devices' and are never indexed), and its label, which the host keeps."""

  canvases: np.ndarray  # uint8 (rows, side, side, 3)
  sizes: np.ndarray  # int32 (rows, 2)
  labels: np.ndarray  # int32 (examples,)

  def gather(self, batch):
    """An index batch's examples as the host's canvases send them: the step's gather, here."""
    (indices, places), labels = batch
    return (self.canvases[indices], self.sizes[indices], places), labels


def stored_pixels(
  split: sources.Split, config: ml_collections.ConfigDict, rows_multiple: int
) -> StoredPixels:
  """Every training image's canvas (device_augment.canvas), read once by a thread pool."""
  side, count = canvas_side(split, config.data.dataset), len(split)
  rows = -(-count // rows_multiple) * rows_multiple
  stored = StoredPixels(
    np.zeros((rows, side, side, 3), np.uint8),
    np.zeros((rows, 2), np.int32),
    np.zeros((count,), np.int32),
  )

  def read(index):
    with sources.check_hint(config.data.dataset):
      pixels, label = split.source[index]
    stored.canvases[index], stored.sizes[index] = device_augment.canvas(np.asarray(pixels), side)
    stored.labels[index] = label
    return index

  reads = iterate(grain.MapDataset.range(count).map(read))
  for _ in tqdm.tqdm(range(count), unit="image", desc="canvases into memory", mininterval=5):
    next(reads)
  return stored


def local_batch_size(global_batch):
  count = jax.process_count()
  if global_batch % count:
    raise errors.DataError(
      f"config.data.batch_size={global_batch} is not divisible by the {count} processes"
    )
  return global_batch // count


def train_batches(
  split: sources.Split,
  config: ml_collections.ConfigDict,
  whole: bool = False,
  stored_labels: np.ndarray | None = None,
  host_pixels: StoredPixels | None = None,
) -> grain.MapDataset:
  """A MapDataset whose item t is this process's part of the global batch of step t (`whole`:
  all of it, in the stream's order): uint8 images (to_float makes them the model's input) and
  int32 labels; with config.data.augment_on_device, (uint8 canvases, their images' sizes, their
  places in the shuffled stream) for the step to crop, gathered from `host_pixels` where the
  split is held in memory; with the split's pixels on the device (`stored_labels`:
  StoredPixels.labels), (their indices there, their places) of the same examples."""
  data = config.data
  local = data.batch_size if whole else local_batch_size(data.batch_size)

  def augment(item, rng):
    image, label = item
    with sources.check_hint(data.dataset):
      return random_resized_crop(image, rng, config.resolution, data.min_crop_area), label

  # Shuffled anew each epoch from the seed; each process takes every process_count-th example.
  if stored_labels is not None:
    return _index_batches(len(split), stored_labels, config.seed, local, whole)
  if host_pixels is not None:
    return _index_batches(len(split), host_pixels.labels, config.seed, local, whole).map(
      host_pixels.gather
    )
  dataset = grain.MapDataset.source(split.source).seed(config.seed).shuffle().repeat()
  if data.augment_on_device:  # the step crops: the host sends each example's place with it
    side = canvas_side(split, data.dataset)
    dataset = dataset.map_with_index(
      lambda place, item: device_augment.train_item(place, item, side)
    )
  else:
    dataset = dataset.random_map(augment)
  if not whole:
    dataset = dataset[jax.process_index() :: jax.process_count()]
  return dataset.batch(local, drop_remainder=True, batch_fn=_stack)


def _index_batches(count, labels, seed, local, whole):
  """train_batches' items as indices into the examples: the same shuffle of as many indices
  gives the same examples, each epoch's order computed at once (epoch_order; tests/test_data.py
  holds it to the dataset's order)."""
  shuffle_seed = grain.MapDataset.source(range(count)).seed(seed).shuffle()._seed
  stride, first = (1, 0) if whole else (jax.process_count(), jax.process_index())

  def batch(step):
    places = first + stride * (step * local + np.arange(local))
    epochs, in_epoch = np.divmod(places, count)
    indices = np.empty(local, np.int32)
    for epoch in np.unique(epochs):  # a batch spans at most two
      at = epochs == epoch
      indices[at] = epoch_order(count, (shuffle_seed + int(epoch)) % 2**32)[in_epoch[at]]
    return (indices, places.astype(np.int32)), labels[indices]

  return grain.MapDataset.range(sys.maxsize).map(batch)


SHUFFLE_ROUNDS = 4  # grain.MapDataset.shuffle's


@functools.lru_cache(maxsize=2)
def epoch_order(count, epoch_seed):
  """int32 [count]: where grain's shuffle of `count` examples puts each place of an epoch
  seeded `epoch_seed` (grain's per-epoch seed: the shuffle's own plus the epoch), all at once.
  grain computes one place per call (its index_shuffle, the one host cost left with the pixels
  on the device; benchmarks/README.md); this is the same cipher vectorised: a Simon-style Feistel
  network on the smallest even bit width >= 16 that holds count - 1, its round keys
  std::seed_seq's words of the seed, walking each place's cycle until it falls below count."""
  if count == 1:
    return np.zeros(1, np.int32)
  bits = int(np.ceil(np.log2(count - 1)))
  width = np.uint32(max(bits + bits % 2, 16) // 2)
  mask = np.uint32((1 << int(width)) - 1)
  rotate = lambda x, r: ((x << np.uint32(r)) | (x >> (width - np.uint32(r)))) & mask
  mix = lambda x: (rotate(x, 1) & rotate(x, 8)) ^ rotate(x, 2)
  keys = [np.uint32(key) & mask for key in _seed_seq_words(epoch_seed, SHUFFLE_ROUNDS)]

  def cipher(values):
    left, right = (values >> width) & mask, values & mask
    for first_key, second_key in zip(keys[::2], keys[1::2]):
      left ^= mix(right) ^ first_key
      right ^= mix(left) ^ second_key
    return (left << width) | right

  domain = 1 << (2 * int(width))
  if domain > 8 * count:
    # Few places in a large domain walk long cycles (domain / count steps on average; 3 places:
    # ~20,000): walk the whole domain's at once instead, by pointer doubling (after k rounds each
    # entry is the first place below count within 2**k steps of its own, else where they lead).
    jump = cipher(np.arange(domain, dtype=np.uint32))
    for _ in range(2 * int(width)):
      jump = np.where(jump < count, jump, jump[jump])
    return jump[:count].astype(np.int32)
  order = np.arange(count, dtype=np.uint32)
  walking = np.ones(count, bool)
  while walking.any():
    order[walking] = cipher(order[walking])
    walking = order >= count
  return order.astype(np.int32)


def _seed_seq_words(seed, count):
  """C++'s std::seed_seq{seed}.generate(count words), as the standard defines it."""
  words, mask32 = [0x8B8B8B8B] * count, 0xFFFFFFFF
  t = (
    11
    if count >= 623
    else 7
    if count >= 68
    else 5
    if count >= 39
    else 3
    if count >= 7
    else ((count - 1) // 2)
  )
  p, m = (count - t) // 2, max(2, count)
  q = p + t
  mix = lambda x: x ^ (x >> 27)
  for k in range(m):
    r1 = 1664525 * mix(words[k % count] ^ words[(k + p) % count] ^ words[k - 1]) & mask32
    r2 = (r1 + (1 if k == 0 else k % count + seed if k == 1 else k % count)) & mask32
    words[(k + p) % count] = (words[(k + p) % count] + r1) & mask32
    words[(k + q) % count] = (words[(k + q) % count] + r2) & mask32
    words[k % count] = r2
  for k in range(m, m + count):
    r3 = 1566083941 * mix(
      words[k % count] + words[(k + p) % count] + words[(k - 1) % count] & mask32
    )
    r3 &= mask32
    r4 = (r3 - k % count) & mask32
    words[(k + p) % count] ^= r3
    words[(k + q) % count] ^= r4
    words[k % count] = r4
  return words


def eval_batches(
  split: sources.Split, config: ml_collections.ConfigDict
) -> tuple[grain.MapDataset, int]:
  """Every example exactly once, as (uint8 images, labels, mask): the last global batch is
  padded, with mask 0 on the padding. With config.data.augment_on_device, the images are
  (canvases, sizes) for the eval step's central crop."""
  data = config.data
  local = local_batch_size(data.eval_batch_size)
  count = len(split) if not data.max_eval_examples else min(len(split), data.max_eval_examples)
  num_batches = -(-count // data.eval_batch_size)
  process = jax.process_index()
  if data.augment_on_device:  # the eval step crops
    side = canvas_side(split, data.dataset)
    gather = lambda item: (device_augment.canvas(np.asarray(item[0]), side), item[1])
  else:
    gather = lambda item: (
      central_crop(item[0], config.resolution, data.central_crop_fraction),
      item[1],
    )

  def batch(b):
    start = b * data.eval_batch_size + process * local
    indices = np.arange(start, start + local)
    mask = (indices < count).astype(np.float32)
    with sources.check_hint(data.dataset):
      images, labels = _stack([gather(split.source[int(i) if i < count else 0]) for i in indices])
    return images, labels, mask

  return grain.MapDataset.range(num_batches).map(batch), count


def iterate(dataset, start=0, threads=None, processes=0):
  """Prefetching iterator over dataset[start:], decoded by a thread pool: in this process, or in
  each of `processes` grain worker processes (items in the same order)."""
  threads = threads or max(min(16, os.cpu_count() or 1) // max(processes, 1), 1)
  items = dataset[start:].to_iter_dataset(
    grain.ReadOptions(num_threads=threads, prefetch_buffer_size=4)
  )
  if processes:
    if not flags.FLAGS.is_parsed():  # grain's workers read its absl flags (defaults here)
      flags.FLAGS.mark_as_parsed()
    items = items.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=processes, per_worker_buffer_size=2)
    )
  return iter(items)
