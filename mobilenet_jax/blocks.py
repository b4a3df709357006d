"""The block registry: each block type's Flax module, its table columns and per-row options.

A row of `config.model.blocks` is the papers' (block type, t, c, n, s), optionally followed by a
dict of per-row options, e.g. ("inverted_residual", 6, 24, 2, 2, {"kernel": 5}). Config
validation, the builder and the error messages all read `REGISTRY`; adding a block type is one
module and one entry here.
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn

from mobilenet_jax import errors

STRIDES = (1, 2)
KERNEL_SIZES = (1, 3, 5, 7)


@dataclasses.dataclass(frozen=True)
class BlockPlan:
  """One block of the built model, α applied: what its module needs to know."""
  name: str
  block: str
  in_channels: int
  hidden_channels: int
  out_channels: int
  stride: int
  kernel: int = 3


class FullConvBlock(nn.Module):
  """A full k x k conv-BN-activation: the stem, and every layer of the V1 paper's Conv MobileNet."""
  plan: BlockPlan
  layer: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train):
    return self.layer(self.plan.out_channels, kernel_size=self.plan.kernel,
                      stride=self.plan.stride, name="conv_bn")(x, train)


class SeparableBlock(nn.Module):
  """V1: k x k depthwise -> BN -> act, then 1x1 pointwise -> BN -> act."""
  plan: BlockPlan
  layer: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train):
    x = self.layer(x.shape[-1], kernel_size=self.plan.kernel, stride=self.plan.stride,
                   depthwise=True, name="depthwise")(x, train)
    return self.layer(self.plan.out_channels, name="pointwise")(x, train)


class InvertedResidualBlock(nn.Module):
  """V2: 1x1 expand -> k x k depthwise -> linear 1x1 project, residual when shapes allow."""
  plan: BlockPlan
  layer: Callable[..., nn.Module]

  @nn.compact
  def __call__(self, x, train):
    plan = self.plan
    y = x
    if plan.hidden_channels != plan.in_channels:
      y = self.layer(plan.hidden_channels, name="expand")(y, train)
    y = self.layer(plan.hidden_channels, kernel_size=plan.kernel, stride=plan.stride,
                   depthwise=True, name="depthwise")(y, train)
    y = self.layer(plan.out_channels, activation=None, name="project")(y, train)
    if plan.stride == 1 and plan.in_channels == plan.out_channels:
      y = y + x
    return y


@dataclasses.dataclass(frozen=True)
class BlockType:
  module: Any  # called as module(plan, layer, name=...)(x, train)
  expands: bool  # whether its t column may exceed 1
  options: dict  # per-row option name -> (allowed values, default)


_KERNEL = {"kernel": (KERNEL_SIZES, 3)}
REGISTRY = {
    "conv": BlockType(FullConvBlock, expands=False, options=_KERNEL),
    "separable": BlockType(SeparableBlock, expands=False, options=_KERNEL),
    "inverted_residual": BlockType(InvertedResidualBlock, expands=True, options=_KERNEL),
}


def row_options(row):
  """A row's per-row options with every default filled in (the row must be checked)."""
  given = row[5] if len(row) == 6 else {}
  return {name: given.get(name, default)
          for name, (_, default) in REGISTRY[row[0]].options.items()}


def check_rows(rows):
  """Checks the block table rows; returns the product of their strides."""
  if not rows:
    raise errors.ConfigError("config.model.blocks is empty; give rows (block type, t, c, n, s) "
                             f"with block type one of {list(REGISTRY)}")
  total_stride = 1
  for i, row in enumerate(rows):
    where = f"config.model.blocks[{i}]={tuple(row)!r}"
    if len(row) not in (5, 6):
      raise errors.ConfigError(f"{where}: a row is (block type, t, c, n, s), 5 values, "
                               "optionally followed by a dict of per-row options")
    block, expansion, channels, repeats, stride = row[:5]
    if block not in REGISTRY:
      raise errors.ConfigError(f"{where}: unknown block type {block!r}; allowed: "
                               f"{list(REGISTRY)}")
    block_type = REGISTRY[block]
    if not isinstance(expansion, (int, float)) or expansion < 1:
      raise errors.ConfigError(f"{where}: expansion t must be a number >= 1")
    if not block_type.expands and expansion != 1:
      raise errors.ConfigError(
          f"{where}: expansion t must be 1 for {block!r} blocks (the types that expand: "
          f"{[name for name, kind in REGISTRY.items() if kind.expands]})")
    for name, value in (("channels c", channels), ("repeats n", repeats)):
      if not isinstance(value, int) or value < 1:
        raise errors.ConfigError(f"{where}: {name} must be an integer >= 1")
    if stride not in STRIDES:
      raise errors.ConfigError(f"{where}: stride s must be one of {list(STRIDES)}")
    options = row[5] if len(row) == 6 else {}
    if not isinstance(options, dict):
      raise errors.ConfigError(f"{where}: the sixth value holds per-row options as a dict, "
                               f"e.g. {{'kernel': 5}}")
    for name, value in options.items():
      if name not in block_type.options:
        raise errors.ConfigError(f"{where}: {block!r} blocks take no option {name!r}; "
                                 f"allowed: {sorted(block_type.options)}")
      allowed = block_type.options[name][0]
      if value not in allowed:
        raise errors.ConfigError(f"{where}: option {name}={value!r}; allowed: {list(allowed)}")
    total_stride *= stride
  return total_stride
