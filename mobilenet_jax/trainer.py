"""train_and_evaluate(config, workdir): the training loop, on 1 CPU, N devices or N hosts.

Work is never lost: checkpoints are saved periodically, at the end, and on SIGTERM; a relaunch
resumes from the latest one exactly (the input is a pure function of (seed, step)); a finished
workdir is reported, not re-run; metrics already logged are never rewritten.
"""

import contextlib
import os
import time

import jax
import numpy as np

from mobilenet_jax import accounting, checkpointing, data, errors, evaluate, export, importers
from mobilenet_jax import latency, models, optim, sharding, tracking, train_step
from mobilenet_jax import config as config_lib
from mobilenet_jax import workdir as workdir_lib


def train_and_evaluate(config, workdir):
  """Trains and evaluates one run in `workdir`; returns the summary dict."""
  config_lib.validate(config)
  summary_path = os.path.join(workdir, "summary.json")
  summary = tracking.read_json(summary_path) if os.path.exists(summary_path) else {}
  if summary.get("status") == "finished":
    print(f"{workdir} is already finished (top1={summary.get('top1')}); nothing to do. "
          "Use a new --workdir to train again.")
    return summary

  # Every check that can refuse the run comes before anything is written to the workdir.
  mesh = sharding.make_mesh(config)
  devices = jax.device_count()
  if config.data.batch_size % devices or config.data.eval_batch_size % devices:
    raise errors.ConfigError(
        f"config.data.batch_size={config.data.batch_size} and eval_batch_size="
        f"{config.data.eval_batch_size} must be divisible by the {devices} devices")
  train_split = data.load_split(config.data, "train")
  val_split = data.load_split(config.data, "val")
  if config.data.batch_size > len(train_split):
    raise errors.ConfigError(
        f"config.data.batch_size={config.data.batch_size} is larger than the training split "
        f"({len(train_split)} examples of {config.data.dataset}); every batch would repeat images")
  if train_split.num_classes > config.model.num_classes:
    raise errors.ConfigError(
        f"config.model.num_classes={config.model.num_classes} but {config.data.dataset} has "
        f"{train_split.num_classes} classes")
  lock = workdir_lib.WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock:
    workdir_lib.claim(config, workdir)
    return _train(config, workdir, mesh, train_split, val_split, summary_path)


def _train(config, workdir, mesh, train_split, val_split, summary_path):
  """The loop of train_and_evaluate, once the run may start and holds its workdir."""
  steps_per_epoch = max(len(train_split) // config.data.batch_size, 1)

  model = models.build_model(config)
  tx, schedule, derived = optim.make_optimizer(
      config, train_step.abstract_params(model, config), steps_per_epoch)
  init = lambda rng: train_step.init_state(model, tx, config, rng)
  # Independent streams for the initial weights and the dropout masks.
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  abstract_state = jax.eval_shape(init, init_rng)
  state_sharding = sharding.param_shardings(mesh, abstract_state, config.param_sharding)
  batch_sharding, replicated = sharding.batch_sharding(mesh), sharding.replicated(mesh)

  manager = checkpointing.checkpoint_manager(workdir, config)
  meta = {}
  if manager.latest_step() is not None:
    state, meta = checkpointing.restore_latest(manager, abstract_state, state_sharding,
                                               move_damaged=True)
    print(f"Resumed {workdir} at step {int(state.step)}.")
  else:
    state = jax.jit(init, out_shardings=state_sharding,
                    compiler_options=models.INIT_COMPILER_OPTIONS)(init_rng)
    if config.init_from:
      imported = importers.load_for_model(config, model)
      state = jax.device_put(train_step.with_weights(state, config, imported.params,
                                                     imported.batch_stats), state_sharding)
  start_step = int(state.step)
  label_offset = importers.label_offset(config)

  counts = accounting.profile(config)
  run_info = {"madds": counts.madds, "params": counts.params, "bn_params": counts.bn_params,
              "width_multiplier": config.model.width_multiplier,
              "resolution": config.resolution, "arch": config.model.name,
              "preset": config.training.preset, "devices": jax.device_count(),
              "processes": jax.process_count(), "steps_per_epoch": steps_per_epoch, **derived}
  writer = tracking.MetricWriter(workdir, config, run_info, run_id=meta.get("wandb_run_id"))
  writer.log(start_step, derived)

  step_fn = jax.jit(train_step.make_train_step(model, tx, config, schedule),
                    in_shardings=(state_sharding, batch_sharding, batch_sharding, replicated),
                    out_shardings=(state_sharding, replicated), donate_argnums=0)
  eval_fn = evaluate.make_eval_fn(model, config, mesh)
  eval_batches, eval_count = data.eval_batches(val_split, config)

  def save(step, force=False):
    meta = {"wandb_run_id": writer.run_id, "step": step}
    try:
      manager.save(step, args=checkpointing.save_args(state, meta), force=force)
    except OSError as error:  # a full disk, a quota, a filesystem gone read-only
      raise errors.TrainingError(
          f"saving the checkpoint of step {step} failed: {error.strerror or error}; the earlier "
          f"checkpoints in {workdir}/checkpoints are kept (latest: step "
          f"{manager.latest_step()}), free space and run the same command to resume") from None

  def run_eval(step):
    results = {f"eval/{key}": value for key, value in evaluate.score(
        eval_fn, eval_batches, mesh, evaluate.state_weights(state, config), label_offset).items()}
    writer.log(step, results)
    return results

  num_steps = config.training.num_steps
  preemption = checkpointing.Preemption()
  status, results = "finished", {}
  progress = writer.progress(start_step, num_steps)
  batches = data.iterate(data.train_batches(train_split, config), start_step,
                         processes=config.data.worker_processes)
  try:
    step, last_time, last_step = start_step, time.perf_counter(), start_step
    waited = 0.0  # seconds this logging interval spent blocked on the input pipeline
    while step < num_steps:
      wait_start = time.perf_counter()
      images, labels = next(batches)
      waited += time.perf_counter() - wait_start
      state, metrics = step_fn(state,
                               jax.make_array_from_process_local_data(batch_sharding, images),
                               jax.make_array_from_process_local_data(
                                   batch_sharding, labels + label_offset), dropout_rng)
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
              f"is kept in {workdir}/checkpoints")
      if logging_step:
        now = time.perf_counter()
        metrics["train/images_per_second"] = (
            (step - last_step) * config.data.batch_size / (now - last_time))
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

  speed = (latency.measure(model, state.params, state.batch_stats, config.resolution)
           if status == "finished" and config.training.measure_latency else {})
  if status == "finished" and config.training.onnx_latency:
    weights = latency.local_copy({"params": state.params, "batch_stats": state.batch_stats})
    if jax.process_index() == 0:
      speed.update(export.onnx_latency(config, weights, workdir))
  summary = {**run_info, **speed, "steps": int(state.step), "status": status,
             "top1": results.get("eval/top1"), "top5": results.get("eval/top5"),
             "ema_top1": results.get("eval/ema/top1", results.get("eval/top1")),
             "eval_count": results.get("eval/count"),
             "images_per_second": writer.images_per_second(),
             "input_wait_fraction": writer.input_wait_fraction(),
             "wandb_run_id": writer.run_id}
  if status == "finished" and summary["eval_count"] != eval_count:
    raise errors.TrainingError(f"evaluated {summary['eval_count']} examples, expected {eval_count}")
  writer.finish(summary)
  if jax.process_index() == 0:
    tracking.write_json(summary_path, summary)
  print(f"{status}: step {summary['steps']}, top1 {summary['top1']}, "
        f"{summary['images_per_second']:.1f} img/s" if summary["images_per_second"] else status)
  return summary
