"""The papers' optimizer as one optax chain: coupled L2 through a mask, then TF1 RMSprop.

TF1 `RMSPropOptimizer` (the papers' optimizer; TensorFlow 1.x `training/rmsprop.py`):
  ms  = ms + (g^2 - ms) * (1 - decay)            ms starts at 1, not 0
  mom = momentum * mom + lr * g / sqrt(ms + eps)  lr inside the momentum buffer, eps in the sqrt
  var = var - mom
`optax.rmsprop(initial_scale=1, eps_in_sqrt=True, momentum=m)` applies -lr before `trace`, so
its trace is exactly -mom, including across learning-rate changes.
"""

import re
from typing import Any

import jax
import ml_collections
import optax


def _exponential(sched, peak, steps_per_epoch, decay_steps):
  # tf.train.exponential_decay(staircase=True): the rate drops every `decay_epochs`.
  return optax.exponential_decay(
    peak,
    transition_steps=max(int(sched.decay_epochs * steps_per_epoch), 1),
    decay_rate=sched.decay_rate,
    staircase=sched.staircase,
  )


def _cosine(sched, peak, steps_per_epoch, decay_steps):
  return optax.cosine_decay_schedule(peak, max(decay_steps, 1))


# config.schedule.name: (config.schedule, peak rate, steps per epoch, steps after the warmup)
# -> the decay after the warmup.
SCHEDULES = {"exponential": _exponential, "cosine": _cosine}


def learning_rate_schedule(config, steps_per_epoch):
  """Base rate scaled by global batch / reference batch; a SCHEDULES decay, with warmup."""
  opt, sched = config.optimizer, config.schedule
  peak = opt.learning_rate * config.data.batch_size / opt.reference_batch_size
  warmup_steps = int(round(sched.warmup_epochs * steps_per_epoch))
  total_steps = max(config.training.num_steps, 1)
  decay = SCHEDULES[sched.name](sched, peak, steps_per_epoch, total_steps - warmup_steps)
  if not warmup_steps:
    return decay, peak
  warmup = optax.linear_schedule(0.0, peak, warmup_steps)
  return optax.join_schedules([warmup, decay], [warmup_steps]), peak


def _tf1_rmsprop(opt, schedule):
  return optax.rmsprop(
    schedule,
    decay=opt.rms_decay,
    eps=opt.epsilon,
    initial_scale=1.0,
    eps_in_sqrt=True,
    centered=False,
    momentum=opt.momentum,
    nesterov=False,
  )


def _momentum(opt, schedule):
  return optax.sgd(schedule, momentum=opt.momentum or None)


def _nesterov(opt, schedule):
  return optax.sgd(schedule, momentum=opt.momentum or None, nesterov=True)


# config.optimizer.name: (config.optimizer, learning-rate schedule) -> the update rule, after
# the coupled L2 and the gradient clipping that make_optimizer chains before it.
OPTIMIZERS = {"tf1_rmsprop": _tf1_rmsprop, "momentum": _momentum, "nesterov": _nesterov}


def weight_decay_mask(params, exclude_patterns):
  """True where L2 applies: every leaf whose '/'-joined path matches none of the patterns."""

  def decays(path, _):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    return not any(re.search(p, name) for p in exclude_patterns)

  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(
  config: ml_collections.ConfigDict, params: Any, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule, dict]:
  """Returns (optax transformation, learning-rate schedule, derived values to log)."""
  opt = config.optimizer
  schedule, peak = learning_rate_schedule(config, steps_per_epoch)
  mask = weight_decay_mask(params, opt.weight_decay_exclude)
  parts = []
  if opt.grad_clip_norm:
    parts.append(optax.clip_by_global_norm(opt.grad_clip_norm))
  if opt.weight_decay:
    # Coupled L2 as slim adds it to the loss: gradient += wd * w, before RMSprop.
    parts.append(optax.add_decayed_weights(opt.weight_decay, mask))
  parts.append(OPTIMIZERS[opt.name](opt, schedule))
  decayed = sum(x.size for x, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if m)
  derived = {
    "optimizer/peak_learning_rate": peak,
    "optimizer/decayed_params": decayed,
    "optimizer/undecayed_params": sum(x.size for x in jax.tree.leaves(params)) - decayed,
  }
  return optax.chain(*parts), schedule, derived
