"""One teacher pass shared by every run that asks the same of it (config.distill.cache).

With the crops on the device (config.data.augment_on_device), an example's crop is a function of
(seed, its place in the shuffled stream) alone, and the teacher sees that crop at its own
resolution: the teacher's outputs for step t are the same for every member of a sweep that
shares the dataset, seed, batch size and crop area, whatever the member's width or resolution.
The first run that needs a chunk of steps computes the teacher's outputs for it, under a file
lock, and renames the chunk into place whole; every run reads the chunks. A teacher that
teaches more than TOP_K outputs (an ImageNet student's 1000) is kept sparse: its TOP_K largest
logits and their indices, the rest read as far below them.
"""

import hashlib
import json
import os
import time

import filelock
import jax
import ml_collections
import numpy as np
import tqdm

from mobilenet_jax.core import errors
from mobilenet_jax.data import device_augment, pipeline
from mobilenet_jax.train import distill, train_step

CHUNK_STEPS = 100  # steps per file: the unit a pass resumes by
TOP_K = 16  # logits kept per example where the teacher teaches more outputs than this
IDENTITY = "identity.json"
BELOW = 100.0  # a sparse example's other logits: this far below its smallest kept one


def _fingerprint(variables):
  """The teacher's weights as it computes with them: a digest of every array's path, shape, type
  and bytes (not its files' times: a copy of the same weights keeps the cache)."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    array = np.asarray(jax.device_get(leaf))
    digest.update(f"{jax.tree_util.keystr(path)}:{array.shape}:{array.dtype}\n".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:16]


def identity(config, teacher_config, teacher_variables, class_names):
  """What a cache's outputs are a function of: the teacher (its weights, model, resolution and
  the outputs that teach) and the crops it saw (dataset, seed, batch, crop area)."""
  return {
    "weights": _fingerprint(teacher_variables),
    "teacher_model": json.loads(teacher_config.model.to_json_best_effort()),
    "teacher_resolution": teacher_config.resolution,
    "teacher_classes": config.distill.teacher_classes,
    "student_classes": list(class_names),
    "dataset": config.data.dataset,
    "seed": config.seed,
    "batch_size": config.data.batch_size,
    "min_crop_area": config.data.min_crop_area,
  }


class TeacherCache:
  """config.distill.cache: its directory, what its outputs are a function of (identity), and
  how many outputs teach."""

  def __init__(self, directory, identity, outputs):
    self.directory, self.identity, self.outputs = directory, identity, outputs
    self._loaded_first, self._loaded = None, {}

  def check(self):
    """A cache written for another teacher or other crops is one line naming what differs;
    nothing in it is read or overwritten."""
    path = os.path.join(self.directory, IDENTITY)
    if not os.path.exists(path):
      return
    with open(path) as f:
      written = json.load(f)
    differ = [key for key in self.identity if written.get(key) != self.identity[key]]
    if differ:
      raise errors.ConfigError(
        f"config.distill.cache={self.directory!r} holds the outputs of another teacher or of "
        f"other crops (it differs in {', '.join(differ)}); give another directory"
      )

  def _chunk(self, first):
    return os.path.join(self.directory, f"steps_{first:08d}.npz")

  def fill(self, teacher, train_split, config, num_steps):
    """Writes every chunk of steps [0, num_steps) that is not there yet: the first run to get
    the lock computes them, the others find them written."""
    os.makedirs(self.directory, exist_ok=True)
    with filelock.FileLock(os.path.join(self.directory, ".lock")):
      self.check()
      if not os.path.exists(os.path.join(self.directory, IDENTITY)):
        with open(os.path.join(self.directory, IDENTITY), "w") as f:
          json.dump(self.identity, f, indent=1)
      firsts = [f for f in range(0, num_steps, CHUNK_STEPS) if not os.path.exists(self._chunk(f))]
      if not firsts:
        return
      outputs = jax.jit(
        lambda variables, images: _teacher_outputs(teacher, config, variables, images)
      )
      batches = pipeline.train_batches(train_split, config, whole=True)
      with tqdm.tqdm(total=len(firsts) * CHUNK_STEPS, unit="step", desc="teacher pass") as bar:
        for first in firsts:
          start, parts = time.perf_counter(), []
          for images, _ in pipeline.iterate(batches[first : first + CHUNK_STEPS]):
            parts.append(jax.device_get(outputs(teacher.variables, images)))
            bar.update()
          stacked = {name: np.stack([p[name] for p in parts]) for name in parts[0]}
          partial = self._chunk(first) + ".partial.npz"
          np.savez(partial, seconds=time.perf_counter() - start, **stacked)
          os.replace(partial, self._chunk(first))  # a chunk is there whole or not at all

  def pass_seconds(self, num_steps):
    """The wall time the teacher pass over steps [0, num_steps) took, whichever runs made it:
    what the sweep paid once, and every member would pay with the teacher in its steps (None
    for a cache written before chunks kept their time)."""
    total = 0.0
    for first in range(0, num_steps, CHUNK_STEPS):
      with np.load(self._chunk(first)) as chunk:
        if "seconds" not in chunk.files:
          return None
        total += float(chunk["seconds"])
    return total

  def targets(self, step):
    """The teacher's logits over the outputs that teach, for step `step`'s whole batch in the
    stream's order (float32, batch x outputs)."""
    first = step - step % CHUNK_STEPS
    if self._loaded_first != first:
      with np.load(self._chunk(first)) as chunk:
        self._loaded = {name: chunk[name] for name in chunk.files}
      self._loaded_first = first
    logits = self._loaded["logits"][step - first]
    if "indices" not in self._loaded:
      return logits
    dense = np.repeat(logits.min(-1, keepdims=True) - BELOW, self.outputs, -1)
    np.put_along_axis(dense, self._loaded["indices"][step - first].astype(np.int64), logits, -1)
    return dense


def _teacher_outputs(teacher, config, variables, images):
  """The teacher's outputs for one whole batch of (canvases, sizes, places): all of them, or
  the TOP_K largest and their indices."""
  crops = device_augment.train_crops(
    *images, config.seed, teacher.resolution, config.data.min_crop_area
  )
  view = train_step.model_input(crops)
  logits = distill.teacher_logits(teacher, variables, view, view)
  if logits.shape[-1] <= TOP_K:
    return {"logits": logits}
  values, indices = jax.lax.top_k(logits, TOP_K)
  return {"logits": values, "indices": indices.astype(np.int16)}


def open_cache(
  config: ml_collections.ConfigDict,
  teacher_config: ml_collections.ConfigDict,
  teacher_variables: dict,
  class_names: tuple,
) -> TeacherCache | None:
  """config.distill.cache's cache, checked against this run's teacher and crops; None without
  one."""
  if not config.distill.cache:
    return None
  # The outputs that teach: the student's classes matched by name, else all the teacher's.
  outputs = len(class_names) if config.distill.teacher_classes else teacher_config.model.num_classes
  cache = TeacherCache(
    config.distill.cache, identity(config, teacher_config, teacher_variables, class_names), outputs
  )
  cache.check()
  return cache
