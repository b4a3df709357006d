"""One builder: a block table from config -> a per-block plan -> a Flax Linen MobileNet."""

from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from mobilenet_jax import blocks, convolutions, layers


def make_divisible(value, divisor=8, min_value=None):
  """TF-slim / V2 rounding: nearest multiple of `divisor`, never more than 10% below `value`."""
  min_value = min_value or divisor
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


def scale_channels(channels, width_multiplier, rounding, min_channels):
  if rounding == "truncate":
    return max(int(channels * width_multiplier), min_channels)
  return make_divisible(channels * width_multiplier, min_value=min_channels)


def build_plan(model_config, in_channels=3):
  """Expands the checked (block, t, c, n, s[, options]) rows into one BlockPlan per block, with
  alpha applied."""
  scale = lambda c, alpha=model_config.width_multiplier: scale_channels(
      c, alpha, model_config.channel_rounding, model_config.min_channels)
  plan = []
  for row in model_config.blocks:
    block, expansion, channels, repeats, stride = row[:5]
    out_channels = scale(channels)
    for repeat in range(repeats):
      hidden = in_channels if expansion == 1 else scale(in_channels * expansion, 1.0)
      plan.append(blocks.BlockPlan(f"block_{len(plan):02d}", block, in_channels, hidden,
                                   out_channels, stride if repeat == 0 else 1,
                                   **blocks.row_options(row)))
      in_channels = out_channels
  return tuple(plan)


def head_channels(model_config):
  """V2 paper: alpha is applied to every layer but the last conv, unless alpha > 1."""
  if not model_config.head_channels:
    return 0
  return scale_channels(model_config.head_channels, max(model_config.width_multiplier, 1.0),
                        model_config.channel_rounding, model_config.min_channels)


class MobileNet(nn.Module):
  """Blocks from a plan, an optional 1x1 head conv, global average pool, dropout, classifier.

  Returns logits. For callers that ask (mutable=['intermediates']), the 'intermediates'
  collection holds 'features': each block's output in order, then the head conv's, and
  'pre_logits': the pooled features the classifier sees.
  """
  plan: Tuple[blocks.BlockPlan, ...]
  head_channels: int
  num_classes: int
  dropout_rate: float = 0.0
  activation: str = "relu6"
  bn_momentum: float = 0.997
  bn_epsilon: float = 1e-3
  dtype: str = "float32"
  conv_impl: str = "xla"
  kernel_init: str = "he_fan_out"

  @nn.compact
  def __call__(self, x, train=False):
    dtype = jnp.dtype(self.dtype)
    layer = layers.layer_factory(self.activation, self.bn_momentum, self.bn_epsilon, dtype,
                                 self.conv_impl, self.kernel_init)
    for plan in self.plan:
      x = blocks.REGISTRY[plan.block].module(plan, layer, name=plan.name)(x, train)
      self.sow("intermediates", "features", x)
    if self.head_channels:
      x = layer(self.head_channels, name="head")(x, train)
      self.sow("intermediates", "features", x)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    self.sow("intermediates", "pre_logits", x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=layers.KERNEL_INITS[self.kernel_init][1],
                    name="classifier")(x)


def build_model(config, conv_impl=None):
  """The model a validated config describes; `conv_impl` overrides config.model.conv_impl."""
  model = config.model
  return MobileNet(
      plan=build_plan(model),
      head_channels=head_channels(model),
      num_classes=model.num_classes,
      dropout_rate=model.dropout_rate,
      activation=model.activation,
      bn_momentum=model.bn_momentum,
      bn_epsilon=model.bn_epsilon,
      dtype=model.dtype,
      conv_impl=convolutions.resolve_conv_impl(conv_impl or model.conv_impl),
      kernel_init=model.kernel_init)


def input_shape(config, batch_size=1):
  return (batch_size, config.resolution, config.resolution, 3)


# Initialisation runs once per run, so it is compiled without LLVM's optimisations: they are
# most of its compile time and buy nothing for one call (benchmarks/README.md). The values
# differ from an optimised compile's by a few units in the last place, and are as deterministic.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
