"""Quantization-aware training: layers that compute in float32 exactly what the exported int8
graph computes, with straight-through gradients (Jacob et al. 2018; Krishnamoorthi 2018, 3.2).

- Weights: the BN-folded kernel, fake-quantized per output channel, symmetric int8 [-127, 127],
  scale max|w| / 127 (onnxruntime's and TFLite's per-channel weights).
- BatchNorm: folded into the conv while training. Until `freeze_bn_step` steps the folded kernel
  uses the running sigma and the output is corrected by sigma_running / sigma_batch, with the
  batch-mean bias, so training sees batch statistics; from then on the running statistics are
  frozen and the layer computes the inference graph itself.
- Activations: fake-quantized per tensor, asymmetric int8 [-128, 127], at the model input, each
  layer's output after its activation, each residual add, the pooled features and the logits:
  the tensors onnxruntime's QDQ quantizer quantizes. Ranges are EMAs of the batch min and max
  (the first batch's own), held in `batch_stats`, so they resume with the checkpoint.
- Evaluation sums as the int8 runtimes do: each layer multiplies the int8 codes of its input
  and weights and sums them in integers (float32 is exact there, below 2^24), adds its bias
  rounded to int32 at input scale x weight scale, and rounds once to float. With float sums
  the 1000-class V2 changed its top-1 on 0.8% of images with the order of the sums alone
  (docs/results.md), near the runtimes' 1% bar.

qwix (google/qwix) fake-quantizes each op's inputs with its own ranges and does not fold BN into
the conv it follows, so its graph is not the folded graph a runtime runs; these layers are.
"""

import dataclasses
import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mobilenet_jax.core import errors
from mobilenet_jax.models import convolutions, layers

ACTIVATION_RANGE = (-128, 127)  # int8 activations (onnxruntime QInt8, TFLite int8)
WEIGHT_LEVELS = 127  # symmetric int8 weights: [-127, 127]
SUPPORTED_ACTIVATIONS = ("relu6", "relu")  # fused into the conv by every int8 runtime
TINY = float(jnp.finfo(jnp.float32).tiny)


def scale_and_zero_point(low, high):
  """onnxruntime's compute_scale_zp for an asymmetric int8 range: widened to hold 0, scale 1
  and zero point 0 for an empty range."""
  low, high = jnp.minimum(low, 0.0), jnp.maximum(high, 0.0)
  qmin, qmax = ACTIVATION_RANGE
  scale = (high - low) / (qmax - qmin)
  empty = scale < TINY
  scale = jnp.where(empty, 1.0, scale)
  return scale, jnp.where(empty, 0.0, jnp.round(qmin - low / scale))


def fake_quantize(x, low, high):
  """QuantizeLinear then DequantizeLinear with the range's scale and zero point; the gradient
  passes where x lies inside the representable range."""
  scale, zero_point = scale_and_zero_point(low, high)
  qmin, qmax = ACTIVATION_RANGE
  quantized = (jnp.clip(jnp.round(x / scale) + zero_point, qmin, qmax) - zero_point) * scale
  inside = jnp.clip(x, (qmin - zero_point) * scale, (qmax - zero_point) * scale)
  return inside + lax.stop_gradient(quantized - inside)


def weight_codes(kernel):
  """Per output channel (the last axis), symmetric: (round(w / s) in [-127, 127], s)."""
  absmax = jnp.max(jnp.abs(kernel), axis=tuple(range(kernel.ndim - 1)))
  scale = absmax / WEIGHT_LEVELS
  scale = jnp.where(scale < TINY, 1.0, scale)
  return jnp.clip(jnp.round(kernel / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS), scale


def fake_quantize_weights(kernel):
  """The kernel's int8 codes times their scales, with a straight-through gradient."""
  codes, scale = weight_codes(kernel)
  return kernel + lax.stop_gradient(codes * scale - kernel)


def integer_layer(x, kernel, bias, apply, input_scale):
  """apply(x, kernel) + bias as the int8 runtimes compute it: the codes' products summed in
  integers, the bias rounded to int32 at input scale x weight scale, one rounding to float."""
  codes, weight_scale = weight_codes(kernel)
  unit = input_scale * weight_scale
  return (apply(jnp.round(x / input_scale), codes) + jnp.round(bias / unit)) * unit


class InputScales:
  """The scale of the tensor the last ActivationQuantizer quantized, while one model call is
  traced: each quantized layer's input (the layers run in sequence; a residual add's older
  input goes to the add, not to a layer)."""

  def __init__(self):
    self.latest = None


class ActivationQuantizer(nn.Module):
  """A tensor's int8 range (EMA of batch min / max) and its fake quantization. Sows its
  (scale, zero point) into 'quantization' in call order: the order the export reads them in."""

  scales: InputScales  # told this tensor's scale, for the layer it feeds
  decay: float = 0.99

  @nn.compact
  def __call__(self, x, train):
    low = self.variable("batch_stats", "low", jnp.zeros, (), jnp.float32)
    high = self.variable("batch_stats", "high", jnp.zeros, (), jnp.float32)
    seen = self.variable("batch_stats", "batches", jnp.zeros, (), jnp.float32)
    if train and not self.is_initializing():
      x_low, x_high = lax.stop_gradient(jnp.min(x)), lax.stop_gradient(jnp.max(x))
      first = seen.value == 0
      low.value = jnp.where(first, x_low, self.decay * low.value + (1 - self.decay) * x_low)
      high.value = jnp.where(first, x_high, self.decay * high.value + (1 - self.decay) * x_high)
      seen.value = seen.value + 1
    scale_zero_point = scale_and_zero_point(low.value, high.value)
    self.sow("quantization", "scale_zero_point", scale_zero_point)
    self.scales.latest = scale_zero_point[0]
    return fake_quantize(x.astype(jnp.float32), low.value, high.value)


class _Kernel(nn.Module):
  """The conv's kernel under the float model's name (conv/kernel), for the folded conv."""

  features: int
  kernel_size: int
  depthwise: bool
  kernel_init: str

  @nn.compact
  def __call__(self, in_features):
    return layers.conv_kernel(self, in_features)


class FoldedQuantizedBatchNorm(nn.Module):
  """BN folded into the conv `conv(x, kernel)` it follows, as the module docstring says; the
  float model's BN variables (bn/scale, bn/bias, bn/mean, bn/var), plus the steps it trained."""

  scales: InputScales  # in evaluation, sum in integers at the input's scale
  activation: Optional[Callable] = None
  momentum: float = 0.99
  epsilon: float = 1e-3
  freeze_bn_step: int = 0
  range_decay: float = 0.99

  @nn.compact
  def __call__(self, x, kernel, conv, train):
    features = (kernel.shape[-1],)
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, features, jnp.float32)
    running_var = self.variable("batch_stats", "var", jnp.ones, features, jnp.float32)
    steps = self.variable("batch_stats", "steps", jnp.zeros, (), jnp.float32)
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    # fold_batch_norm's arithmetic, so the exported kernel is this one to the last bit.
    multiplier = scale * lax.rsqrt(running_var.value + self.epsilon)
    folded_bias = bias - running_mean.value * multiplier
    if not train:
      z = integer_layer(x, kernel * multiplier, folded_bias, conv, self.scales.latest)
    else:
      y = conv(x, fake_quantize_weights(kernel * multiplier))
      z = y + folded_bias
    if train and not self.is_initializing():
      y_float = conv(x, kernel)
      axes = tuple(range(y_float.ndim - 1))
      mean = jnp.mean(y_float, axes)
      var = jnp.maximum(0.0, jnp.mean(jnp.square(y_float), axes) - jnp.square(mean))
      correction = jnp.sqrt(running_var.value + self.epsilon) * lax.rsqrt(var + self.epsilon)
      batch_z = y * correction + (bias - mean * scale * lax.rsqrt(var + self.epsilon))
      frozen = steps.value >= self.freeze_bn_step
      z = jnp.where(frozen, z, batch_z)
      keep = lambda old, new: jnp.where(
        frozen, old, self.momentum * old + (1 - self.momentum) * new
      )
      running_mean.value = keep(running_mean.value, mean)
      running_var.value = keep(running_var.value, var)
      steps.value = steps.value + 1
    if self.activation:
      z = self.activation(z)
    return ActivationQuantizer(self.scales, self.range_decay, name="output")(z, train)


class QuantizedConvBN(nn.Module):
  """layers.ConvBN's variables and function, computed as its int8 export computes it."""

  features: int
  norm: Callable[..., nn.Module]
  impl: str = "xla"
  kernel_init: str = "he_fan_out"
  kernel_size: int = 1
  stride: int = 1
  depthwise: bool = False
  activation: Optional[Callable] = None
  padding: str = "same"

  @nn.compact
  def __call__(self, x, train):
    kernel = _Kernel(
      self.features, self.kernel_size, self.depthwise, self.kernel_init, name="conv"
    )(x.shape[-1])
    conv_fn = convolutions.conv_function(self.impl, self.kernel_size, self.depthwise)
    conv = lambda inputs, w: conv_fn(inputs, w, self.stride, self.padding)
    return self.norm(activation=self.activation, name="bn")(
      x.astype(jnp.float32), kernel, conv, train
    )


class QuantizedDense(nn.Module):
  """nn.Dense's variables (kernel, bias), its kernel fake-quantized per output unit, its output
  fake-quantized; the input is quantized by the layer before."""

  features: int
  kernel_init: Callable
  scales: InputScales  # in evaluation, sum in integers at the input's scale
  range_decay: float = 0.99

  @nn.compact
  def __call__(self, x, train):
    kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    if not train:
      y = integer_layer(x, kernel, bias, jnp.matmul, self.scales.latest)
    else:
      y = x @ fake_quantize_weights(kernel) + bias
    return ActivationQuantizer(self.scales, self.range_decay, name="output")(y, train)


@dataclasses.dataclass(frozen=True)
class QuantizationSettings:
  """config.qat's values that the quantized layers read."""

  freeze_bn_step: int
  range_decay: float


def layer_factory(
  activation, bn_momentum, bn_epsilon, impl, kernel_init, settings, padding, scales
):
  """layers.layer_factory's counterpart: QuantizedConvBN with the model-wide settings bound."""
  norm = functools.partial(
    FoldedQuantizedBatchNorm,
    momentum=bn_momentum,
    epsilon=bn_epsilon,
    freeze_bn_step=settings.freeze_bn_step,
    range_decay=settings.range_decay,
    scales=scales,
  )
  return functools.partial(
    QuantizedConvBN,
    norm=norm,
    impl=impl,
    kernel_init=kernel_init,
    activation=layers.ACTIVATIONS[activation],
    padding=padding,
  )


def check_supported(model_config, plan, pooled_head_channels, where):
  """Raises a one-line errors.ConfigError naming the first layer the int8 path cannot compute;
  `where` names the key that asked for quantization-aware training."""
  if model_config.activation not in SUPPORTED_ACTIVATIONS:
    raise errors.ConfigError(
      f"{where}: config.model.activation={model_config.activation!r} has no fused int8 kernel "
      f"here; quantization-aware training supports {list(SUPPORTED_ACTIVATIONS)}"
    )
  for block in plan:
    if block.act and block.act not in SUPPORTED_ACTIVATIONS:
      raise errors.ConfigError(
        f"{where}: {block.name} uses act={block.act!r}; quantization-aware training supports "
        f"{list(SUPPORTED_ACTIVATIONS)}"
      )
    if block.block == "mobile_mqa" or block.layer_scale:
      raise errors.ConfigError(
        f"{where}: {block.name} ({'Mobile MQA' if block.block == 'mobile_mqa' else 'layer scale'})"
        " is not supported by the int8 path (its attention and layer scale are unsimulated); "
        "the Hybrid MobileNets export in float only"
      )
    if block.se:
      raise errors.ConfigError(
        f"{where}: {block.name}/squeeze_excite is not supported by quantization-aware training "
        "(its gate's int8 product is unsimulated); use rows without 'se'"
      )
  if pooled_head_channels:
    raise errors.ConfigError(
      f"{where}: pooled_head (config.model.pooled_head_channels={pooled_head_channels}) is not "
      "supported by quantization-aware training; set it to 0"
    )


def quantization_points(variables, model, images):
  """[(scale, zero point)] of every quantized tensor, in the order the model computes them."""

  def walk(tree):
    for key, value in tree.items():
      if key == "scale_zero_point":
        yield from value
      else:
        yield from walk(value)

  def points(variables, images):
    _, sown = model.apply(variables, images, mutable=["quantization"])
    return list(walk(sown["quantization"]))  # a list: a dict out of jit comes back key-sorted

  # Jitted: op by op, a MobileNet's hundreds of eager ops each compile (12 s for the tiny model).
  return [(float(s), int(z)) for s, z in jax.jit(points)(variables, images)]


def merge_into(fresh: Any, imported: Any) -> Any:
  """`fresh` (a quantized model's initial batch_stats) with every leaf `imported` (the float
  model's) has replaced by the imported value: ranges and step counters start fresh."""
  if not isinstance(fresh, dict):
    return imported if imported is not None else fresh
  return {k: merge_into(v, imported.get(k) if imported else None) for k, v in fresh.items()}
