"""The layers every block is made of: a convolution (any implementation), BatchNorm with its
activation, and the initialisers the config chooses."""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax.models import convolutions


def gelu(x):
  """The exact (erf) GELU of MNv4-Hybrid-L, as PyTorch's nn.GELU(); jax.nn.gelu defaults to the
  tanh approximation."""
  return jax.nn.gelu(x, approximate=False)


# V3's hard swish is x * relu6(x + 3) / 6, its hard sigmoid relu6(x + 3) / 6 (as in TF-slim).
ACTIVATIONS = {
  "relu6": jax.nn.relu6,
  "relu": jax.nn.relu,
  "hard_swish": jax.nn.hard_swish,
  "gelu": gelu,
}
hard_sigmoid = jax.nn.hard_sigmoid

# config.model.kernel_init: (conv kernel initializer, classifier kernel initializer). Kernels are
# HWIO, so fans count k*k taps times channels: a depthwise (k, k, 1, C) kernel has fan-in k*k and
# fan-out k*k*C. BN follows every conv, and a scale-invariant layer's effective learning rate
# falls with the square of its kernel's norm, so the scale decides how fast a conv layer learns.
KERNEL_INITS = {
  # torchvision and timm MobileNets: kaiming_normal_(mode='fan_out'), Linear N(0, 0.01).
  "he_fan_out": (
    nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
    nn.initializers.normal(0.01),
  ),
  # The papers' TF-slim arg scopes: truncated_normal(stddev=0.09) for every conv and the
  # logits, truncated at 2 stddev without rescaling (the drawn stddev is 0.0792).
  "slim": (nn.initializers.truncated_normal(0.09), nn.initializers.truncated_normal(0.09)),
  # He over the fan-in, rescaled for the truncation: a depthwise kernel starts sqrt(C) times
  # larger than under he_fan_out.
  "he_fan_in": (
    nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
    nn.initializers.normal(0.01),
  ),
  # timm's MNv4-Hybrid attention projections (Mobile MQA's own choice, whatever the model's).
  "xavier_uniform": (nn.initializers.xavier_uniform(), nn.initializers.normal(0.01)),
}


def _normalize(x, mean, var, scale, bias, activation, epsilon):
  """activation((x - mean) / sqrt(var + epsilon) * scale + bias), as x * a + b per channel.

  The same function as nn.BatchNorm's (x - mean) * a + bias, but autodiff of that form keeps
  x - mean as one more full-size array for the backward pass; this form keeps only x, and
  trains MobileNets 13% faster on CPU (benchmarks/README.md).
  """
  multiplier = scale * lax.rsqrt(var + epsilon)
  z = x.astype(jnp.float32) * multiplier + (bias - mean * multiplier)
  return activation(z) if activation else z


class BatchNormActivation(nn.Module):
  """nn.BatchNorm (the same variables, initialisers, 'fast' batch variance E[x^2] - E[x]^2 and
  running-average update), then the activation (None: linear), computed in float32."""

  activation: Optional[Callable] = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    features = (x.shape[-1],)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    if train:
      x32 = x.astype(jnp.float32)
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axes)
      var = jnp.maximum(0.0, jnp.mean(jnp.square(x32), axes) - jnp.square(mean))
      if not self.is_initializing():
        running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
        running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
    else:
      mean, var = running_mean.value, running_var.value
    return _normalize(x, mean, var, scale, bias, self.activation, self.epsilon).astype(self.dtype)


# What an exported graph computes for an activation, where it differs from ACTIVATIONS': ReLU6
# as one Clip, which the runtimes fuse into the conv before it (jax2onnx writes jax.nn.relu6 as
# Max then Min); the same values.
FUSED_ACTIVATIONS = {jax.nn.relu6: lambda x: jnp.clip(x, 0.0, 6.0)}


class FoldedBatchNormActivation(nn.Module):
  """BatchNorm folded into the conv before it (fold_batch_norm): a per-channel bias, then the
  activation in the form the runtimes fuse."""

  activation: Optional[Callable] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    del train  # a folded model has no batch statistics: inference only
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
    z = x.astype(jnp.float32) + bias
    if self.activation:
      z = FUSED_ACTIVATIONS.get(self.activation, self.activation)(z)
    return z.astype(self.dtype)


class FoldedBatchNorm(nn.Module):
  """A BatchNorm with no conv before it to fold into (Mobile MQA's pre-norm), folded into
  itself: x * scale + bias per channel."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train):
    del train
    features = (x.shape[-1],)
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    return (x.astype(jnp.float32) * scale + bias).astype(self.dtype)


# Jitted: op by op, each layer's shapes compiled their own multiply and rsqrt (V2: 142 compiles).
@functools.partial(jax.jit, static_argnums=1)
def fold_batch_norm(variables, epsilon):
  """{'params', 'batch_stats'} of a model -> {'params'} of the same model built folded: every
  BN's scale / sqrt(var + epsilon) multiplies the output channels of the kernel before it, and
  its bias becomes bias - mean * scale / sqrt(var + epsilon). A BN with no conv before it (its
  running statistics sit directly under its name) keeps that multiplier as its own scale."""

  def fold(params, stats):
    folded = {}
    for name, value in params.items():
      if not isinstance(value, dict):
        folded[name] = value
      elif {"conv", "bn"} <= value.keys():
        bn, running = value["bn"], stats[name]["bn"]
        multiplier = bn["scale"] * lax.rsqrt(running["var"] + epsilon)
        folded[name] = {
          **value,
          "conv": {**value["conv"], "kernel": value["conv"]["kernel"] * multiplier},
          "bn": {"bias": bn["bias"] - running["mean"] * multiplier},
        }
      elif "var" in stats.get(name, {}):
        running = stats[name]
        multiplier = value["scale"] * lax.rsqrt(running["var"] + epsilon)
        folded[name] = {"scale": multiplier, "bias": value["bias"] - running["mean"] * multiplier}
      else:
        folded[name] = fold(value, stats.get(name, {}))
    return folded

  return {"params": fold(variables["params"], variables.get("batch_stats", {}))}


class Conv(nn.Module):
  """A bias-free convolution (BN follows every conv in MobileNets) with a chosen implementation."""

  features: int
  kernel_size: int = 1
  stride: int = 1
  depthwise: bool = False
  impl: str = "xla"
  kernel_init: str = "he_fan_out"
  dtype: Any = jnp.float32
  padding: str = "same"

  @nn.compact
  def __call__(self, x):
    kernel = conv_kernel(self, x.shape[-1]).astype(self.dtype)
    fn = convolutions.conv_function(self.impl, self.kernel_size, self.depthwise)
    return fn(x.astype(self.dtype), kernel, self.stride, self.padding)


def conv_kernel(module, in_features):
  """`module`'s HWIO conv kernel parameter 'kernel' (HW1C when depthwise), float32; `module`
  has features, kernel_size, depthwise and kernel_init fields."""
  k = module.kernel_size
  shape = (k, k, 1, in_features) if module.depthwise else (k, k, in_features, module.features)
  return module.param("kernel", KERNEL_INITS[module.kernel_init][0], shape, jnp.float32)


class ConvBN(nn.Module):
  """Conv -> BatchNorm -> activation (None for the V2 paper's linear bottleneck)."""

  features: int
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  kernel_size: int = 1
  stride: int = 1
  depthwise: bool = False
  activation: Optional[Callable] = None

  @nn.compact
  def __call__(self, x, train):
    x = self.conv(self.features, self.kernel_size, self.stride, self.depthwise, name="conv")(x)
    return self.norm(activation=self.activation, name="bn")(x, train)


def norm_factory(bn_momentum, bn_epsilon, dtype, folded=False, standalone=False):
  """The BN-activation module of every ConvBN, or its folded form; `standalone`: a BN with no
  conv before it, whose folded form keeps a scale."""
  if folded:
    return functools.partial(
      FoldedBatchNorm if standalone else FoldedBatchNormActivation, dtype=dtype
    )
  return functools.partial(
    BatchNormActivation, momentum=bn_momentum, epsilon=bn_epsilon, dtype=dtype
  )


def conv_factory(dtype, impl, kernel_init, padding="same"):
  """The bare Conv with the model-wide settings bound."""
  return functools.partial(Conv, impl=impl, kernel_init=kernel_init, dtype=dtype, padding=padding)


def layer_factory(activation, norm, conv):
  """ConvBN with the model-wide settings bound, so blocks only say what differs per layer."""
  return functools.partial(ConvBN, conv=conv, norm=norm, activation=ACTIVATIONS[activation])
