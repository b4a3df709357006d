"""train_and_evaluate(config, workdir): one run, from its checks to its summary.json.

The checks that can refuse a run come before anything is written; the loop (train/loop.py)
trains and evaluates; the finished model's latency is measured here, where the deploy code is
(the loop imports none of it). A finished workdir is reported, not re-run.
"""

import contextlib
import dataclasses
import logging
import os

import jax
import ml_collections

from mobilenet_jax.config import command_line
from mobilenet_jax.config import schema as config_lib
from mobilenet_jax.config import workdir as workdir_lib
from mobilenet_jax.core import errors, tracking
from mobilenet_jax.data import pipeline, sources
from mobilenet_jax.deploy import export, latency
from mobilenet_jax.models import importers, mobilenet
from mobilenet_jax.train import distill, loop, sharding, teacher_cache

log = logging.getLogger(__name__)


def check_can_start(config, train_split, mesh):
  """Refuses a batch that the devices or the training split cannot hold, pixels on the device that
  they cannot hold, or a dataset with more classes than the classifier."""
  devices = jax.device_count()
  if config.data.batch_size % devices or config.data.eval_batch_size % devices:
    raise errors.ConfigError(
      f"config.data.batch_size={config.data.batch_size} and eval_batch_size="
      f"{config.data.eval_batch_size} must be divisible by the {devices} devices"
    )
  if config.data.batch_size > len(train_split):
    raise errors.ConfigError(
      f"config.data.batch_size={config.data.batch_size} is larger than the training split "
      f"({len(train_split)} examples of {config.data.dataset}); every batch would repeat images"
    )
  if train_split.max_side and config.resolution > train_split.max_side:
    if not config.data.allow_upsampling:
      raise errors.ConfigError(
        f"config.resolution={config.resolution} is above the {train_split.max_side} pixels a "
        f"side that {config.data.dataset} stores: every crop would be upsampled, blurred; write "
        "a store with a larger --max_side, or set config.data.allow_upsampling=True"
      )
  if config.data.augment_on_device:
    side = pipeline.canvas_side(train_split, config.data.dataset)  # a source the device can crop
    if config.data.pixels_on_device or config.data.pixels_in_host_memory:
      check_pixels_fit(config, len(train_split) * side * side * 3, mesh.shape["data"])
  if train_split.num_classes > config.model.num_classes:
    raise errors.ConfigError(
      f"config.model.num_classes={config.model.num_classes} but {config.data.dataset} has "
      f"{train_split.num_classes} classes"
    )


def check_pixels_fit(config, canvas_bytes, shards):
  """The canvases config.data.pixels_on_device shards over the mesh's `shards` data devices, or
  config.data.pixels_in_host_memory keeps whole in the process, may take at most half of a
  device's memory (the rest is the step's), or of the host's RAM (a CPU device's memory too)."""
  ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  if config.data.pixels_in_host_memory:
    key, held, limit = "pixels_in_host_memory", canvas_bytes, ram
    where, instead = "in this process's memory", "the store is read each step"
  else:
    stats = jax.local_devices()[0].memory_stats() or {}
    key, held, limit = "pixels_on_device", canvas_bytes / shards, stats.get("bytes_limit") or ram
    where = f"on each of the {shards} devices they are sharded over"
    instead = "the host sends them; or use more devices, or config.data.pixels_in_host_memory"
  if held > limit / 2:
    raise errors.ConfigError(
      f"config.data.{key}=True: the training split's canvases take {held / 2**30:.1f} GiB "
      f"{where}, over half of their {limit / 2**30:.1f} GiB; leave it False ({instead})"
    )


def measure_finished(config, trained, workdir):
  """The finished model's batch-1 latency in JAX and, with config.training.onnx_latency or
  int8, in onnxruntime (its export/model.onnx); with config.training.int8 or a
  quantization-aware model, its int8 model's top-1 and latency."""
  if trained.status != "finished":
    return {}
  state = trained.state
  measured = (
    latency.measure(trained.model, state.params, state.batch_stats, config.resolution)
    if config.training.measure_latency
    else {}
  )
  int8 = config.training.int8 == "post_training" or config.model.quantized
  if config.training.onnx_latency or config.training.int8 != "none" or config.model.quantized:
    weights = latency.local_copy({"params": state.params, "batch_stats": state.batch_stats})
    if jax.process_index() == 0:
      measured.update(export.onnx_latency(config, weights, workdir))
      if int8:
        measured.update(export.int8_model(config, weights, workdir))
  return measured


QAT_DIR = "qat"  # training.int8='qat': the quantization-aware fine-tuning, inside the float run
# What the float run's summary takes from its quantization-aware fine-tuning's.
QAT_ENTRIES = {
  "qat_top1": "top1",
  "int8_top1": "int8_top1",
  "int8_same_top1": "int8_same_top1",
  "int8_onnxruntime_top1": "int8_onnxruntime_top1",
  "int8_onnxruntime_same_top1": "int8_onnxruntime_same_top1",
  "int8_litert_top1": "int8_litert_top1",  # where TensorFlow's converter is installed
  "int8_litert_same_top1": "int8_litert_same_top1",
  **{name: name for name in export.latency_names("int8_").values()},
  **{name: name for name in export.latency_names("int8_", "litert").values()},
}


def quantization_aware_config(config, float_workdir):
  """training.int8='qat': the run that fine-tunes `float_workdir`'s finished float model
  quantization-aware, config.qat's steps at its learning rate, everything else as the float
  run's."""
  child = config.copy_and_resolve_references()
  child.model.quantized = True
  child.init_from = f"workdir:{float_workdir}"
  child.training.int8 = "none"
  child.training.num_steps = config.qat.num_steps
  child.optimizer.learning_rate = config.qat.learning_rate
  return child


def fine_tune_quantization_aware(config, trained, workdir):
  """Fine-tunes the finished float run in `workdir` quantization-aware (WORKDIR/qat, resumed
  like any run); returns the float run's status (the fine-tuning's: a preempted fine-tuning
  leaves the float run unfinished, to resume) and the fine-tuning's int8 entries under the
  float summary's names."""
  child = train_and_evaluate(
    quantization_aware_config(config, workdir), os.path.join(workdir, QAT_DIR)
  )
  if child["status"] != "finished":
    return dataclasses.replace(trained, status=child["status"]), {}
  return trained, {ours: child[theirs] for ours, theirs in QAT_ENTRIES.items() if theirs in child}


def teacher_config(config):
  """config.distill's teacher as a run's config: its config file's model (without one, the
  student's, in float) with config.distill.teacher's weights as init_from."""
  spec = config.distill.teacher_config
  teacher = (
    command_line.load_config_file(spec, f"config.distill.teacher_config={spec!r}")
    if spec
    else config.copy_and_resolve_references()
  )
  teacher.model.quantized = False
  teacher.init_from, teacher.init_new_classifier = config.distill.teacher, False
  teacher.distill = config_lib.base_config().distill
  if config.distill.teacher_classes:
    teacher.model.num_classes = distill.teacher_num_classes(config, teacher)
  try:
    return config_lib.validate(teacher)
  except errors.ConfigError as error:
    raise errors.ConfigError(f"config.distill.teacher_config={spec!r}: {error}") from None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates one run in `workdir`; returns the summary dict."""
  config = workdir_lib.as_recorded(config_lib.validate(config), workdir)
  summary_path = os.path.join(workdir, "summary.json")
  summary = tracking.read_json(summary_path) if os.path.exists(summary_path) else {}
  if summary.get("status") == "finished":
    workdir_lib.check_finished_config(config, workdir)
    log.info(
      "%s is already finished (top1=%s); nothing to do. Use a new --workdir to train again.",
      workdir,
      summary.get("top1"),
    )
    return summary

  mesh = sharding.make_mesh(config)
  train_split = sources.load_split(config.data, "train")
  val_split = sources.load_split(config.data, "val")
  check_can_start(config, train_split, mesh)
  # Read before anything is written: a missing or mismatched init_from is one line, no workdir.
  imported = (
    importers.load_for_model(config, mobilenet.build_model(config))
    if config.init_from and not os.path.isdir(os.path.join(workdir, "checkpoints"))
    else None
  )
  teacher = cache = None
  if config.distill.teacher:
    taught_by = teacher_config(config)
    teacher = distill.load_teacher(config, taught_by, train_split.class_names)
    cache = teacher_cache.open_cache(config, taught_by, teacher.variables, train_split.class_names)
  lock = workdir_lib.WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock:
    workdir_lib.claim(config, workdir)
    trained = loop.train(config, workdir, mesh, train_split, val_split, imported, teacher, cache)
    measured = measure_finished(config, trained, workdir)
    if config.training.int8 == "qat" and trained.status == "finished":
      trained, entries = fine_tune_quantization_aware(config, trained, workdir)
      measured.update(entries)
    summary = loop.summarize(trained, measured)
    trained.writer.finish(summary)
    if jax.process_index() == 0:
      tracking.write_json(summary_path, summary)
  log.info(
    f"{summary['status']}: step {summary['steps']}, top1 {summary['top1']}, "
    f"{summary['images_per_second']:.1f} img/s"
    if summary["images_per_second"]
    else summary["status"]
  )
  return summary
