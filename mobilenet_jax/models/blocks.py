"""The block registry: each block type's Flax module, its table columns and per-row options.

A row of `config.model.blocks` is the papers' (block type, t, c, n, s), optionally followed by a
dict of per-row options, e.g. ("inverted_residual", 3, 40, 3, 2, {"kernel": 5, "se": 0.25}).
Config validation, the builder and the error messages all read `REGISTRY`; adding a block type
is one module and one entry here.
"""

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mobilenet_jax.core import errors
from mobilenet_jax.models import layers

STRIDES = (1, 2)


def make_divisible(value, divisor=8, min_value=None):
  """TF-slim / V2 rounding: nearest multiple of `divisor`, never more than 10% below `value`."""
  min_value = min_value or divisor
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


@dataclasses.dataclass(frozen=True)
class BlockPlan:
  """One block of the built model, α applied: what its module needs to know."""

  name: str
  block: str
  in_channels: int
  hidden_channels: int
  out_channels: int
  stride: int
  kernel: int = 3  # the (middle) depthwise kernel, or a full conv's; 0 = none (UIB)
  act: str = ""  # the block's activation; '' = the model's (config.model.activation)
  se: float = 0  # squeeze-excite width as a fraction of the expanded channels; 0 = none
  start_kernel: int = 0  # UIB's depthwise before the expansion; 0 = none
  layer_scale: float = 0  # the initial per-channel scale of the block's output; 0 = none
  heads: int = 0  # Mobile MQA: query heads
  key_dim: int = 0  # Mobile MQA: the key (and value) width of each head
  kv_stride: int = 1  # Mobile MQA: the keys' and values' depthwise downsampling; 1 = none


class SqueezeExcite(nn.Module):
  """V3's squeeze-excite as the paper and TF-slim define it: global average pool -> 1x1 conv
  with bias and ReLU to make_divisible(C * ratio) channels -> 1x1 conv with bias -> hard
  sigmoid relu6(x + 3) / 6 -> scales the input's channels."""

  ratio: float
  kernel_init: str = "he_fan_out"

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    init = layers.KERNEL_INITS[self.kernel_init][0]
    pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    squeezed = nn.relu(
      nn.Dense(make_divisible(channels * self.ratio), kernel_init=init, name="reduce")(pooled)
    )
    gate = layers.hard_sigmoid(nn.Dense(channels, kernel_init=init, name="expand")(squeezed))
    return x * gate[:, None, None, :].astype(x.dtype)


class Block(nn.Module):
  """What every block module gets: its plan, the model's conv-BN-activation factory and its
  squeeze-excite factory."""

  plan: BlockPlan
  layer: Callable[..., nn.Module]
  squeeze_excite: Callable[..., nn.Module] = SqueezeExcite
  add_quantizer: Optional[Callable[..., nn.Module]] = None  # the residual sum's, when quantized
  conv: Optional[Callable[..., nn.Module]] = None  # a bare conv (attention's projections)
  norm: Optional[Callable[..., nn.Module]] = None  # a BN with no conv before it (pre-norm)

  def act(self):
    """The layer keyword that sets this block's activation, when its row sets one."""
    return {"activation": layers.ACTIVATIONS[self.plan.act]} if self.plan.act else {}

  def residual(self, x, y, train):
    plan = self.plan
    if plan.layer_scale:
      y = y * self.param("layer_scale", nn.initializers.constant(plan.layer_scale), y.shape[-1:])
    if plan.stride != 1 or plan.in_channels != plan.out_channels:
      return y
    if self.add_quantizer is None:
      return y + x
    return self.add_quantizer(name="add")(y + x, train)


class FullConvBlock(Block):
  """A full k x k conv-BN-activation: stems, the V1 paper's Conv MobileNet, V3's and MNv4's
  1x1 conv before the pool."""

  @nn.compact
  def __call__(self, x, train):
    return self.layer(
      self.plan.out_channels,
      kernel_size=self.plan.kernel,
      stride=self.plan.stride,
      name="conv_bn",
      **self.act(),
    )(x, train)


class SeparableBlock(Block):
  """V1: k x k depthwise -> BN -> act, then 1x1 pointwise -> BN -> act."""

  @nn.compact
  def __call__(self, x, train):
    x = self.layer(
      x.shape[-1],
      kernel_size=self.plan.kernel,
      stride=self.plan.stride,
      depthwise=True,
      name="depthwise",
      **self.act(),
    )(x, train)
    return self.layer(self.plan.out_channels, name="pointwise", **self.act())(x, train)


class InvertedResidualBlock(Block):
  """V2 and V3: 1x1 expand -> k x k depthwise -> [squeeze-excite] -> linear 1x1 project,
  residual when shapes allow. No expansion when t = 1 (the expansion would keep the width)."""

  @nn.compact
  def __call__(self, x, train):
    plan = self.plan
    y = x
    if plan.hidden_channels != plan.in_channels:
      y = self.layer(plan.hidden_channels, name="expand", **self.act())(y, train)
    y = self.layer(
      plan.hidden_channels,
      kernel_size=plan.kernel,
      stride=plan.stride,
      depthwise=True,
      name="depthwise",
      **self.act(),
    )(y, train)
    if plan.se:
      y = self.squeeze_excite(plan.se, name="squeeze_excite")(y)
    y = self.layer(plan.out_channels, activation=None, name="project")(y, train)
    return self.residual(x, y, train)


class FusedInvertedBottleneckBlock(Block):
  """MNv4's Fused IB (EfficientNet-EdgeTPU's fused MBConv): a full k x k conv expands,
  a linear 1x1 projects; residual when shapes allow."""

  @nn.compact
  def __call__(self, x, train):
    plan = self.plan
    y = self.layer(
      plan.hidden_channels, kernel_size=plan.kernel, stride=plan.stride, name="expand", **self.act()
    )(x, train)
    y = self.layer(plan.out_channels, activation=None, name="project")(y, train)
    return self.residual(x, y, train)


class UniversalInvertedBottleneckBlock(Block):
  """MNv4's UIB (Qin et al. 2024, Figure 4): [k_start depthwise, linear] -> 1x1 expand ->
  [k_mid depthwise] -> linear 1x1 project, residual when shapes allow. Both depthwise: ExtraDW;
  the middle one only: IB (V2's block); the start one only: ConvNext-like; neither: FFN. The
  stride is the middle depthwise's when there is one, else the start one's."""

  @nn.compact
  def __call__(self, x, train):
    plan = self.plan
    y = x
    if plan.start_kernel:
      y = self.layer(
        plan.in_channels,
        kernel_size=plan.start_kernel,
        stride=1 if plan.kernel else plan.stride,
        depthwise=True,
        activation=None,
        name="start_depthwise",
      )(y, train)
    y = self.layer(plan.hidden_channels, name="expand", **self.act())(y, train)
    if plan.kernel:
      y = self.layer(
        plan.hidden_channels,
        kernel_size=plan.kernel,
        stride=plan.stride,
        depthwise=True,
        name="depthwise",
        **self.act(),
      )(y, train)
    y = self.layer(plan.out_channels, activation=None, name="project")(y, train)
    return self.residual(x, y, train)


class MobileMQABlock(Block):
  """MNv4-Hybrid's Mobile MQA (Qin et al. 2024, Section 4; TF Model Garden's
  MultiHeadSelfAttentionBlock with use_multi_query, timm's MobileAttention): pre-norm BN; the
  query a 1x1 projection to heads x key_dim; the key and the value each [a strided k x k
  depthwise conv + BN, when kv_stride > 1] then a 1x1 projection to ONE head of key_dim, shared
  by every query head; softmax(q k^T / sqrt(key_dim)) v; a 1x1 output projection; layer scale
  and the residual. The projections have no bias and start xavier-uniform (timm). The paper's
  optional query stride is not built: no published Hybrid uses it."""

  @nn.compact
  def __call__(self, x, train):
    plan = self.plan
    y = self.norm(name="bn")(x, train)
    n, h, w, _ = y.shape
    project = lambda features, name, inputs: self.conv(
      features, kernel_init="xavier_uniform", name=name
    )(inputs).astype(jnp.float32)

    def shared_head(name):
      z = y
      if plan.kv_stride > 1:
        z = self.layer(
          z.shape[-1],
          kernel_size=plan.kernel,
          stride=plan.kv_stride,
          depthwise=True,
          activation=None,
          name=f"{name}_down",
        )(z, train)
      return project(plan.key_dim, name, z).reshape(n, -1, plan.key_dim)

    query = project(plan.heads * plan.key_dim, "query", y).reshape(n, h * w, plan.heads, -1)
    key, value = shared_head("key"), shared_head("value")
    logits = jnp.einsum("blhk,bpk->blhp", query, key) * plan.key_dim**-0.5
    attended = jnp.einsum("blhp,bpk->blhk", jax.nn.softmax(logits, axis=-1), value)
    out = self.conv(plan.out_channels, kernel_init="xavier_uniform", name="output")(
      attended.reshape(n, h, w, -1).astype(x.dtype)
    )
    return self.residual(x, out, train)


@dataclasses.dataclass(frozen=True)
class BlockType:
  module: Any  # called as module(plan, layer, squeeze_excite, add_quantizer, conv, norm, name=...)
  expands: bool  # whether its t column may exceed 1
  options: dict  # per-row option name -> (allowed values, default)
  always_expands: bool = False  # a 1x1 expansion even when t = 1 (UIB)
  strides: tuple = STRIDES  # the s column's allowed values


_KERNEL = {"kernel": ((1, 3, 5, 7), 3)}
_ACT = {"act": (tuple(layers.ACTIVATIONS), "")}
# timm's MNv4-Hybrid: every UIB and attention block scales its output, starting at 1e-5.
_LAYER_SCALE = {"layer_scale": ((0, 1e-5), 0)}
REGISTRY = {
  "conv": BlockType(FullConvBlock, expands=False, options={**_KERNEL, **_ACT}),
  "separable": BlockType(SeparableBlock, expands=False, options={**_KERNEL, **_ACT}),
  "inverted_residual": BlockType(
    InvertedResidualBlock, expands=True, options={**_KERNEL, **_ACT, "se": ((0, 0.25), 0)}
  ),
  "fused_ib": BlockType(
    FusedInvertedBottleneckBlock, expands=True, options={**_KERNEL, **_ACT}, always_expands=True
  ),
  "uib": BlockType(
    UniversalInvertedBottleneckBlock,
    expands=True,
    always_expands=True,
    options={
      "start_kernel": ((0, 3, 5, 7), 0),
      "kernel": ((0, 3, 5, 7), 3),
      **_ACT,
      **_LAYER_SCALE,
    },
  ),
  "mobile_mqa": BlockType(
    MobileMQABlock,
    expands=False,
    strides=(1,),
    options={
      "heads": ((1, 2, 4, 8, 16), 4),
      "key_dim": ((16, 32, 48, 64, 96, 128), 64),
      "kv_stride": ((1, 2), 1),
      "kernel": ((3, 5), 3),
      **_LAYER_SCALE,
    },
  ),
}


def row_options(row):
  """A checked row's per-row options with every default filled in."""
  given = row[5] if len(row) == 6 else {}
  return {name: given.get(name, default) for name, (_, default) in REGISTRY[row[0]].options.items()}


def check_rows(rows):
  """Checks the block table rows; returns the product of their strides."""
  if not rows:
    raise errors.ConfigError(
      "config.model.blocks is empty; give rows (block type, t, c, n, s) "
      f"with block type one of {list(REGISTRY)}"
    )
  total_stride = 1
  for i, row in enumerate(rows):
    where = f"config.model.blocks[{i}]={tuple(row)!r}"
    if len(row) not in (5, 6):
      raise errors.ConfigError(
        f"{where}: a row is (block type, t, c, n, s), 5 values, "
        "optionally followed by a dict of per-row options"
      )
    block, expansion, channels, repeats, stride = row[:5]
    if block not in REGISTRY:
      raise errors.ConfigError(f"{where}: unknown block type {block!r}; allowed: {list(REGISTRY)}")
    block_type = REGISTRY[block]
    if not isinstance(expansion, (int, float)) or expansion < 1:
      raise errors.ConfigError(f"{where}: expansion t must be a number >= 1")
    if not block_type.expands and expansion != 1:
      raise errors.ConfigError(
        f"{where}: expansion t must be 1 for {block!r} blocks (the types that expand: "
        f"{[name for name, kind in REGISTRY.items() if kind.expands]})"
      )
    for name, value in (("channels c", channels), ("repeats n", repeats)):
      if not isinstance(value, int) or value < 1:
        raise errors.ConfigError(f"{where}: {name} must be an integer >= 1")
    if stride not in block_type.strides:
      raise errors.ConfigError(
        f"{where}: stride s must be one of {list(block_type.strides)} for {block!r} blocks"
      )
    options = row[5] if len(row) == 6 else {}
    if not isinstance(options, dict):
      raise errors.ConfigError(
        f"{where}: the sixth value holds per-row options as a dict, e.g. {{'kernel': 5}}"
      )
    for name, value in options.items():
      if name not in block_type.options:
        raise errors.ConfigError(
          f"{where}: {block!r} blocks take no option {name!r}; "
          f"allowed: {sorted(block_type.options)}"
        )
      allowed = block_type.options[name][0]
      if value not in allowed or isinstance(value, bool):
        raise errors.ConfigError(f"{where}: option {name}={value!r}; allowed: {list(allowed)}")
    resolved = row_options(row)
    if block == "uib" and stride > 1 and not (resolved["kernel"] or resolved["start_kernel"]):
      raise errors.ConfigError(
        f"{where}: a strided UIB needs a depthwise conv to carry the "
        "stride (kernel or start_kernel > 0)"
      )
    total_stride *= stride
  return total_stride
