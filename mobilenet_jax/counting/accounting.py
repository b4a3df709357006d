"""Mult-adds and parameters in the papers' convention, counted from the traced model.

Mult-adds are the multiply-adds of convolutions, dense layers and attention's two matmuls
(QK^T and AV, as the MNv4 paper counts them) only (no BN, activation, softmax, pooling, bias or
residual add), read off the jaxpr of the forward pass at batch 1, so any
config-composed model is counted without a per-architecture formula. The model is traced with
the 'xla' conv implementation: the other implementations compute the same convolutions as
slices and matmuls, which the counter would not recognise as convolutions.

Parameters are conv and dense weights and biases; BN scale/offset and BN running statistics
are reported separately (the papers' counts exclude both).
"""

import collections
import dataclasses
import functools
import json
import math

import jax
import jax.numpy as jnp
import ml_collections
from jax.extend import core as jax_core

from mobilenet_jax.models import mobilenet

FULLY_CONNECTED = "fully connected"
# Mobile MQA's QK^T and AV: counted as multiply-adds as the MNv4 paper counts them; no weights.
ATTENTION = "attention matmul"


@dataclasses.dataclass(frozen=True)
class LayerCount:
  scope: str  # e.g. 'block_03/depthwise/conv'
  layer_type: str  # 'conv 1x1', 'depthwise 3x3', 'conv 3x3' or 'fully connected'
  madds: int
  kernel_params: int
  input_shape: tuple  # at batch 1; a conv's is NHWC
  kernel_shape: tuple  # a conv's is HWIO
  stride: int


@dataclasses.dataclass
class BlockRow:
  name: str
  block: str
  channels: str
  stride: int
  output_shape: tuple
  madds: int = 0
  params: int = 0


@dataclasses.dataclass
class Profile:
  madds: int
  params: int
  bn_params: int
  bn_stats: int
  layers: list
  blocks: list

  def by_type(self):
    """{layer type: (madds, kernel params)}, in order of first appearance."""
    totals = collections.OrderedDict()
    for layer in self.layers:
      madds, kernel = totals.get(layer.layer_type, (0, 0))
      totals[layer.layer_type] = (madds + layer.madds, kernel + layer.kernel_params)
    return totals


def _conv_count(eqn):
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  out = eqn.outvars[0].aval.shape
  dims = eqn.params["dimension_numbers"]
  spatial = tuple(rhs[d] for d in dims.rhs_spec[2:])
  in_per_group = rhs[dims.rhs_spec[1]]
  size = "x".join(map(str, spatial))
  if eqn.params["feature_group_count"] > 1 and in_per_group == 1:
    layer_type = f"depthwise {size}"
  else:
    layer_type = f"conv {size}"
  return (
    layer_type,
    math.prod(out) * math.prod(spatial) * in_per_group,
    math.prod(rhs),
    lhs,
    rhs,
    eqn.params["window_strides"][0],
  )


def _dot_count(eqn):
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
  contracted = math.prod(lhs[d] for d in lhs_contract)
  between_activations = bool(lhs_batch)  # a dense layer's weights have no batch dimension
  return (
    ATTENTION if between_activations else FULLY_CONNECTED,
    math.prod(eqn.outvars[0].aval.shape) * contracted,
    0 if between_activations else math.prod(rhs),
    lhs,
    rhs,
    1,
  )


_COUNTERS = {"conv_general_dilated": _conv_count, "dot_general": _dot_count}


def _walk(jaxpr, prefix=""):
  for eqn in jaxpr.eqns:
    scope = "/".join(filter(None, [prefix, str(eqn.source_info.name_stack)]))
    if eqn.primitive.name in _COUNTERS:
      # Drop the root module's name: scopes start at the block.
      yield LayerCount(scope.partition("/")[2] or scope, *_COUNTERS[eqn.primitive.name](eqn))
    for sub in jax_core.jaxprs_in_params(eqn.params):
      yield from _walk(sub, scope)


def _count_leaves(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def _split_bn(params):
  """(conv/dense weights and biases, BN scale and offset) counts of a params subtree."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  bn = sum(x.size for path, x in flat if any(getattr(k, "key", None) == "bn" for k in path))
  return _count_leaves(params) - bn, bn


def profile(config: ml_collections.ConfigDict) -> Profile:
  """Counts the model a config describes; traces at batch 1, compiles nothing. The same model
  and resolution are counted once per process; a quantization-aware model as its network."""
  return _profile(
    json.dumps(
      {"model": {**config.model.to_dict(), "quantized": False}, "resolution": config.resolution},
      sort_keys=True,
      default=str,
    )
  )


@functools.lru_cache(maxsize=None)
def _profile(key):
  described = json.loads(key)
  config = ml_collections.ConfigDict(
    {"model": described["model"], "resolution": described["resolution"]}
  )
  model = mobilenet.build_model(config, conv_impl="xla")
  x = jax.ShapeDtypeStruct(mobilenet.input_shape(config), jnp.float32)
  # One trace gives the variables and the forward pass: initialisation runs the model once.
  init = lambda key, x: model.init_with_output(key, x, mutable=True)
  jaxpr, (_, variables) = jax.make_jaxpr(init, return_shape=True)(jax.random.key(0), x)
  shapes = [feature.shape[1:] for feature in variables["intermediates"]["features"]]
  layers = list(_walk(jaxpr.jaxpr))

  params, bn_params = _split_bn(variables["params"])
  blocks = [
    BlockRow(p.name, p.block, f"{p.in_channels}->{p.out_channels}", p.stride, shape)
    for p, shape in zip(model.plan, shapes)
  ]
  if model.head_channels:
    blocks.append(BlockRow("head", "conv 1x1", f"->{model.head_channels}", 1, shapes[-1]))
  if model.pooled_head_channels:
    blocks.append(
      BlockRow(
        "pooled_head",
        FULLY_CONNECTED,
        f"->{model.pooled_head_channels}",
        1,
        (model.pooled_head_channels,),
      )
    )
  blocks.append(
    BlockRow("classifier", FULLY_CONNECTED, f"->{model.num_classes}", 1, (model.num_classes,))
  )
  by_name = {row.name: row for row in blocks}
  for layer in layers:
    by_name[layer.scope.split("/")[0]].madds += layer.madds
  for name, subtree in variables["params"].items():
    by_name[name].params += _split_bn(subtree)[0]
  return Profile(
    madds=sum(layer.madds for layer in layers),
    params=params,
    bn_params=bn_params,
    bn_stats=_count_leaves(variables.get("batch_stats", {})),
    layers=layers,
    blocks=blocks,
  )
