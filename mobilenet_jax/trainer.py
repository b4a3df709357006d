"""train_and_evaluate(config, workdir): the research trainer, on 1 CPU, N devices or N hosts.

Work is never lost: checkpoints are saved periodically, at the end, and on SIGTERM; a relaunch
resumes from the latest one exactly (the input is a pure function of (seed, step)); a finished
workdir is reported, not re-run; metrics already logged are never rewritten.
"""

import contextlib
import json
import os
import re
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy

from mobilenet_jax import accounting, data, importers, latency, models, optim, tracking, train_step
from mobilenet_jax import errors, workdir_lock
from mobilenet_jax import config as config_lib


class TrainingError(errors.UserError, RuntimeError):
  """A run that cannot go on (NaN loss, bad batch split); the message names the step."""


def make_mesh(config):
  names = tuple(name for name, _ in config.mesh)
  sizes = [size for _, size in config.mesh]
  known = int(np.prod([s for s in sizes if s != -1]))
  sizes = [jax.device_count() // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != jax.device_count():
    raise config_lib.ConfigError(f"config.mesh={config.mesh} gives {sizes} = {np.prod(sizes)} "
                                 f"devices; there are {jax.device_count()}")
  # Auto axes: shardings are declared at the jit boundary and propagated inside it. Explicit
  # axes would demand a sharding on every intermediate, which Flax's dropout mask lacks.
  return jax.make_mesh(tuple(sizes), names,
                       axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def param_shardings(mesh, tree, rules):
  """Replicated unless a (regex, spec) rule in config.param_sharding matches the leaf path."""
  def sharding(path, _):
    name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    for pattern, spec in rules:
      if re.search(pattern, name):
        return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())
  return jax.tree_util.tree_map_with_path(sharding, tree)


def checkpoint_manager(workdir, config):
  options = ocp.CheckpointManagerOptions(
      save_decision_policy=save_decision_policy.FixedIntervalPolicy(
          config.training.checkpoint_every_steps),
      preservation_policy=preservation_policy.LatestN(config.training.keep_checkpoints),
      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               options=options, item_names=("state", "meta"))


class Preemption:
  """SIGTERM or Ctrl-C (SIGINT) sets a flag; the loop saves a checkpoint at the next step
  boundary and stops. A second Ctrl-C aborts at once, without the save."""

  def __init__(self):
    self.requested = False
    self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}

  def _handle(self, signum, _):
    if signum == signal.SIGINT:
      if self.requested:
        raise KeyboardInterrupt
      print("\nCtrl-C: saving a checkpoint at the next step, then stopping (Ctrl-C again to "
            "abort without it)", flush=True)
    self.requested = True

  def reached(self, step):
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      # All processes must stop at the same step; agree through a tiny all-reduce.
      flags = multihost_utils.process_allgather(np.int32(self.requested))
      return bool(np.any(flags))
    return self.requested

  def restore(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


def restore_latest(manager, abstract_state, state_sharding, move_damaged=False):
  """The newest intact checkpoint laid out for this mesh, whatever mesh wrote it (8 devices ->
  1). A newer damaged one (a cut file, an emptied _METADATA) is skipped with a note saying why;
  with `move_damaged` (training, which will save that step again) it is moved to
  WORKDIR/damaged_checkpoints/, never deleted."""
  target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract_state, state_sharding)
  directory = str(manager.directory)
  aside = os.path.join(os.path.dirname(directory), "damaged_checkpoints")
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        return restored.state, restored.meta
      except Exception as error:  # Orbax and its readers raise many kinds for a damaged step
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if move_damaged and jax.process_index() == 0:
          os.makedirs(aside, exist_ok=True)
          os.replace(os.path.join(directory, str(step)), os.path.join(aside, str(step)))
        print(f"note: checkpoint step {step} cannot be restored ({reason}); "
              + (f"moved to {aside}/{step}, " if move_damaged else "") + "trying the one before",
              flush=True)
  finally:
    manager.reload()
  raise TrainingError(f"{directory} holds no checkpoint that can be restored (the notes above say "
                      "why)")


def evaluate(eval_fn, batches, mesh, variables, label_offset=0):
  """Sums top-1/top-5/loss over every example once; returns fractions and the count.
  `label_offset` shifts dataset labels to the model's (1 for TF-slim's background class)."""
  sharding = NamedSharding(mesh, P("data"))
  totals = None
  for images, labels, mask in data.iterate(batches):
    put = lambda x: jax.make_array_from_process_local_data(sharding, x)
    sums = eval_fn(*variables, put(images), put(labels + label_offset), put(mask))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = int(totals["count"])
  return {"top1": float(totals["top1"]) / count, "top5": float(totals["top5"]) / count,
          "loss": float(totals["loss"]) / count, "count": count}


def abstract_params(model, config):
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros(models.input_shape(config)))["params"]


def make_eval_fn(model, config, mesh):
  return jax.jit(train_step.make_eval_step(model, config.model.num_classes),
                 out_shardings=NamedSharding(mesh, P()))


def state_weights(state, config):
  """{prefix: (params, batch_stats)} to evaluate: the raw weights, and the EMA when kept."""
  weights = {"": (state.params, state.batch_stats)}
  if config.training.ema_decay:
    weights["ema/"] = (state.ema_params, state.ema_batch_stats)
  return weights


def score(eval_fn, batches, mesh, weights, label_offset):
  """Every {prefix: (params, batch_stats)} evaluated; results keyed prefix + metric."""
  results = {}
  for prefix, variables in weights.items():
    for key, value in evaluate(eval_fn, batches, mesh, variables, label_offset).items():
      results[prefix + key] = value
  return results


def _score_on_val(config, model, mesh, weights):
  batches, _ = data.eval_batches(data.load_split(config.data, "val"), config)
  return score(make_eval_fn(model, config, mesh), batches, mesh, weights,
               importers.label_offset(config))


def restore_for_inference(config, model, mesh, workdir):
  """The latest TrainState in `workdir`, laid out for `mesh` whatever mesh wrote it."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):  # the manager would create it
    raise TrainingError(f"--workdir={workdir} holds no checkpoints/ (is it the run's workdir?)")
  manager = checkpoint_manager(workdir, config)
  if manager.latest_step() is None:
    raise TrainingError(f"{workdir}/checkpoints holds no checkpoint")
  tx, _, _ = optim.make_optimizer(config, abstract_params(model, config), steps_per_epoch=1)
  abstract_state = jax.eval_shape(lambda rng: train_step.init_state(model, tx, config, rng),
                                  jax.random.key(0))
  return restore_latest(manager, abstract_state,
                        param_shardings(mesh, abstract_state, config.param_sharding))[0]


# What a checkpoint's scores depend on beyond its weights: the model and its preprocessing.
TRAINED_KEYS = ("model", "resolution", "data.central_crop_fraction")


# Config keys added after runs had been written, with the value those runs used: a workdir's
# config.json without them is read as having them, so it resumes and scores as before.
ADDED_KEYS = {"config.model.kernel_init": "he_fan_in"}


def _workdir_config(workdir):
  """The workdir's config.json as {dotted key: value}, or None when it has none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  return {**ADDED_KEYS, **tracking.flatten(tracking.read_json(path), "config.")}


def _differences(recorded, config, keys=None):
  """Sorted dotted keys (under `keys`' prefixes, if given) whose values differ."""
  given = tracking.flatten(json.loads(config.to_json_best_effort()), "config.")
  within = lambda k: keys is None or any(k == f"config.{p}" or k.startswith(f"config.{p}.")
                                         for p in keys)
  return sorted(k for k in set(recorded) | set(given)
                if within(k) and recorded.get(k) != given.get(k))


def check_trained_config(config, workdir):
  """Refuses to score `workdir`'s checkpoint with a model or preprocessing other than the one
  its config.json records (another resolution would score another function of the weights)."""
  recorded = _workdir_config(workdir)
  differ = _differences(recorded, config, TRAINED_KEYS) if recorded else []
  if differ:
    raise config_lib.ConfigError(
        f"{workdir} was trained with other values of {differ} (its config.json: "
        f"{', '.join(f'{k}={recorded.get(k)!r}' for k in differ[:3])}); score it with the "
        "config it was trained with")


def evaluate_checkpoint(config, workdir):
  """Scores the latest checkpoint in `workdir` (raw and EMA weights) on this machine's devices,
  however many wrote it; returns {'step', 'top1', 'top5', 'loss', 'count', 'ema/top1', ...}."""
  config_lib.validate(config)
  check_trained_config(config, workdir)
  mesh, model = make_mesh(config), models.build_model(config)
  state = restore_for_inference(config, model, mesh, workdir)
  return {"step": int(state.step),
          **_score_on_val(config, model, mesh, state_weights(state, config))}


def import_weights(config, model):
  """config.init_from's weights, checked against a fresh init of `model`."""
  variables = jax.jit(model.init, compiler_options=models.INIT_COMPILER_OPTIONS)(
      jax.random.key(config.seed), jnp.zeros(models.input_shape(config)))
  imported = importers.load(config, variables)
  if jax.process_index() == 0:
    print(importers.describe(imported))
  return imported


def predict(config, image_path, workdir=None, top=5):
  """[(label, probability)] for one image, from config.init_from's weights or, without it,
  the latest checkpoint in `workdir`. Preprocessed as in evaluation (central crop, resize)."""
  config_lib.validate(config)
  mesh, model = make_mesh(config), models.build_model(config)
  image = data.load_image(image_path, config)  # before the restore: a bad file fails fast
  names = data.read_class_names(config.data.class_names) if config.data.class_names else ()
  if config.init_from:
    imported = import_weights(config, model)
    variables = {"params": imported.params, "batch_stats": imported.batch_stats}
    names = names or imported.labels
  else:
    check_trained_config(config, workdir)
    state = restore_for_inference(config, model, mesh, workdir)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, image[None])[0]
  probabilities = np.asarray(jax.nn.softmax(logits))
  offset = importers.label_offset(config)
  if not names:
    print("note: no class names (neither config.data.class_names nor the weights give them); "
          "labels are the dataset's class indices", flush=True)
  # Dataset class indices, as config.data.class_names counts them: a background slot is not one.
  label = lambda i: ("background" if i < offset else names[i - offset]
                     if i - offset < len(names) else f"class index {i - offset}")
  return [(label(int(i)), float(probabilities[i])) for i in np.argsort(-probabilities)[:top]]


def evaluate_imported(config):
  """Scores config.init_from's weights; returns {'top1', 'top5', 'loss', 'count'}."""
  config_lib.validate(config)
  mesh, model = make_mesh(config), models.build_model(config)
  imported = import_weights(config, model)
  return _score_on_val(config, model, mesh, {"": (imported.params, imported.batch_stats)})


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
  mesh = make_mesh(config)
  if config.data.batch_size % jax.device_count() or config.data.eval_batch_size % jax.device_count():
    raise config_lib.ConfigError(
        f"config.data.batch_size={config.data.batch_size} and eval_batch_size="
        f"{config.data.eval_batch_size} must be divisible by the {jax.device_count()} devices")
  train_split = data.load_split(config.data, "train")
  val_split = data.load_split(config.data, "val")
  if config.data.batch_size > len(train_split):
    raise config_lib.ConfigError(
        f"config.data.batch_size={config.data.batch_size} is larger than the training split "
        f"({len(train_split)} examples of {config.data.dataset}); every batch would repeat images")
  if train_split.num_classes > config.model.num_classes:
    raise config_lib.ConfigError(
        f"config.model.num_classes={config.model.num_classes} but {config.data.dataset} has "
        f"{train_split.num_classes} classes")
  with workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
    _claim_workdir(config, workdir)
    return _train(config, workdir, mesh, train_split, val_split, summary_path)


def _train(config, workdir, mesh, train_split, val_split, summary_path):
  """The loop of train_and_evaluate, once the run may start and holds its workdir."""
  steps_per_epoch = max(len(train_split) // config.data.batch_size, 1)

  model = models.build_model(config)
  tx, schedule, derived = optim.make_optimizer(config, abstract_params(model, config),
                                               steps_per_epoch)
  init = lambda rng: train_step.init_state(model, tx, config, rng)
  abstract_state = jax.eval_shape(init, jax.random.key(config.seed))
  state_sharding = param_shardings(mesh, abstract_state, config.param_sharding)
  batch_sharding = NamedSharding(mesh, P("data"))
  replicated = NamedSharding(mesh, P())

  manager = checkpoint_manager(workdir, config)
  meta = {}
  if manager.latest_step() is not None:
    state, meta = restore_latest(manager, abstract_state, state_sharding, move_damaged=True)
    print(f"Resumed {workdir} at step {int(state.step)}.")
  else:
    state = jax.jit(init, out_shardings=state_sharding,
                    compiler_options=models.INIT_COMPILER_OPTIONS)(jax.random.key(config.seed))
    if config.init_from:
      imported = import_weights(config, model)
      state = jax.device_put(state.replace(
          params=imported.params, batch_stats=imported.batch_stats,
          ema_params=imported.params, ema_batch_stats=imported.batch_stats), state_sharding)
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
  eval_fn = make_eval_fn(model, config, mesh)
  eval_batches, eval_count = data.eval_batches(val_split, config)
  rng = jax.random.key(config.seed)

  def save(step, force=False):
    meta = {"wandb_run_id": writer.run_id, "step": step}
    try:
      manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                 meta=ocp.args.JsonSave(meta)), force=force)
    except OSError as error:  # a full disk, a quota, a filesystem gone read-only
      raise TrainingError(
          f"saving the checkpoint of step {step} failed: {error.strerror or error}; the earlier "
          f"checkpoints in {workdir}/checkpoints are kept (latest: step "
          f"{manager.latest_step()}), free space and run the same command to resume") from None

  def run_eval(step):
    results = {f"eval/{key}": value for key, value in score(
        eval_fn, eval_batches, mesh, state_weights(state, config), label_offset).items()}
    writer.log(step, results)
    return results

  num_steps = config.training.num_steps
  preemption = Preemption()
  status, results = "finished", {}
  progress = writer.progress(start_step, num_steps)
  batches = data.iterate(data.train_batches(train_split, config), start_step)
  try:
    step, last_time, last_step = start_step, time.perf_counter(), start_step
    while step < num_steps:
      images, labels = next(batches)
      state, metrics = step_fn(state, jax.make_array_from_process_local_data(batch_sharding, images),
                               jax.make_array_from_process_local_data(
                                   batch_sharding, labels + label_offset), rng)
      step += 1
      logging_step = step % config.training.log_every_steps == 0 or step == num_steps
      preempted = preemption.reached(step)
      if logging_step or preempted or manager.should_save(step):
        # Checked before every save too, so no checkpoint ever holds a diverged state.
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not (np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["train/grad_norm"])):
          raise TrainingError(
              f"loss {metrics['train/loss']}, gradient norm {metrics['train/grad_norm']} at "
              f"step {step}; stopped. The last good checkpoint (step {manager.latest_step()}) "
              f"is kept in {workdir}/checkpoints")
      if logging_step:
        now = time.perf_counter()
        metrics["train/images_per_second"] = (
            (step - last_step) * config.data.batch_size / (now - last_time))
        last_time, last_step = now, step
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
           if status == "finished" else {})
  summary = {**run_info, **speed, "steps": int(state.step), "status": status,
             "top1": results.get("eval/top1"), "top5": results.get("eval/top5"),
             "ema_top1": results.get("eval/ema/top1", results.get("eval/top1")),
             "eval_count": results.get("eval/count"),
             "images_per_second": writer.images_per_second(),
             "wandb_run_id": writer.run_id}
  if status == "finished" and summary["eval_count"] != eval_count:
    raise TrainingError(f"evaluated {summary['eval_count']} examples, expected {eval_count}")
  writer.finish(summary)
  if jax.process_index() == 0:
    tracking.write_json(summary_path, summary)
  print(f"{status}: step {summary['steps']}, top1 {summary['top1']}, "
        f"{summary['images_per_second']:.1f} img/s" if summary["images_per_second"] else status)
  return summary


def _claim_workdir(config, workdir):
  """A workdir belongs to one config once it holds a checkpoint: resuming with another would
  silently mix two runs. Before its first checkpoint, a new config replaces the old one."""
  path = os.path.join(workdir, "config.json")
  recorded = _workdir_config(workdir)
  if recorded is not None:
    changed = _differences(recorded, config)
    checkpoints = os.path.join(workdir, "checkpoints")
    if changed and os.path.isdir(checkpoints) and any(
        name.isdigit() for name in os.listdir(checkpoints)):
      raise config_lib.ConfigError(
          f"{workdir} holds a run with another config ({', '.join(changed[:5])} differ; its "
          f"config.json has {', '.join(f'{k}={recorded.get(k)!r}' for k in changed[:3])}); use "
          "a new --workdir, or the original config to resume it")
    if not changed:
      return
    if jax.process_index() == 0:
      # The replaced config and what was logged under it are kept, under names that say so.
      for name in ("config.json", "metrics.jsonl"):
        if os.path.exists(os.path.join(workdir, name)):
          stem, ext = os.path.splitext(name)
          os.replace(os.path.join(workdir, name),
                     os.path.join(workdir, f"{stem}.replaced_config{ext}"))
    print(f"{workdir} has no checkpoint yet: this run's config replaces config.json (the old "
          "one is kept as config.replaced_config.json)")
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    tracking.write_json(path, json.loads(config.to_json_best_effort()))
