"""The training loop: its initial state, its steps and its final evaluation, on 1 CPU, N devices
or N hosts.

Work is never lost: checkpoints are saved periodically, at the end, and on SIGTERM; a relaunch
resumes from the latest one exactly (the input is a pure function of (seed, step)); metrics
already logged are never rewritten.
"""

import dataclasses
import logging
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from mobilenet_jax.core import errors, tracking
from mobilenet_jax.counting import accounting
from mobilenet_jax.data import pipeline, sources
from mobilenet_jax.models import importers, mobilenet, quantization
from mobilenet_jax.train import (
  checkpointing,
  distill,
  optim,
  scoring,
  sharding,
  teacher_cache,
  train_step,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Trained:
  """What the loop ends with: the final state and how the run ended."""

  model: Any
  state: Any
  status: str  # 'finished' or 'preempted'
  results: dict  # the last evaluation's 'eval/...' values
  run_info: dict  # what summary.json records about the run before it starts
  writer: tracking.MetricWriter
  eval_count: int


def initial_state(config, workdir, model, tx, mesh, manager, imported=None):
  """(state, checkpoint metadata, state sharding, dropout key): the latest checkpoint's state,
  else a fresh initialisation with `imported` (config.init_from's weights) in it."""
  init = lambda rng: train_step.init_state(model, tx, config, rng)
  # Independent streams for the initial weights and the dropout masks.
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  abstract_state = jax.eval_shape(init, init_rng)
  state_sharding = sharding.param_shardings(mesh, abstract_state, config.param_sharding)
  if manager.latest_step() is not None:
    state, meta = checkpointing.restore_latest(
      manager, abstract_state, state_sharding, move_damaged=True
    )
    log.info("Resumed %s at step %d.", workdir, int(state.step))
    return state, meta, state_sharding, dropout_rng
  state = jax.jit(
    init, out_shardings=state_sharding, compiler_options=mobilenet.INIT_COMPILER_OPTIONS
  )(init_rng)
  if config.init_from:
    imported = imported or importers.load_for_model(config, model)
    batch_stats = quantization.merge_into(jax.device_get(state.batch_stats), imported.batch_stats)
    state = jax.device_put(
      train_step.with_weights(state, config, imported.params, batch_stats), state_sharding
    )
  return state, {}, state_sharding, dropout_rng


def pixels_on_device(train_split, config, rows_sharding):
  """config.data.pixels_on_device: ((canvases, sizes) on the devices, their rows sharded as a
  batch is, the labels the host keeps); the host's copy of the pixels is not kept."""
  stored = pipeline.stored_pixels(train_split, config, jax.device_count())
  place = lambda rows: sharding.global_array(rows, rows_sharding)
  return (place(stored.canvases), place(stored.sizes)), stored.labels


def train(
  config: ml_collections.ConfigDict,
  workdir: str,
  mesh: jax.sharding.Mesh,
  train_split: sources.Split,
  val_split: sources.Split,
  imported: importers.Imported | None = None,
  teacher: distill.Teacher | None = None,
  cache: teacher_cache.TeacherCache | None = None,
) -> Trained:
  """Trains from the latest checkpoint (or the start, with `imported`: config.init_from's
  weights) to config.training.num_steps, or until SIGTERM, learning from `teacher` (config.
  distill's) where there is one; evaluates at the end and every config.training.eval_every_steps.
  """
  steps_per_epoch = max(len(train_split) // config.data.batch_size, 1)
  model = mobilenet.build_model(config)
  tx, schedule, derived = optim.make_optimizer(
    config, train_step.abstract_params(model, config), steps_per_epoch
  )
  manager = checkpointing.checkpoint_manager(workdir, config)
  state, meta, state_sharding, dropout_rng = initial_state(
    config, workdir, model, tx, mesh, manager, imported
  )
  start_step = int(state.step)
  label_offset = importers.label_offset(config)
  batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)

  if cache:  # before the run's record, which states what the shared pass cost
    cache.fill(teacher, train_split, config, config.training.num_steps)
  counts = accounting.profile(config)
  run_info = {
    "madds": counts.madds,
    "params": counts.params,
    "bn_params": counts.bn_params,
    "width_multiplier": config.model.width_multiplier,
    "resolution": config.resolution,
    "arch": config.model.name,
    "preset": config.training.preset,
    "devices": jax.device_count(),
    "processes": jax.process_count(),
    "steps_per_epoch": steps_per_epoch,
    **derived,
    **({"teacher_pass_seconds": cache.pass_seconds(config.training.num_steps)} if cache else {}),
  }
  writer = tracking.MetricWriter(workdir, config, run_info, run_id=meta.get("wandb_run_id"))
  writer.log(start_step, derived)

  # The step's teaching: the teacher's variables, or (config.distill.cache) its logits per batch.
  step_fn = jax.jit(
    train_step.make_train_step(model, tx, config, schedule, teacher, cached=cache is not None),
    in_shardings=(
      state_sharding,
      batch_sharding,
      batch_sharding,
      replicated,
      batch_sharding if cache else replicated,
      batch_sharding,
    ),
    out_shardings=(state_sharding, replicated),
    donate_argnums=0,
  )
  teacher_variables = jax.device_put(teacher.variables, replicated) if teacher else None
  pixels, stored_labels = (
    pixels_on_device(train_split, config, batch_sharding)
    if config.data.pixels_on_device
    else (None, None)
  )
  eval_fn = scoring.make_eval_fn(model, config, mesh)
  eval_batches, eval_count = pipeline.eval_batches(val_split, config)

  def save(step, force=False):
    meta = {"wandb_run_id": writer.run_id, "step": step}
    try:
      manager.save(step, args=checkpointing.save_args(state, meta), force=force)
    except OSError as error:  # a full disk, a quota, a filesystem gone read-only
      raise errors.TrainingError(
        f"saving the checkpoint of step {step} failed: {error.strerror or error}; the earlier "
        f"checkpoints in {workdir}/checkpoints are kept (latest: step "
        f"{manager.latest_step()}), free space and run the same command to resume"
      ) from None

  def run_eval(step):
    results = {
      f"eval/{key}": value
      for key, value in scoring.score(
        eval_fn, eval_batches, mesh, scoring.state_weights(state, config), label_offset
      ).items()
    }
    writer.log(step, results)
    return results

  num_steps = config.training.num_steps
  preemption = checkpointing.Preemption()
  status, results = "finished", {}
  progress = writer.progress(start_step, num_steps)
  host_pixels = (
    pipeline.stored_pixels(train_split, config, 1) if config.data.pixels_in_host_memory else None
  )
  batches = pipeline.iterate(
    pipeline.train_batches(
      train_split, config, stored_labels=stored_labels, host_pixels=host_pixels
    ),
    start_step,
    processes=config.data.worker_processes,
  )
  try:
    step, last_time, last_step = start_step, time.perf_counter(), start_step
    waited = 0.0  # seconds this logging interval spent blocked on the input pipeline
    while step < num_steps:
      wait_start = time.perf_counter()
      images, labels = next(batches)
      waited += time.perf_counter() - wait_start
      put = lambda x: jax.make_array_from_process_local_data(batch_sharding, x)
      # This process's examples are every process_count-th of the step's, in the stream.
      teaching = (
        put(cache.targets(step)[jax.process_index() :: jax.process_count()])
        if cache
        else teacher_variables
      )
      state, metrics = step_fn(
        state, jax.tree.map(put, images), put(labels + label_offset), dropout_rng, teaching, pixels
      )
      step += 1
      logging_step = step % config.training.log_every_steps == 0 or step == num_steps
      saving_step = manager.should_save(step)
      preempted = preemption.reached(sync_point=logging_step or saving_step)
      if logging_step or preempted or saving_step:
        # Checked before every save too, so no checkpoint ever holds a diverged state.
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not (np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["train/grad_norm"])):
          raise errors.TrainingError(
            f"loss {metrics['train/loss']}, gradient norm {metrics['train/grad_norm']} at "
            f"step {step}; stopped. The last good checkpoint (step {manager.latest_step()}) "
            f"is kept in {workdir}/checkpoints"
          )
      if logging_step:
        now = time.perf_counter()
        metrics["train/images_per_second"] = (
          (step - last_step) * config.data.batch_size / (now - last_time)
        )
        # The steps run asynchronously: time blocked in next() is time the device had no batch.
        metrics["train/input_wait_fraction"] = waited / (now - last_time)
        last_time, last_step, waited = now, step, 0.0
        writer.log(step, metrics)
        progress.update(step, metrics)
      if preempted:
        save(step, force=True)
        status = "preempted"
        break
      save(step)
      if config.training.eval_every_steps and step % config.training.eval_every_steps == 0:
        results = run_eval(step)
    if status == "finished":
      if manager.latest_step() != num_steps:
        save(num_steps, force=True)
      results = run_eval(num_steps)
  finally:
    manager.wait_until_finished()
    preemption.restore()
    progress.close()
  return Trained(model, state, status, results, run_info, writer, eval_count)


def summarize(trained: Trained, measured: dict) -> dict:
  """summary.json's values: the run, its final evaluation and `measured` (its latency)."""
  results, writer = trained.results, trained.writer
  summary = {
    **trained.run_info,
    **measured,
    "steps": int(trained.state.step),
    "status": trained.status,
    "top1": results.get("eval/top1"),
    "top5": results.get("eval/top5"),
    "ema_top1": results.get("eval/ema/top1", results.get("eval/top1")),
    "eval_count": results.get("eval/count"),
    "images_per_second": writer.images_per_second(),
    "input_wait_fraction": writer.input_wait_fraction(),
    "wandb_run_id": writer.run_id,
  }
  if trained.status == "finished" and summary["eval_count"] != trained.eval_count:
    raise errors.TrainingError(
      f"evaluated {summary['eval_count']} examples, expected {trained.eval_count}"
    )
  return summary
