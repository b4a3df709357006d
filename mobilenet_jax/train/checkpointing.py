"""Orbax checkpoints of the train state: saving policy, restoring the newest intact one onto any
mesh, and stopping with a checkpoint on SIGTERM or Ctrl-C."""

import logging
import os
import signal

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint.checkpoint_managers import preservation_policy, save_decision_policy

from mobilenet_jax.core import errors
from mobilenet_jax.train import optim, sharding, train_step

log = logging.getLogger(__name__)


def checkpoint_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
    save_decision_policy=save_decision_policy.FixedIntervalPolicy(
      config.training.checkpoint_every_steps
    ),
    preservation_policy=preservation_policy.LatestN(config.training.keep_checkpoints),
    enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(
    os.path.join(os.path.abspath(workdir), "checkpoints"),
    options=options,
    item_names=("state", "meta"),
  )


def save_args(state, meta):
  return ocp.args.Composite(state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta))


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
      log.warning(
        "\nCtrl-C: saving a checkpoint at the next step, then stopping (Ctrl-C "
        "again to abort without it)"
      )
    self.requested = True

  def reached(self, sync_point):
    """Whether to stop now. Several processes must stop at the same step, so they agree through
    a tiny all-gather, and only at `sync_point` steps (logging and saving ones)."""
    if jax.process_count() == 1:
      return self.requested
    return sync_point and bool(np.any(multihost_utils.process_allgather(np.int32(self.requested))))

  def restore(self):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


class _ShutdownReports(logging.Filter):
  """asyncio's reports of the other reads of a damaged checkpoint that failed after the first,
  which restore_latest handles: a debug line each, off the screen (hundreds of tracebacks)."""

  def filter(self, record):
    message = record.getMessage()
    if message.startswith("unhandled exception during asyncio.run() shutdown"):
      log.debug("%s", message.splitlines()[0])
      return False
    return True


def restore_latest(manager, abstract_state, state_sharding, move_damaged=False):
  """The newest intact checkpoint laid out for this mesh, whatever mesh wrote it (8 devices ->
  1). A newer damaged one (a cut file, an emptied _METADATA) is skipped with a note saying why;
  with `move_damaged` (training, which will save that step again) it is moved to
  WORKDIR/damaged_checkpoints/, never deleted. Restores are partial: checkpoints written before
  runs without an EMA stopped storing EMA copies still hold them."""
  target = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, state_sharding
  )
  directory = str(manager.directory)
  aside = os.path.join(os.path.dirname(directory), "damaged_checkpoints")
  reports = _ShutdownReports()
  logging.getLogger("asyncio").addFilter(reports)
  try:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
              target, ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
            ),
            meta=ocp.args.JsonRestore(),
          ),
        )
        return restored.state, restored.meta
      except Exception as error:  # Orbax and its readers raise many kinds for a damaged step
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        if move_damaged and jax.process_index() == 0:
          os.makedirs(aside, exist_ok=True)
          os.replace(os.path.join(directory, str(step)), os.path.join(aside, str(step)))
        log.warning(
          "note: checkpoint step %s cannot be restored (%s); %strying the one before",
          step,
          reason,
          f"moved to {aside}/{step}, " if move_damaged else "",
        )
  finally:
    logging.getLogger("asyncio").removeFilter(reports)
    manager.reload()
  raise errors.TrainingError(
    f"{directory} holds no checkpoint that can be restored (the notes above say why)"
  )


def restore_for_inference(config, model, mesh, workdir):
  """The latest TrainState in `workdir`, laid out for `mesh` whatever mesh wrote it."""
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):  # the manager would create it
    raise errors.TrainingError(
      f"--workdir={workdir} holds no checkpoints/ (is it the run's workdir?)"
    )
  manager = checkpoint_manager(workdir, config)
  if manager.latest_step() is None:
    raise errors.TrainingError(f"{workdir}/checkpoints holds no checkpoint")
  tx, _, _ = optim.make_optimizer(
    config, train_step.abstract_params(model, config), steps_per_epoch=1
  )
  abstract_state = jax.eval_shape(
    lambda rng: train_step.init_state(model, tx, config, rng), jax.random.key(0)
  )
  return restore_latest(
    manager, abstract_state, sharding.param_shardings(mesh, abstract_state, config.param_sharding)
  )[0]
