"""Top-1 of this project's MobileNets beside torchvision's: same architecture, batches and recipe.

  pip install -r benchmarks/requirements.txt
  python benchmarks/accuracy.py --arch=v2 --width=0.35 --res=64 --seeds=0,1,2 \
      --data=../shared/artifacts/datasets/imagenette2_224 --out=runs/accuracy

Per seed, each side trains from scratch: mobilenet_jax through `trainer.train_and_evaluate`
(the loop users run; config `configs/mobilenet_<arch>.py` with the `short` preset unless
--preset says otherwise) and torchvision's model (V1, which torchvision lacks, from its
Conv2dNormActivation parts as in benchmarks/speed.py) with torchvision's own initialisation.
Both read the same grain batches (step t's batch is a function of (seed, t)), take the config's
learning rate at every step, its momentum, coupled L2 (off depthwise kernels, BN and biases),
label smoothing, dropout and BN momentum and epsilon, and are scored on the same validation
images. Results are kept per (side, seed) in OUT/results.json, so a rerun resumes, and printed
as mean ± std per side with their difference; parity means the JAX mean is at least the
reference's mean minus its standard deviation.

--sides=torch_own_input trains torchvision's model on torchvision's own input pipeline instead
(`ImageFolder`, `RandomResizedCrop`, `DataLoader`: `torchvision_batches`), so both pipelines,
not only both models, are compared.

--override key=value (repeatable) changes the recipe of both sides (e.g.
`--override=optimizer.learning_rate=0.05`) and names the point apart; --jax_override changes
the JAX side only and names that side apart, e.g. `--jax_override=model.kernel_init=he_fan_in`.
"""

import argparse
import ast
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import speed  # noqa: E402
from mobilenet_jax import trainer  # noqa: E402
from mobilenet_jax.config import command_line  # noqa: E402
from mobilenet_jax.config import schema as config_lib  # noqa: E402
from mobilenet_jax.core import (
  tables,  # noqa: E402
  tracking,  # noqa: E402
)
from mobilenet_jax.data import (
  pipeline,  # noqa: E402
  sources,  # noqa: E402
)
from mobilenet_jax.train import optim  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDES = ("jax", "torch", "torch_own_input")


def parse_value(text):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def make_config(args, seed, overrides=()):
  config = command_line.load_config_file(
    f"{os.path.join(REPO, speed.CONFIGS[args.arch])}:width={args.width},res={args.res},"
    f"preset={args.preset}"
  )
  config.update_from_flattened_dict(
    {
      "seed": seed,
      "data.dataset": f"folder:{args.data}",
      "model.num_classes": 10,
      "data.batch_size": args.batch,
      "data.eval_batch_size": 125,
      "training.log_every_steps": 50,
      "training.checkpoint_every_steps": 500,
      "wandb.mode": "disabled",
      **dict(overrides),
    }
  )
  train_images = len(sources.load_split(config.data, "train"))
  config.training.num_steps = args.epochs * train_images // args.batch
  return config_lib.validate(config)


def train_jax(config, workdir):
  summary = trainer.train_and_evaluate(config, workdir)
  return {"top1": summary["top1"], "images_per_second": summary["images_per_second"]}


def torch_param_groups(model, weight_decay):
  """Coupled L2 on conv and linear weights, as config.optimizer.weight_decay_exclude's defaults
  say: none on depthwise kernels, BN parameters and biases."""
  import torch

  decayed, free = [], []
  for module in model.modules():
    for name, param in module.named_parameters(recurse=False):
      depthwise = isinstance(module, torch.nn.Conv2d) and module.groups > 1
      is_weight = name == "weight" and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear))
      (decayed if is_weight and not depthwise else free).append(param)
  return [{"params": decayed, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def grain_batches(config):
  """This project's batches (step t's is a function of (seed, t)) as torch tensors: (training
  iterator of (images, labels), evaluation iterable of (images, labels, mask))."""
  import torch

  to_torch = lambda pixels: (
    torch.from_numpy(pipeline.to_float(pixels))
    .permute(0, 3, 1, 2)
    .contiguous(memory_format=torch.channels_last)
  )
  train = (
    (to_torch(images), torch.from_numpy(labels).long())
    for images, labels in pipeline.iterate(
      pipeline.train_batches(sources.load_split(config.data, "train"), config)
    )
  )
  eval_batches, _ = pipeline.eval_batches(sources.load_split(config.data, "val"), config)
  evaluation = (
    (to_torch(images), labels, mask) for images, labels, mask in pipeline.iterate(eval_batches)
  )
  return train, evaluation


def torchvision_batches(config):
  """torchvision's own input on the same folder, as its reference scripts read it: ImageFolder,
  RandomResizedCrop (config's area range, torchvision's aspect range 3/4 to 4/3, a full-size
  decode) and a flip, shuffled by a DataLoader each epoch; evaluation resizes the shorter side to
  resolution / central_crop_fraction and takes the central crop."""
  import numpy as np
  import torch
  from torchvision import datasets, transforms

  folder = config.data.dataset.split(":", 1)[1]
  resolution = config.resolution
  to_model = [
    transforms.ToTensor(),
    transforms.Normalize([0.5] * 3, [0.5] * 3),  # x/127.5 - 1, as pipeline.to_float
  ]
  train_set = datasets.ImageFolder(
    os.path.join(folder, "train"),
    transforms.Compose(
      [
        transforms.RandomResizedCrop(resolution, scale=(config.data.min_crop_area, 1.0)),
        transforms.RandomHorizontalFlip(),
        *to_model,
      ]
    ),
  )
  loader = torch.utils.data.DataLoader(
    train_set,
    batch_size=config.data.batch_size,
    shuffle=True,
    drop_last=True,
    num_workers=os.cpu_count(),
    persistent_workers=True,
    generator=torch.Generator().manual_seed(config.seed),
  )
  train = (
    (images.contiguous(memory_format=torch.channels_last), labels)
    for _ in iter(int, 1)  # epochs without end: the step count decides
    for images, labels in loader
  )
  val_set = datasets.ImageFolder(
    os.path.join(folder, "val"),
    transforms.Compose(
      [
        transforms.Resize(round(resolution / config.data.central_crop_fraction)),
        transforms.CenterCrop(resolution),
        *to_model,
      ]
    ),
  )
  evaluation = (
    (images, labels.numpy(), np.ones(len(labels)))
    for images, labels in torch.utils.data.DataLoader(
      val_set, batch_size=config.data.eval_batch_size, num_workers=os.cpu_count()
    )
  )
  return train, evaluation


def train_torch(config, arch, width, own_input=False):
  """torchvision's model trained on this project's batches, or with `own_input` on
  torchvision's own input pipeline (`torchvision_batches`)."""
  import torch

  if config.optimizer.name not in ("momentum", "nesterov"):
    sys.exit(
      f"error: the torchvision side trains with SGD; config.optimizer.name="
      f"{config.optimizer.name!r} needs --preset=short (or another SGD preset)"
    )
  if own_input and not config.data.dataset.startswith("folder:"):
    sys.exit(f"error: torchvision's own input reads a folder, not --data={config.data.dataset}")
  torch.manual_seed(config.seed)
  torch.set_num_threads(os.cpu_count())
  model = speed.torch_model(arch, width, config.model.dropout_rate, config.model.num_classes)
  for module in model.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      # PyTorch's momentum is the weight of the new batch: 1 - TF's.
      module.momentum, module.eps = 1.0 - config.model.bn_momentum, config.model.bn_epsilon
  model = model.to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(
    torch_param_groups(model, config.optimizer.weight_decay),
    lr=0.0,
    momentum=config.optimizer.momentum,
    nesterov=config.optimizer.name == "nesterov",
  )
  steps_per_epoch = max(len(sources.load_split(config.data, "train")) // config.data.batch_size, 1)
  schedule, _ = optim.learning_rate_schedule(config, steps_per_epoch)
  loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.training.label_smoothing)
  batches, evaluation = (torchvision_batches if own_input else grain_batches)(config)
  num_steps = config.training.num_steps
  model.train()
  start = time.perf_counter()
  for step in range(num_steps):
    images, labels = next(batches)
    for group in opt.param_groups:
      group["lr"] = float(schedule(step))
    loss = loss_fn(model(images), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if (step + 1) % config.training.log_every_steps == 0 or step + 1 == num_steps:
      print(f"torch step {step + 1}/{num_steps} loss {loss.item():.4f}", flush=True)
  images_per_second = num_steps * config.data.batch_size / (time.perf_counter() - start)
  model.eval()
  correct = count = 0.0
  with torch.inference_mode():
    for images, labels, mask in evaluation:
      predicted = model(images).argmax(-1).numpy()
      correct += float(((predicted == labels) * mask).sum())
      count += float(mask.sum())
  return {"top1": correct / count, "images_per_second": images_per_second}


def parse_overrides(items):
  return tuple((k, parse_value(v)) for k, _, v in (o.partition("=") for o in items))


def labelled(name, overrides):
  return name + "".join(f"[{k}={v}]" for k, v in overrides)


def point_name(args):
  return labelled(
    f"{args.arch} {args.width:g}-{args.res} {args.preset}", parse_overrides(args.override)
  )


def summarize(results, args):
  prefix = point_name(args)
  rows, means = [], {}
  for name in sorted({key.split("|")[1] for key in results if key.startswith(prefix + "|")}):
    runs = {
      int(k.split("|")[2]): v for k, v in results.items() if k.startswith(f"{prefix}|{name}|")
    }
    top1 = [100 * runs[s]["top1"] for s in sorted(runs)]
    mean, std = statistics.mean(top1), statistics.stdev(top1) if len(top1) > 1 else 0.0
    means[name] = (mean, std)
    rows.append(
      [
        prefix,
        name,
        len(top1),
        " ".join(f"{t:.1f}" for t in top1),
        f"{mean:.2f} ± {std:.2f}",
        round(statistics.median(r["images_per_second"] for r in runs.values()), 1),
      ]
    )
  print(
    tables.markdown_table(
      ["point", "implementation", "seeds", "top-1 per seed (%)", "mean ± std", "train img/s"], rows
    )
  )
  if "torch" in means:
    ref_mean, ref_std = means["torch"]
    for name, (mean, _) in means.items():
      if name != "torch":
        verdict = "parity" if mean >= ref_mean - ref_std else "BELOW the reference"
        print(
          f"{name} - torch: {mean - ref_mean:+.2f} points ({verdict}: the bar is "
          f"{ref_mean - ref_std:.2f}, torch's mean minus its std)"
        )


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="v2", choices=sorted(speed.CONFIGS))
  parser.add_argument("--width", type=float, default=0.35)
  parser.add_argument("--res", type=int, default=64)
  parser.add_argument("--preset", default="short")
  parser.add_argument("--epochs", type=int, default=10)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument(
    "--sides",
    default="jax,torch",
    help="of jax, torch (torchvision's model on this project's batches), torch_own_input "
    "(torchvision's model on torchvision's own input pipeline)",
  )
  parser.add_argument(
    "--data",
    default=os.path.join(
      os.path.dirname(REPO), "shared", "artifacts", "datasets", "imagenette2_224"
    ),
    help="an image folder with train/ and val/ (10 classes)",
  )
  parser.add_argument(
    "--override",
    action="append",
    default=[],
    help="key=value applied to both sides (names the point apart)",
  )
  parser.add_argument(
    "--jax_override",
    action="append",
    default=[],
    help="key=value applied to the JAX side only (names it apart)",
  )
  parser.add_argument("--out", default=os.path.join(REPO, "runs", "accuracy"))
  args = parser.parse_args()
  unknown = set(args.sides.split(",")) - set(SIDES)
  if unknown:
    parser.error(f"--sides: {', '.join(sorted(unknown))} is not one of {', '.join(SIDES)}")
  os.makedirs(args.out, exist_ok=True)
  results_path = os.path.join(args.out, "results.json")
  results = tracking.read_json(results_path) if os.path.exists(results_path) else {}
  recipe, jax_overrides = parse_overrides(args.override), parse_overrides(args.jax_override)
  prefix = point_name(args)
  for seed in (int(s) for s in args.seeds.split(",")):
    for side in args.sides.split(","):
      overrides = jax_overrides if side == "jax" else ()
      name = labelled(side, overrides)
      key = f"{prefix}|{name}|{seed}"
      if key in results:
        continue
      config = make_config(args, seed, recipe + overrides)
      print(f"== {key}: {config.training.num_steps} steps", flush=True)
      start = time.perf_counter()
      if side == "jax":
        result = train_jax(config, os.path.join(args.out, re.sub(r"[^\w.=-]+", "_", key)))
      else:
        result = train_torch(config, args.arch, args.width, own_input=side == "torch_own_input")
      result["minutes"] = (time.perf_counter() - start) / 60
      results[key] = result
      tracking.write_json(results_path, results)
      print(f"== {key}: top-1 {100 * result['top1']:.2f}%", flush=True)
  summarize(results, args)


if __name__ == "__main__":
  main()
