"""The device mesh and where every array lives on it: the batch split over 'data', parameters
replicated unless a config.param_sharding rule says otherwise."""

import re

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mobilenet_jax.core import errors


def make_mesh(config):
  names = tuple(name for name, _ in config.mesh)
  sizes = [size for _, size in config.mesh]
  known = int(np.prod([s for s in sizes if s != -1]))
  sizes = [jax.device_count() // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != jax.device_count():
    raise errors.ConfigError(
      f"config.mesh={config.mesh} gives {sizes} = {np.prod(sizes)} "
      f"devices; there are {jax.device_count()}"
    )
  # Auto axes: shardings are declared at the jit boundary and propagated inside it. Explicit
  # axes would demand a sharding on every intermediate, which Flax's dropout mask lacks.
  return jax.make_mesh(tuple(sizes), names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def param_shardings(mesh, tree, rules):
  """Replicated unless a (regex, spec) rule in config.param_sharding matches the leaf path."""

  def sharding(path, _):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    for pattern, spec in rules:
      if re.search(pattern, name):
        return NamedSharding(mesh, P(*spec))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(sharding, tree)


def batch_sharding(mesh):
  return NamedSharding(mesh, P("data"))


def replicated(mesh):
  return NamedSharding(mesh, P())


def global_array(whole, sharding):
  """`whole`, which every process holds in full, as one global array laid out by `sharding`."""
  return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])
