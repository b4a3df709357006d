"""Measured inference cost beside the mult-add count: the papers' point is that mult-adds are a
proxy for latency, so every run records both (on the machine it ran on)."""

import statistics
import time

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils


def local_copy(tree):
  """The whole value of each (possibly sharded, possibly multi-host) array on one device."""

  def whole(x):
    if x.is_fully_replicated:
      return x.addressable_data(0)
    return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))

  return jax.device_put(jax.tree.map(whole, tree), jax.local_devices()[0])


def median_seconds(fn, args, repeats, warmup=3):
  """Median wall time of fn(*args), blocked until ready, after `warmup` untimed calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(model, params, batch_stats, resolution, throughput_batch=32):
  """Batch-1 latency (ms, median of 30 jitted calls after warm-up) and inference img/s at
  `throughput_batch`, both on one local device."""
  variables = local_copy({"params": params, "batch_stats": batch_stats})
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  device = jax.local_devices()[0]
  one = jax.device_put(jnp.zeros((1, resolution, resolution, 3)), device)
  many = jax.device_put(jnp.zeros((throughput_batch, resolution, resolution, 3)), device)
  latency = median_seconds(forward, (variables, one), repeats=30)
  batch_time = median_seconds(forward, (variables, many), repeats=5)
  return {
    "latency_ms": 1000 * latency,
    "inference_images_per_second": throughput_batch / batch_time,
  }
