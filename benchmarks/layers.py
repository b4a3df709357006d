"""Per-convolution speed: this project's implementation beside PyTorch's, layer by layer.

  pip install -r benchmarks/requirements.txt
  python benchmarks/layers.py --point=v1:0.5:128:32

benchmarks/speed.py times whole training steps; this script says which convolutions the
difference comes from. For every convolution of the model at a point (read off the traced
forward pass, as mobilenet_jax/accounting.py counts mult-adds) it times the forward pass alone
and the forward pass with its gradients (kernel, and input but for the first layer, whose input
is the images) of the implementation `--conv_impl` resolves to on this backend, jitted, beside
torch.nn.functional.conv2d in channels_last with autograd, the contenders taking turns as in
speed.py. BN, activations and the optimizer are not in it. The speed-up columns are PyTorch's
milliseconds over JAX's: below 1, the layer is one where JAX loses.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import speed  # noqa: E402
from mobilenet_jax.core import (
  runtime,  # noqa: E402
  tables,  # noqa: E402
)
from mobilenet_jax.counting import accounting  # noqa: E402
from mobilenet_jax.models import convolutions  # noqa: E402

COLUMNS = [
  "layer",
  "type",
  "input",
  "stride",
  "jax fwd ms",
  "torch fwd ms",
  "jax fwd+bwd ms",
  "torch fwd+bwd ms",
  "fwd speed-up",
  "fwd+bwd speed-up",
]


def conv_layers(config):
  """The model's convolutions in order, as accounting.LayerCount (shapes at batch 1)."""
  return [
    layer
    for layer in accounting.profile(config).layers
    if layer.layer_type != accounting.FULLY_CONNECTED
  ]


def jax_measures(layer, batch, impl, input_grad):
  depthwise = layer.layer_type.startswith("depthwise")
  conv = convolutions.conv_function(impl, layer.kernel_shape[0], depthwise)
  x = jax.random.normal(jax.random.key(0), (batch, *layer.input_shape[1:]))
  kernel = jax.random.normal(jax.random.key(1), layer.kernel_shape)
  forward = jax.jit(lambda x, kernel: conv(x, kernel, layer.stride))
  cotangent = jnp.ones_like(forward(x, kernel))

  def forward_backward(x, kernel):
    # The output is returned too: the kernel's gradient does not need it, and XLA would
    # otherwise drop the forward pass that PyTorch's autograd runs.
    if input_grad:
      y, pullback = jax.vjp(forward, x, kernel)
    else:
      y, pullback = jax.vjp(lambda w: forward(x, w), kernel)
    return y, pullback(cotangent)

  forward_backward = jax.jit(forward_backward)
  return {
    "fwd": lambda: forward(x, kernel).block_until_ready(),
    "fwd+bwd": lambda: jax.block_until_ready(forward_backward(x, kernel)),
  }


def torch_measures(layer, batch, input_grad):
  import torch

  _, h, w, in_channels = layer.input_shape
  k, _, group_in, out_channels = layer.kernel_shape
  groups = in_channels // group_in
  # k // 2 pads both sides where TF 'SAME' pads the odd pixel at the end only: the output
  # shapes and the work are the same.
  conv = lambda x, kernel: torch.nn.functional.conv2d(
    x, kernel, stride=layer.stride, padding=k // 2, groups=groups
  )
  x = torch.randn(batch, in_channels, h, w).to(memory_format=torch.channels_last)
  kernel = torch.randn(out_channels, group_in, k, k, requires_grad=True)
  x.requires_grad_(input_grad)
  with torch.no_grad():
    cotangent = torch.ones_like(conv(x, kernel))
  inputs = (x, kernel) if input_grad else (kernel,)

  def forward():
    with torch.no_grad():
      conv(x, kernel)

  return {
    "fwd": forward,
    "fwd+bwd": lambda: torch.autograd.grad(conv(x, kernel), inputs, cotangent),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--point", default="v1:0.5:128:32", help="arch:alpha:resolution:batch")
  parser.add_argument("--conv_impl", default="auto")
  parser.add_argument("--iters", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  runtime.reexec_with_huge_pages()
  import torch

  arch, width, res, batch = args.point.split(":")
  batch = int(batch)
  impl = convolutions.resolve_conv_impl(args.conv_impl)
  rows, totals = [], [0.0] * 4
  for index, layer in enumerate(conv_layers(speed.load_config(arch, float(width), int(res)))):
    contenders = {
      "jax": jax_measures(layer, batch, impl, input_grad=index > 0),
      "torch": torch_measures(layer, batch, input_grad=index > 0),
    }
    ms = speed.time_in_turns(contenders, args.iters, args.repeats)
    times = [ms[name][measure] * 1e3 for measure in ("fwd", "fwd+bwd") for name in contenders]
    totals = [t + u for t, u in zip(totals, times)]
    rows.append(
      [
        layer.scope.rsplit("/", 1)[0],
        layer.layer_type,
        "x".join(map(str, layer.input_shape[1:])),
        layer.stride,
        *(round(t, 2) for t in times),
        round(times[1] / times[0], 2),
        round(times[3] / times[2], 2),
      ]
    )
  rows.append(
    [
      "all convolutions",
      "",
      "",
      "",
      *(round(t, 1) for t in totals),
      round(totals[1] / totals[0], 2),
      round(totals[3] / totals[2], 2),
    ]
  )
  print(
    f"{args.point}, jax {jax.__version__} ({impl}), torch {torch.__version__} "
    f"(channels_last), on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
    f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}"
  )
  print(tables.markdown_table(COLUMNS, rows))


if __name__ == "__main__":
  main()
