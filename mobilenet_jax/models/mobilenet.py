"""One builder: a block table from config -> a per-block plan -> a Flax Linen MobileNet."""

import functools
from typing import Callable, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mobilenet_jax.models import blocks, convolutions, layers, quantization


def scale_channels(channels, width_multiplier, rounding, min_channels):
  if rounding == "truncate":
    return max(int(channels * width_multiplier), min_channels)
  return blocks.make_divisible(channels * width_multiplier, min_value=min_channels)


def build_plan(model_config, in_channels=3):
  """Expands the checked (block, t, c, n, s[, options]) rows into one BlockPlan per block, with
  alpha applied."""
  scale = lambda c, alpha=model_config.width_multiplier: scale_channels(
    c, alpha, model_config.channel_rounding, model_config.min_channels
  )
  plan = []
  for index, row in enumerate(model_config.blocks):
    block, expansion, channels, repeats, stride = row[:5]
    expands = expansion != 1 or blocks.REGISTRY[block].always_expands
    fixed_stem = index == 0 and model_config.width_multiplier < model_config.stem_fixed_below_width
    out_channels = channels if fixed_stem else scale(channels)
    for repeat in range(repeats):
      hidden = scale(in_channels * expansion, 1.0) if expands else in_channels
      plan.append(
        blocks.BlockPlan(
          f"block_{len(plan):02d}",
          block,
          in_channels,
          hidden,
          out_channels,
          stride if repeat == 0 else 1,
          **blocks.row_options(row),
        )
      )
      in_channels = out_channels
  return tuple(plan)


def head_channels(model_config):
  """V2 paper: alpha is applied to every layer but the last conv, unless alpha > 1."""
  if not model_config.head_channels:
    return 0
  return scale_channels(
    model_config.head_channels,
    max(model_config.width_multiplier, 1.0),
    model_config.channel_rounding,
    model_config.min_channels,
  )


def pooled_head_channels(model_config):
  """V3 and MNv4's conv after the pool, scaled as the head conv (TF-slim's released V3 0.75
  models keep 1280 and 1024: their published counts agree only so)."""
  if not model_config.pooled_head_channels:
    return 0
  return scale_channels(
    model_config.pooled_head_channels,
    max(model_config.width_multiplier, 1.0),
    model_config.channel_rounding,
    model_config.min_channels,
  )


NEUTRAL_NORMALIZATION = (0.5, 0.5, 0.5)  # (x - 0.5) / 0.5 of [0, 1] pixels: the pipeline's [-1, 1]


def normalize_input(x, mean, std):
  """The pipeline's [-1, 1] pixels as (pixels / 255 - mean) / std per channel (timm's weights
  expect ImageNet's mean and std); the identity for the neutral 0.5 / 0.5."""
  if tuple(mean) == NEUTRAL_NORMALIZATION and tuple(std) == NEUTRAL_NORMALIZATION:
    return x
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)
  return (x.astype(jnp.float32) * 0.5 + (0.5 - mean)) / std


class PooledHead(nn.Module):
  """A 1x1 conv on the pooled features (a dense layer), then a bias and the activation (V3)
  or BN and the activation (MNv4)."""

  features: int
  norm: Optional[Callable[..., nn.Module]]  # None: a bias instead (V3)
  activation: str
  kernel_init: str

  @nn.compact
  def __call__(self, x, train):
    x = nn.Dense(
      self.features,
      use_bias=self.norm is None,
      kernel_init=layers.KERNEL_INITS[self.kernel_init][0],
      name="conv",
    )(x)
    activation = layers.ACTIVATIONS[self.activation]
    if self.norm is None:
      return activation(x)
    return self.norm(activation=activation, name="bn")(x, train)


class MobileNet(nn.Module):
  """Blocks from a plan, an optional 1x1 head conv, global average pool, an optional pooled
  head, dropout, classifier.

  Returns logits. For callers that ask (mutable=['intermediates']), the 'intermediates'
  collection holds 'features': each block's output in order, then the head conv's, and
  'pre_logits': the features the classifier sees.
  """

  plan: Tuple[blocks.BlockPlan, ...]
  head_channels: int
  num_classes: int
  pooled_head_channels: int = 0
  pooled_head_norm: bool = False
  dropout_rate: float = 0.0
  activation: str = "relu6"
  bn_momentum: float = 0.997
  bn_epsilon: float = 1e-3
  dtype: str = "float32"
  conv_impl: str = "xla"
  kernel_init: str = "he_fan_out"
  folded: bool = False  # BN folded into the convs (layers.fold_batch_norm's variables)
  # Quantization-aware: the int8 export's function in float32 (quantization.py); None = float.
  quantized: Optional[quantization.QuantizationSettings] = None
  padding: str = "same"
  input_mean: Tuple[float, ...] = NEUTRAL_NORMALIZATION
  input_std: Tuple[float, ...] = NEUTRAL_NORMALIZATION

  @nn.compact
  def __call__(self, x, train=False):
    dtype = jnp.dtype(self.dtype)
    squeeze_excite = functools.partial(blocks.SqueezeExcite, kernel_init=self.kernel_init)
    conv = norm = None
    quantizer = add_quantizer = None
    x = normalize_input(x, self.input_mean, self.input_std)
    if self.quantized:
      scales = quantization.InputScales()
      quantizer = functools.partial(
        quantization.ActivationQuantizer, scales, self.quantized.range_decay
      )
      add_quantizer = quantizer
      layer = quantization.layer_factory(
        self.activation,
        self.bn_momentum,
        self.bn_epsilon,
        self.conv_impl,
        self.kernel_init,
        self.quantized,
        self.padding,
        scales,
      )
      x = quantizer(name="input_quant")(x, train)
    else:
      conv = layers.conv_factory(dtype, self.conv_impl, self.kernel_init, self.padding)
      layer = layers.layer_factory(
        self.activation,
        layers.norm_factory(self.bn_momentum, self.bn_epsilon, dtype, self.folded),
        conv,
      )
      norm = layers.norm_factory(
        self.bn_momentum, self.bn_epsilon, dtype, self.folded, standalone=True
      )
    for plan in self.plan:
      x = blocks.REGISTRY[plan.block].module(
        plan, layer, squeeze_excite, add_quantizer, conv, norm, name=plan.name
      )(x, train)
      self.sow("intermediates", "features", x)
    if self.head_channels:
      x = layer(self.head_channels, name="head")(x, train)
      self.sow("intermediates", "features", x)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    if quantizer:
      x = quantizer(name="pool_quant")(x, train)
    if self.pooled_head_channels:
      x = PooledHead(
        self.pooled_head_channels,
        layers.norm_factory(self.bn_momentum, self.bn_epsilon, jnp.float32, self.folded)
        if self.pooled_head_norm
        else None,
        self.activation,
        self.kernel_init,
        name="pooled_head",
      )(x, train)
    self.sow("intermediates", "pre_logits", x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    classifier_init = layers.KERNEL_INITS[self.kernel_init][1]
    if self.quantized:
      return quantization.QuantizedDense(
        self.num_classes, classifier_init, scales, self.quantized.range_decay, name="classifier"
      )(x, train)
    return nn.Dense(self.num_classes, kernel_init=classifier_init, name="classifier")(x)


def build_model(
  config: ml_collections.ConfigDict, conv_impl: str | None = None, folded: bool = False
) -> MobileNet:
  """The model a validated config describes; `conv_impl` overrides config.model.conv_impl;
  `folded` builds it with BN folded into the convs, for layers.fold_batch_norm's variables.
  With config.model.quantized, the quantization-aware model (quantization.py)."""
  model = config.model
  plan = build_plan(model)
  quantized = None
  if model.quantized and not folded:  # its layers checked by validate()
    quantized = quantization.QuantizationSettings(config.qat.freeze_bn_step, config.qat.range_decay)
  return MobileNet(
    plan=plan,
    head_channels=head_channels(model),
    num_classes=model.num_classes,
    pooled_head_channels=pooled_head_channels(model),
    pooled_head_norm=model.pooled_head_norm,
    dropout_rate=model.dropout_rate,
    activation=model.activation,
    bn_momentum=model.bn_momentum,
    bn_epsilon=model.bn_epsilon,
    dtype=model.dtype,
    conv_impl=convolutions.resolve_conv_impl(conv_impl or model.conv_impl),
    kernel_init=model.kernel_init,
    folded=folded,
    quantized=quantized,
    padding=model.padding,
    input_mean=tuple(model.input_mean),
    input_std=tuple(model.input_std),
  )


def input_shape(config, batch_size=1):
  return (batch_size, config.resolution, config.resolution, 3)


# Initialisation runs once per run, so it is compiled without LLVM's optimisations: they are
# most of its compile time and buy nothing for one call (benchmarks/README.md). The values
# differ from an optimised compile's by a few units in the last place, and are as deterministic.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
