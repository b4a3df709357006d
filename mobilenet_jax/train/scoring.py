"""Scoring: a model's top-1/top-5/loss over a split, with its raw and EMA weights."""

import jax
import jax.numpy as jnp

from mobilenet_jax.data import pipeline, sources
from mobilenet_jax.models import importers
from mobilenet_jax.train import sharding, train_step


def over_batches(eval_fn, batches, mesh, variables, label_offset=0):
  """Sums top-1/top-5/loss over every example once; returns fractions and the count.
  `label_offset` shifts dataset labels to the model's (1 for TF-slim's background class)."""
  batch_sharding = sharding.batch_sharding(mesh)
  totals = None
  for images, labels, mask in pipeline.iterate(batches):
    put = lambda x: jax.make_array_from_process_local_data(batch_sharding, x)
    sums = eval_fn(*variables, jax.tree.map(put, images), put(labels + label_offset), put(mask))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = int(totals["count"])
  return {
    "top1": float(totals["top1"]) / count,
    "top5": float(totals["top5"]) / count,
    "loss": float(totals["loss"]) / count,
    "count": count,
  }


def make_eval_fn(model, config, mesh):
  return jax.jit(
    train_step.make_eval_step(model, config),
    out_shardings=sharding.replicated(mesh),
  )


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
    for key, value in over_batches(eval_fn, batches, mesh, variables, label_offset).items():
      results[prefix + key] = value
  return results


def score_on_val(config, model, mesh, weights):
  batches, _ = pipeline.eval_batches(sources.load_split(config.data, "val"), config)
  return score(
    make_eval_fn(model, config, mesh), batches, mesh, weights, importers.label_offset(config)
  )
