"""Training and inference speed of this project's MobileNets beside PyTorch's, in one run.

  pip install -r benchmarks/requirements.txt
  python benchmarks/speed.py --points=v1:0.5:128:32,v2:0.5:128:32
  python benchmarks/speed.py --points=v2:1.0:224:256 --dtype=bfloat16   # on a GPU

For each (arch, alpha, resolution, batch) point: training-step img/s (forward, backward and a
TF1-RMSprop update; jitted with donated state here, eager in PyTorch), inference img/s and
batch-1 latency, for every JAX conv implementation and PyTorch in NCHW and channels_last, on
JAX's default backend (PyTorch on CUDA when that is a GPU). Each is the median of --repeats
timings after a warm-up, and the contenders take turns within every repeat, so a shared
machine's slow spells fall on all of them alike. The last row of each point is the speed-up of
the best JAX implementation over the best PyTorch layout (> 1: JAX is faster; for latency that
is PyTorch's milliseconds over JAX's).

--dtype=bfloat16 is mixed precision on both sides: float32 parameters, BN statistics and
optimizer, bfloat16 convolutions (config.model.dtype here, torch.autocast there).

A second table puts each JAX training step against the memory roofline: the bytes XLA's cost
analysis says the compiled step reads and writes, over the step's time, as a fraction of the
bandwidth that one elementwise pass over a 1 GiB array reaches on the same device.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# PyTorch shares the GPU with JAX in this process: JAX must not claim 75% of it up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mobilenet_jax.config import command_line  # noqa: E402
from mobilenet_jax.core import (
  runtime,  # noqa: E402
  tables,  # noqa: E402
)
from mobilenet_jax.models import mobilenet  # noqa: E402
from mobilenet_jax.train import (
  optim,  # noqa: E402
  train_step,  # noqa: E402
)

CONFIGS = {
  "v1": "configs/mobilenet_v1.py",
  "v2": "configs/mobilenet_v2.py",
  "v3l": "configs/mobilenet_v3_large.py",
  "v3s": "configs/mobilenet_v3_small.py",
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEED_COLUMNS = ["point", "implementation", "train img/s", "infer img/s", "batch-1 ms"]


def time_in_turns(contenders, iters, repeats):
  """{name: {measure: median seconds per call}} for {name: {measure: fn}}.

  Every repeat times each contender's measures once, in turn, rather than one contender's
  repeats back to back. Each turn starts with an untimed call: the first JAX step after
  PyTorch has run takes ~1.5x a steady one (fresh huge pages for memory PyTorch churned), a
  cost that training, one step after another, never pays.
  """
  times = {name: {measure: [] for measure in fns} for name, fns in contenders.items()}
  for _ in range(repeats):
    for name, fns in contenders.items():
      for measure, fn in fns.items():
        calls = iters * 4 if measure == "latency" else iters
        fn()
        start = time.perf_counter()
        for _ in range(calls):
          fn()
        times[name][measure].append((time.perf_counter() - start) / calls)
  return {
    name: {measure: statistics.median(ts) for measure, ts in measures.items()}
    for name, measures in times.items()
  }


def copy_bandwidth(nbytes=1 << 30, calls=10):
  """Bytes per second that one elementwise pass over an nbytes array moves (read plus write):
  the memory roofline this device reaches in practice, measured beside the models."""
  add_one = jax.jit(lambda a: a + 1)
  x = jnp.zeros(nbytes // 4, jnp.float32)
  one_pass = {"copy": {"pass": lambda: add_one(x).block_until_ready()}}
  return 2 * nbytes / time_in_turns(one_pass, iters=1, repeats=calls)["copy"]["pass"]


def load_config(arch, width, res):
  return command_line.load_config_file(
    f"{os.path.join(REPO, CONFIGS[arch])}:width={width},res={res}"
  )


def jax_contender(arch, width, res, batch, impl, dtype):
  """The contender's measures, and the bytes XLA's cost analysis gives for one training step."""
  return config_contender(load_config(arch, width, res), batch, impl, dtype)


def store_side(resolution):
  """The side a resized copy or pixel store keeps for `resolution`: 8/7 of it, so evaluation's
  0.875 central crop is taken at full size."""
  return round(resolution * 8 / 7)


def config_contender(config, batch, impl, dtype):
  """jax_contender for any config (a sweep member's)."""
  config.model.conv_impl = impl
  config.model.dtype = dtype
  config.data.batch_size = batch
  model = mobilenet.build_model(config)
  tx, schedule, _ = optim.make_optimizer(
    config,
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(mobilenet.input_shape(config)))[
      "params"
    ],
    100,
  )
  # Jitted (an eager init compiles each of its small ops on its own), and the inputs drawn by
  # NumPy, which compiles nothing.
  state0 = jax.jit(
    lambda rng: train_step.init_state(model, tx, config, rng),
    compiler_options=mobilenet.INIT_COMPILER_OPTIONS,
  )(jax.random.key(0))
  draws = np.random.default_rng(1)
  images = jnp.asarray(draws.normal(size=mobilenet.input_shape(config, batch)), jnp.float32)
  step_images = images
  if config.data.augment_on_device:  # the step crops a pixel store's canvases
    side = store_side(config.resolution)
    canvases = draws.integers(0, 256, (batch, side, side, 3), np.uint8)
    sizes, places = np.full((batch, 2), side, np.int32), np.arange(batch, dtype=np.int32)
    step_images = (canvases, sizes, places)
  pixels = None
  if config.data.pixels_on_device:  # the step gathers the batch's canvases from 4 batches' own
    rows = draws.integers(0, 256, (4 * batch, side, side, 3), np.uint8)
    pixels = (rows, np.full((4 * batch, 2), side, np.int32))
    step_images = (np.arange(0, 4 * batch, 4, dtype=np.int32), places)
  labels = np.zeros((batch,), np.int32)
  step_images, labels, pixels = jax.device_put((step_images, labels, pixels))  # once, not per call
  rng = jax.random.key(2)
  step = (
    jax.jit(train_step.make_train_step(model, tx, config, schedule), donate_argnums=0)
    .lower(state0, step_images, labels, rng, None, pixels)
    .compile()
  )
  holder = [state0]

  def train():
    holder[0], metrics = step(holder[0], step_images, labels, rng, None, pixels)
    jax.block_until_ready((holder[0], metrics))

  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  one = images[:1]
  variables = lambda: {"params": holder[0].params, "batch_stats": holder[0].batch_stats}
  measures = {
    "train": train,
    "infer": lambda: forward(variables(), images).block_until_ready(),
    "latency": lambda: forward(variables(), one).block_until_ready(),
  }
  return measures, step.cost_analysis()["bytes accessed"]


def torch_model(arch, width, dropout_rate, num_classes=1000):
  """The same architecture in PyTorch, with the config's dropout before the classifier."""
  import torch
  import torchvision

  if arch == "v2":
    return torchvision.models.mobilenet_v2(
      width_mult=width, dropout=dropout_rate, num_classes=num_classes
    )
  if arch in ("v3l", "v3s"):
    # The same layers as configs/mobilenet_v3_*.py; below alpha 1 torchvision also narrows the
    # conv after the pool, which TF-slim's released models keep at 1280 / 1024.
    build = (
      torchvision.models.mobilenet_v3_large
      if arch == "v3l"
      else (torchvision.models.mobilenet_v3_small)
    )
    return build(width_mult=width, dropout=dropout_rate, num_classes=num_classes)
  # torchvision has no V1: the paper's Table 1 from torchvision's conv-BN-ReLU6 parts, initialised
  # as torchvision initialises its MobileNetV2.
  block = torchvision.ops.Conv2dNormActivation
  act = torch.nn.ReLU6
  c = lambda ch: max(int(ch * width), 8)
  layers = [block(3, c(32), 3, 2, activation_layer=act)]
  cin = c(32)
  for ch, stride in (
    [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    + [(512, 1)] * 5
    + [(1024, 2), (1024, 1)]
  ):
    layers += [
      block(cin, cin, 3, stride, groups=cin, activation_layer=act),
      block(cin, c(ch), 1, activation_layer=act),
    ]
    cin = c(ch)
  model = torch.nn.Sequential(
    *layers,
    torch.nn.AdaptiveAvgPool2d(1),
    torch.nn.Flatten(),
    torch.nn.Dropout(dropout_rate),
    torch.nn.Linear(cin, num_classes),
  )
  for module in model.modules():
    if isinstance(module, torch.nn.Conv2d):
      torch.nn.init.kaiming_normal_(module.weight, mode="fan_out")
    elif isinstance(module, torch.nn.Linear):
      torch.nn.init.normal_(module.weight, 0, 0.01)
      torch.nn.init.zeros_(module.bias)
  return model


def torch_contender(arch, width, res, batch, channels_last, dtype, compiled=False):
  """PyTorch on CUDA when JAX runs on a GPU (cuDNN autotuned, as XLA autotunes), else the CPU;
  bfloat16 as AMP: torch.autocast over float32 parameters; `compiled`: the model through
  torch.compile (compiled on the first timed turn's untimed call, once per train/eval mode and
  input shape)."""
  import torch

  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  torch.backends.cudnn.benchmark = True
  model = torch_model(arch, width, load_config(arch, width, res).model.dropout_rate)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(device, memory_format=fmt)
  run_model = torch.compile(model) if compiled else model
  images = torch.randn(batch, 3, res, res, device=device).to(memory_format=fmt)
  labels = torch.zeros(batch, dtype=torch.long, device=device)
  opt = torch.optim.RMSprop(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()
  autocast = lambda: torch.autocast(device, torch.bfloat16, enabled=dtype == "bfloat16")
  wait = torch.cuda.synchronize if device == "cuda" else lambda: None

  def train():
    model.train()
    opt.zero_grad(set_to_none=True)
    with autocast():
      loss = loss_fn(run_model(images), labels)
    loss.backward()
    opt.step()
    wait()

  def forward(x):
    model.eval()
    with torch.inference_mode(), autocast():
      run_model(x)
    wait()

  one = images[:1].contiguous(memory_format=fmt)
  return {"train": train, "infer": lambda: forward(images), "latency": lambda: forward(one)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument(
    "--points",
    default="v1:0.5:128:32,v2:0.5:128:32",
    help="comma-separated arch:alpha:resolution:batch",
  )
  parser.add_argument("--impls", default="xla,shifted")
  parser.add_argument(
    "--dtype",
    default="float32",
    choices=("float32", "bfloat16"),
    help="the convolutions' dtype (mixed precision when bfloat16)",
  )
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument(
    "--torch_compile", action="store_true", help="also PyTorch channels_last through torch.compile"
  )
  parser.add_argument(
    "--no_huge_pages",
    action="store_true",
    help="skip the launcher's glibc huge-page tunable (mobilenet_jax/runtime.py)",
  )
  args = parser.parse_args()
  if args.no_torch and args.torch_compile:
    parser.error("--torch_compile adds a PyTorch contender; it cannot go with --no_torch")
  if not args.no_huge_pages:
    runtime.reexec_with_huge_pages()
  bandwidth = copy_bandwidth()
  rows, roofline_rows = [], []
  for point in args.points.split(","):
    arch, width, res, batch = point.split(":")
    width, res, batch = float(width), int(res), int(batch)
    label = f"{arch} {width}-{res} b{batch}"
    contenders, step_bytes = {}, {}
    for impl in args.impls.split(","):
      contenders[f"jax {impl}"], step_bytes[f"jax {impl}"] = jax_contender(
        arch, width, res, batch, impl, args.dtype
      )
    if not args.no_torch:
      for channels_last in (False, True):
        name = "torch channels_last" if channels_last else "torch NCHW"
        contenders[name] = torch_contender(arch, width, res, batch, channels_last, args.dtype)
      if args.torch_compile:
        contenders["torch channels_last compiled"] = torch_contender(
          arch, width, res, batch, True, args.dtype, compiled=True
        )
    medians = time_in_turns(contenders, args.iters, args.repeats)
    results = {
      name: (batch / t["train"], batch / t["infer"], t["latency"] * 1e3)
      for name, t in medians.items()
    }
    for name, nbytes in step_bytes.items():
      achieved = nbytes / medians[name]["train"]
      roofline_rows.append(
        [
          label,
          name,
          round(nbytes / 1e9, 2),
          round(achieved / 1e9, 1),
          round(achieved / bandwidth, 3),
        ]
      )
    best = lambda prefix, i, pick: pick(v[i] for k, v in results.items() if k.startswith(prefix))
    point_rows = [
      [label, name, round(train, 1), round(infer, 1), round(latency, 2)]
      for name, (train, infer, latency) in results.items()
    ]
    if not args.no_torch:
      point_rows.append(
        [
          label,
          "speed-up, best jax vs best torch",
          round(best("jax", 0, max) / best("torch", 0, max), 2),
          round(best("jax", 1, max) / best("torch", 1, max), 2),
          round(best("torch", 2, min) / best("jax", 2, min), 2),
        ]
      )
    print(tables.markdown_table(SPEED_COLUMNS, point_rows), flush=True)
    rows += point_rows
  print()
  versions = f"jax {jax.__version__}, "
  if not args.no_torch:
    import torch

    versions += f"torch {torch.__version__}, "
  print(
    f"{versions}on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, {args.dtype}, "
    f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}"
  )
  print(tables.markdown_table(SPEED_COLUMNS, rows))
  print(
    f"\nTraining step against the memory roofline (copy bandwidth {bandwidth / 1e9:,.1f} GB/s):"
  )
  print(
    tables.markdown_table(
      [
        "point",
        "implementation",
        "GB per step (XLA)",
        "achieved GB/s",
        "fraction of copy bandwidth",
      ],
      roofline_rows,
    )
  )


if __name__ == "__main__":
  main()
