"""Convolutions with interchangeable implementations: one function of the same parameters.

Kernels are HWIO, (k, k, C_in, C_out), depthwise (k, k, 1, C). Padding is config.model.padding:
'same' is TF 'SAME', as in the papers' TF code and its released checkpoints; 'symmetric' is
PyTorch's k // 2 on both sides, as timm's PyTorch-trained weights expect. Which implementation
runs is a speed choice only:

- 'xla': `lax.conv_general_dilated` for everything, depthwise via `feature_group_count`.
- 'shifted': depthwise as k*k shifted multiply-adds, 1x1 as a matmul, both with hand-written
  VJPs, and a full conv over an RGB image (the stem) as broadcast multiply-adds in inference.
  XLA's CPU lowering of grouped convolutions, and autodiff's backward of these forms, are
  slower (benchmarks/README.md).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def resolve_conv_impl(name, backend=None):
  """Maps 'auto' to the implementation measured fastest on the backend."""
  if name != "auto":
    return name
  backend = backend or jax.default_backend()
  # Measured (benchmarks/README.md): on CPU the shifted forms train ~11x faster than XLA's
  # convolutions; on an H100 XLA's (cuDNN) train 1.5x faster than them. TPU is unmeasured and
  # keeps XLA's native convolutions too.
  return "shifted" if backend == "cpu" else "xla"


PADDINGS = ("same", "symmetric")


def same_padding(size, kernel_size, stride):
  """TF 'SAME': output ceil(size / stride), the odd pixel of padding at the end."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel_size - size, 0)
  return out, (total // 2, total - total // 2)


def window_padding(size, kernel_size, stride, padding):
  """(output size, (pad before, pad after)) along one axis for config.model.padding."""
  if padding == "same":
    return same_padding(size, kernel_size, stride)
  pad = kernel_size // 2  # PyTorch / timm: k // 2 both sides (odd kernels)
  return (size + 2 * pad - kernel_size) // stride + 1, (pad, pad)


def conv_xla(x, kernel, stride, padding="same"):
  k = kernel.shape[0]
  pads = [window_padding(size, k, stride, padding)[1] for size in x.shape[1:3]]
  return lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    pads,
    dimension_numbers=_DIMENSIONS,
    feature_group_count=x.shape[-1] // kernel.shape[2],
  )


def _windows(padded, k, stride, out_h, out_w):
  """The k*k strided (out_h, out_w) windows of a padded NHWC input, tap by tap."""
  n, _, _, c = padded.shape
  for i in range(k):
    for j in range(k):
      yield (
        i,
        j,
        lax.slice(
          padded,
          (0, i, j, 0),
          (n, i + (out_h - 1) * stride + 1, j + (out_w - 1) * stride + 1, c),
          (1, stride, stride, 1),
        ),
      )


def _shifted_correlation(padded, kernel, stride, out_h, out_w):
  out = None
  for i, j, window in _windows(padded, kernel.shape[0], stride, out_h, out_w):
    term = window * kernel[i, j, 0]
    out = term if out is None else out + term
  return out


def channel_sums(*arrays):
  """Per-channel sums of NHWC arrays, computed in one pass over them.

  XLA:CPU reduces a (N, H, W, C) array over (0, 1, 2) several times slower than over one axis,
  and over W faster than over H or N (benchmarks/README.md); one variadic reduce over W reads
  all operands once (the depthwise kernel gradient's nine taps share their input), then the
  small (N, H, C) sums finish it.
  """
  zeros = tuple(jnp.zeros((), a.dtype) for a in arrays)
  partial = lax.reduce(arrays, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)), (2,))
  return jnp.stack([jnp.sum(p, axis=(0, 1)) for p in partial])


def _window_geometry(x_shape, k, stride, padding):
  _, h, w, _ = x_shape
  (out_h, pad_h), (out_w, pad_w) = (window_padding(n, k, stride, padding) for n in (h, w))
  return out_h, out_w, ((0, 0), pad_h, pad_w, (0, 0))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_shifted(x, kernel, stride, padding="same"):
  """Depthwise conv as a sum of k*k strided windows of the padded input times one kernel tap."""
  out_h, out_w, pads = _window_geometry(x.shape, kernel.shape[0], stride, padding)
  return _shifted_correlation(jnp.pad(x, pads), kernel, stride, out_h, out_w)


def _depthwise_shifted_fwd(x, kernel, stride, padding):
  return depthwise_shifted(x, kernel, stride, padding), (x, kernel)


def _phase_taps(size, k, stride, pad_low):
  """Per input phase p (the positions stride*u + p), the (tap, output offset) pairs reaching it.

  Input position stride*u + p meets tap i at output u + d, d = (p + pad_low - i) / stride,
  when that division is exact.
  """
  return [
    [(i, (p + pad_low - i) // stride) for i in range(k) if (p + pad_low - i) % stride == 0]
    for p in range(min(stride, size))
  ]


def _depthwise_input_grad(grad, kernel, stride, x_shape, pads):
  """The output gradient correlated with the flipped kernel, one input phase at a time.

  Dilating the gradient by the stride and correlating at stride 1 would multiply zeros: at
  stride 2 each 3x3 tap reaches one phase of four, so the phases together cost 9/4 of a
  full-resolution tap sum instead of 9 (benchmarks/README.md). The phases are interleaved by
  a stack and a reshape that XLA fuses into one pass (at stride 1, one phase: no-ops). Every
  phase has a tap since the kernel is at least as wide as the stride (3 against 1 or 2).
  """
  n, h, w, c = x_shape
  k = kernel.shape[0]
  rows, cols = (_phase_taps(size, k, stride, pad[0]) for size, pad in zip((h, w), pads[1:3]))
  phase_h, phase_w = -(-h // stride), -(-w // stride)

  def grad_pad(phases, phase_size, out):
    offsets = [d for taps in phases for _, d in taps]
    return max(0, -min(offsets)), max(0, phase_size - 1 + max(offsets) - (out - 1))

  (low_h, high_h), (low_w, high_w) = (
    grad_pad(rows, phase_h, grad.shape[1]),
    grad_pad(cols, phase_w, grad.shape[2]),
  )
  padded = jnp.pad(grad, ((0, 0), (low_h, high_h), (low_w, high_w), (0, 0)))

  def phase(row_taps, col_taps):
    # Windows in increasing offset, the order of memory and of the flipped kernel: at stride 1
    # the sums are bit-identical to correlating the padded gradient with kernel[::-1, ::-1].
    return functools.reduce(
      jnp.add,
      [
        lax.slice(
          padded,
          (0, low_h + d_h, low_w + d_w, 0),
          (n, low_h + d_h + phase_h, low_w + d_w + phase_w, c),
        )
        * kernel[i, j, 0]
        for i, d_h in reversed(row_taps)
        for j, d_w in reversed(col_taps)
      ],
    )

  phases = jnp.stack([jnp.stack([phase(r, q) for q in cols], axis=3) for r in rows], axis=2)
  interleaved = phases.reshape(n, phase_h * len(rows), phase_w * len(cols), c)
  return interleaved[:, :h, :w]


def _depthwise_shifted_bwd(stride, padding, residuals, grad):
  """Autodiff of the windows is ~9x the forward's cost on CPU; these two passes cost ~1x each.

  d/dx: `_depthwise_input_grad`. d/dkernel: each tap's window of the padded input times the
  gradient, summed per channel for all taps in one pass.
  """
  x, kernel = residuals
  k = kernel.shape[0]
  out_h, out_w, pads = _window_geometry(x.shape, k, stride, padding)
  grad_x = _depthwise_input_grad(grad, kernel, stride, x.shape, pads)
  products = [
    (window * grad).astype(jnp.float32)
    for _, _, window in _windows(jnp.pad(x, pads), k, stride, out_h, out_w)
  ]
  grad_kernel = channel_sums(*products).reshape(k, k, 1, -1)
  return grad_x, grad_kernel.astype(kernel.dtype)


depthwise_shifted.defvjp(_depthwise_shifted_fwd, _depthwise_shifted_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def pointwise_matmul(x, kernel, stride, padding="same"):
  """1x1 conv as a matmul; with k = 1 neither padding pads, so a stride is a plain subsample."""
  del padding
  if stride > 1:
    x = x[:, ::stride, ::stride]
  return jnp.dot(x, kernel[0, 0])


def _pointwise_matmul_fwd(x, kernel, stride, padding):
  return pointwise_matmul(x, kernel, stride, padding), (x, kernel)


def _pointwise_matmul_bwd(stride, padding, residuals, grad):
  """Autodiff lets XLA:CPU fuse the kernel gradient's transpose into the producer of `grad`
  (BN's backward), writing it column by column; contracting the pixels of `grad` against the
  pixels of x keeps both operands in their own layout (benchmarks/README.md)."""
  x, kernel = residuals
  sub = x[:, ::stride, ::stride]
  grad_2d = grad.reshape(-1, grad.shape[-1])
  grad_kernel = lax.dot_general(grad_2d, sub.reshape(-1, sub.shape[-1]), (((0,), (0,)), ((), ())))
  grad_sub = jnp.dot(grad, kernel[0, 0].T)
  # Back onto the strided pixels: interior padding spreads them, end padding restores the size.
  spread = [
    (0, size - ((out - 1) * stride + 1), stride - 1)
    for size, out in zip(x.shape[1:3], grad.shape[1:3])
  ]
  grad_x = lax.pad(grad_sub, jnp.zeros((), grad_sub.dtype), [(0, 0, 0), *spread, (0, 0, 0)])
  return grad_x, grad_kernel.T[None, None].astype(kernel.dtype)


pointwise_matmul.defvjp(_pointwise_matmul_fwd, _pointwise_matmul_bwd)


# Measured in isolation (benchmarks/README.md): 3x3 over 3 channels, 27 terms, as broadcast
# multiply-adds takes 0.4-0.7x XLA:CPU's convolution; over 8 channels, 72 terms, 1.9x.
MAX_BROADCAST_TERMS = 27


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_broadcast(x, kernel, stride, padding="same"):
  """A full conv as k*k*C_in window channels times kernel rows, when that is at most
  MAX_BROADCAST_TERMS terms (an RGB stem's 3x3); XLA's convolution otherwise.

  Differentiated, it is XLA's convolution and its autodiff: the broadcast form speeds up
  inference only (benchmarks/README.md).
  """
  k, _, in_features, _ = kernel.shape
  if k * k * in_features > MAX_BROADCAST_TERMS:
    return conv_xla(x, kernel, stride, padding)
  out_h, out_w, pads = _window_geometry(x.shape, k, stride, padding)
  padded = jnp.pad(x, pads)
  # Per input channel, a depthwise correlation whose one-channel windows broadcast against
  # the kernel's output rows.
  return functools.reduce(
    jnp.add,
    [
      _shifted_correlation(padded[..., c : c + 1], kernel[:, :, c : c + 1], stride, out_h, out_w)
      for c in range(in_features)
    ],
  )


def _conv_broadcast_fwd(x, kernel, stride, padding):
  return conv_xla(x, kernel, stride, padding), (x, kernel)


def _conv_broadcast_bwd(stride, padding, residuals, grad):
  return jax.vjp(functools.partial(conv_xla, stride=stride, padding=padding), *residuals)[1](grad)


conv_broadcast.defvjp(_conv_broadcast_fwd, _conv_broadcast_bwd)


def _shifted(kernel_size, depthwise):
  if depthwise:
    return depthwise_shifted
  return pointwise_matmul if kernel_size == 1 else conv_broadcast


# config.model.conv_impl ('auto' resolves to one): (kernel size, depthwise) -> the conv function
# fn(x, kernel, stride, padding).
CONV_IMPLS = {"xla": lambda kernel_size, depthwise: conv_xla, "shifted": _shifted}


def conv_function(impl, kernel_size, depthwise):
  return CONV_IMPLS[impl](kernel_size, depthwise)
