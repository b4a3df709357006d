"""The training crop and evaluation's central crop computed on the accelerator, inside the jitted
steps (config.data.augment_on_device), from each image's stored pixels.

The host only gathers each image's uint8 pixels into a canvas of a fixed side (a pixel store's
max_side) with its true size and its place in the shuffled stream of training examples; the
step draws the Inception crop box and the flip from (seed, that place), with the distribution
of pipeline.crop_box, and resamples the box to the resolution as PIL's bilinear resize does (a
triangle filter as wide as an output pixel when it shrinks, reading the image's pixels only),
so no JPEG is decoded and no crop is resized on the host. The batch of step t stays a pure
function of (seed, t), and an example's crop does not depend on how many processes or devices
share the batch.
"""

import jax
import jax.numpy as jnp
import numpy as np

CROP_TRIES = 10  # pipeline.crop_box's draws before it takes the whole image


def canvas(pixels, side):
  """(uint8 side x side x 3 canvas with the image at its top left, int32 [height, width])."""
  height, width = pixels.shape[:2]
  padded = np.zeros((side, side, 3), np.uint8)
  padded[:height, :width] = pixels
  return padded, np.array([height, width], np.int32)


def train_item(place, item, side):
  """A training example as the host sends it: ((canvas, size, its place in the stream), label)."""
  pixels, label = item
  return (*canvas(np.asarray(pixels), side), np.int32(place)), label


def resample_weights(start, length, low, high, canvas_side, out):
  """(out, canvas_side) weights of a bilinear resize of [start, start + length) of an axis to
  `out` pixels, antialiased when it shrinks, reading only pixels in [low, high): PIL's
  ImagingResample (triangle of half-width max(length / out, 1) input pixels around each output
  pixel's center, normalised over the pixels it reads)."""
  scale = length / out
  support = jnp.maximum(scale, 1.0)
  centers = start + (jnp.arange(out, dtype=jnp.float32) + 0.5) * scale
  pixels = jnp.arange(canvas_side, dtype=jnp.float32)
  weights = jnp.maximum(0.0, 1.0 - jnp.abs(pixels + 0.5 - centers[:, None]) / support)
  weights = jnp.where((pixels >= low) & (pixels < high), weights, 0.0)
  return weights / jnp.sum(weights, axis=1, keepdims=True)


def _resample(canvas_pixels, rows, columns):
  """uint8 (out, out, 3): rows (out, side) and columns (out, side) applied to the canvas, rounded
  as PIL rounds its 8-bit output."""
  resized = jnp.einsum("ry,yxc,sx->rsc", rows, canvas_pixels.astype(jnp.float32), columns)
  return jnp.clip(jnp.round(resized), 0, 255).astype(jnp.uint8)


def crop_box(key, height, width, min_area):
  """pipeline.crop_box's distribution: (top, left, crop height, crop width) as float32, area in
  [min_area, 1] of the image and aspect ratio in [3/4, 4/3], the first of ten draws that fits,
  else the whole image."""
  area_key, aspect_key, top_key, left_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, (CROP_TRIES,), minval=min_area, maxval=1.0) * height * width
  aspect = jnp.exp(
    jax.random.uniform(aspect_key, (CROP_TRIES,), minval=np.log(3 / 4), maxval=np.log(4 / 3))
  )
  crop_w, crop_h = jnp.round(jnp.sqrt(area * aspect)), jnp.round(jnp.sqrt(area / aspect))
  fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
  first = jnp.argmax(fits)
  crop_h = jnp.where(fits[first], crop_h[first], height)
  crop_w = jnp.where(fits[first], crop_w[first], width)
  # Integers uniform in [0, height - crop_h], as numpy's rng.integers(0, height - crop_h + 1).
  top = jnp.floor(jax.random.uniform(top_key) * (height - crop_h + 1))
  left = jnp.floor(jax.random.uniform(left_key) * (width - crop_w + 1))
  return top, left, crop_h, crop_w


def train_crops(canvases, sizes, places, seed, resolution, min_area):
  """uint8 (batch, resolution, resolution, 3): each canvas's random crop box resized and, half
  the time, flipped left-right; a function of (seed, the example's place in the stream)."""
  seed_key = jax.random.key(seed)

  def crop(place, pixels, size):
    box_key, flip_key = jax.random.split(jax.random.fold_in(seed_key, place))
    height, width = size[0].astype(jnp.float32), size[1].astype(jnp.float32)
    top, left, crop_h, crop_w = crop_box(box_key, height, width, min_area)
    side = pixels.shape[0]
    rows = resample_weights(top, crop_h, 0.0, height, side, resolution)
    columns = resample_weights(left, crop_w, 0.0, width, side, resolution)
    columns = jnp.where(jax.random.uniform(flip_key) < 0.5, columns[::-1], columns)
    return _resample(pixels, rows, columns)

  return jax.vmap(crop)(places, canvases, sizes)


def central_crops(canvases, sizes, resolution, fraction):
  """uint8 (batch, resolution, resolution, 3): pipeline.central_crop of each canvas's image (the
  central `fraction` of each side, resized from the crop's own pixels)."""

  def crop(pixels, size):
    side = pixels.shape[0]
    height, width = size[0], size[1]
    crop_h = jnp.maximum(jnp.round(height * fraction), 1).astype(jnp.int32)
    crop_w = jnp.maximum(jnp.round(width * fraction), 1).astype(jnp.int32)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    rows = resample_weights(top, crop_h, top, top + crop_h, side, resolution)
    columns = resample_weights(left, crop_w, left, left + crop_w, side, resolution)
    return _resample(pixels, rows, columns)

  return jax.vmap(crop)(canvases, sizes)
