"""Training and inference speed of this project's MobileNets beside PyTorch's, in one run.

  pip install -r benchmarks/requirements.txt
  python benchmarks/speed.py --points=v1:0.5:128:32,v2:0.5:128:32

For each (arch, alpha, resolution, batch) point: training-step img/s (forward, backward and a
TF1-RMSprop update; jitted with donated state here, eager in PyTorch), inference img/s and
batch-1 latency, for every JAX conv implementation and PyTorch in NCHW and channels_last. Each
is the median of --repeats timings after a warm-up, and the contenders take turns within every
repeat, so a shared machine's slow spells fall on all of them alike. The last row of each point
is the speed-up of the best JAX implementation over the best PyTorch layout (> 1: JAX is
faster; for latency that is PyTorch's milliseconds over JAX's).
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from mobilenet_jax import models, optim, tables, train_step  # noqa: E402
from mobilenet_jax import config as config_lib  # noqa: E402
from mobilenet_jax import runtime  # noqa: E402

CONFIGS = {"v1": "configs/mobilenet_v1.py", "v2": "configs/mobilenet_v2.py"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  return {name: {measure: statistics.median(ts) for measure, ts in measures.items()}
          for name, measures in times.items()}


def load_config(arch, width, res):
  return config_lib.load_config_file(f"{os.path.join(REPO, CONFIGS[arch])}:width={width},res={res}")


def jax_contender(arch, width, res, batch, impl):
  config = load_config(arch, width, res)
  config.model.conv_impl = impl
  config.data.batch_size = batch
  model = models.build_model(config)
  tx, schedule, _ = optim.make_optimizer(
      config, jax.eval_shape(model.init, jax.random.key(0),
                             jnp.zeros(models.input_shape(config)))["params"], 100)
  state0 = train_step.init_state(model, tx, config, jax.random.key(0))
  step = jax.jit(train_step.make_train_step(model, tx, config, schedule), donate_argnums=0)
  images = jax.random.normal(jax.random.key(1), models.input_shape(config, batch))
  labels = jnp.zeros((batch,), jnp.int32)
  rng = jax.random.key(2)
  holder = [state0]

  def train():
    holder[0], metrics = step(holder[0], images, labels, rng)
    jax.block_until_ready(metrics["train/loss"])

  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  one = images[:1]
  variables = lambda: {"params": holder[0].params, "batch_stats": holder[0].batch_stats}
  return {"train": train,
          "infer": lambda: forward(variables(), images).block_until_ready(),
          "latency": lambda: forward(variables(), one).block_until_ready()}


def torch_model(arch, width, dropout_rate):
  """The same architecture in PyTorch, with the config's dropout before the classifier."""
  import torch
  import torchvision
  if arch == "v2":
    return torchvision.models.mobilenet_v2(width_mult=width, dropout=dropout_rate)
  # torchvision has no V1: the paper's Table 1 from torchvision's conv-BN-ReLU6 parts.
  block = torchvision.ops.Conv2dNormActivation
  act = torch.nn.ReLU6
  c = lambda ch: max(int(ch * width), 8)
  layers = [block(3, c(32), 3, 2, activation_layer=act)]
  cin = c(32)
  for ch, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
      (1024, 2), (1024, 1)]:
    layers += [block(cin, cin, 3, stride, groups=cin, activation_layer=act),
               block(cin, c(ch), 1, activation_layer=act)]
    cin = c(ch)
  return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                             torch.nn.Dropout(dropout_rate), torch.nn.Linear(cin, 1000))


def torch_contender(arch, width, res, batch, channels_last):
  import torch
  model = torch_model(arch, width, load_config(arch, width, res).model.dropout_rate)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=fmt)
  images = torch.randn(batch, 3, res, res).to(memory_format=fmt)
  labels = torch.zeros(batch, dtype=torch.long)
  opt = torch.optim.RMSprop(model.parameters(), lr=0.045, alpha=0.9, eps=1.0, momentum=0.9)
  loss_fn = torch.nn.CrossEntropyLoss()

  def train():
    model.train()
    opt.zero_grad(set_to_none=True)
    loss_fn(model(images), labels).backward()
    opt.step()

  def forward(x):
    model.eval()
    with torch.inference_mode():
      model(x)

  one = images[:1].contiguous(memory_format=fmt)
  return {"train": train, "infer": lambda: forward(images), "latency": lambda: forward(one)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--points", default="v1:0.5:128:32,v2:0.5:128:32",
                      help="comma-separated arch:alpha:resolution:batch")
  parser.add_argument("--impls", default="xla,shifted")
  parser.add_argument("--iters", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--no_torch", action="store_true")
  parser.add_argument("--no_huge_pages", action="store_true",
                      help="skip the launcher's glibc huge-page tunable (mobilenet_jax/runtime.py)")
  args = parser.parse_args()
  if not args.no_huge_pages:
    runtime.reexec_with_huge_pages()
  rows = []
  for point in args.points.split(","):
    arch, width, res, batch = point.split(":")
    width, res, batch = float(width), int(res), int(batch)
    contenders = {f"jax {impl}": jax_contender(arch, width, res, batch, impl)
                  for impl in args.impls.split(",")}
    if not args.no_torch:
      for channels_last in (False, True):
        name = "torch channels_last" if channels_last else "torch NCHW"
        contenders[name] = torch_contender(arch, width, res, batch, channels_last)
    results = {name: (batch / t["train"], batch / t["infer"], t["latency"] * 1e3)
               for name, t in time_in_turns(contenders, args.iters, args.repeats).items()}
    best = lambda prefix, i, pick: pick(v[i] for k, v in results.items() if k.startswith(prefix))
    for name, (train, infer, latency) in results.items():
      rows.append([f"{arch} {width}-{res} b{batch}", name, round(train, 1), round(infer, 1),
                   round(latency, 2)])
    if not args.no_torch:
      rows.append([f"{arch} {width}-{res} b{batch}", "speed-up, best jax vs best torch",
                   round(best("jax", 0, max) / best("torch", 0, max), 2),
                   round(best("jax", 1, max) / best("torch", 1, max), 2),
                   round(best("torch", 2, min) / best("jax", 2, min), 2)])
    print(tables.markdown_table(["point", "implementation", "train img/s", "infer img/s",
                                 "batch-1 ms"], rows[-len(results) - 1:]), flush=True)
  print()
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs, "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
  print(tables.markdown_table(["point", "implementation", "train img/s", "infer img/s",
                               "batch-1 ms"], rows))


if __name__ == "__main__":
  main()
