"""The speed benchmark's timing discipline (the speeds themselves live in benchmarks/README.md)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from benchmarks import accuracy as accuracy_benchmark
from benchmarks import input as input_benchmark
from benchmarks import layers as layer_benchmark
from benchmarks import speed
from mobilenet_jax.counting import accounting
from mobilenet_jax.data import device_augment, pipeline, sources
from tests.helpers import ARTIFACTS, REPO, imagenet_sample_folder, load_config, needs_artifacts


def test_contenders_take_turns_within_each_repeat():
  calls = []
  contenders = {
    name: {
      "train": lambda name=name: calls.append((name, "train")),
      "latency": lambda name=name: calls.append((name, "latency")),
    }
    for name in ("jax", "torch")
  }
  medians = speed.time_in_turns(contenders, iters=2, repeats=3)
  # One untimed call opens every turn.
  one_repeat = (
    [("jax", "train")] * 3
    + [("jax", "latency")] * 9
    + [("torch", "train")] * 3
    + [("torch", "latency")] * 9
  )
  assert calls == one_repeat * 3
  assert set(medians) == {"jax", "torch"}
  assert all(seconds > 0 for measures in medians.values() for seconds in measures.values())


@needs_artifacts("datasets", "imagenet_sample_250")
def test_input_benchmark_reads_the_250_sample_images_as_both_splits(tmp_path):
  config = load_config("mobilenet_v2", "res=32")
  config.data.dataset = f"folder:{imagenet_sample_folder(str(tmp_path))}"
  config.data.batch_size = 8
  split = sources.load_split(config.data, "train")
  assert len(split) == len(sources.load_split(config.data, "val")) == 250
  assert input_benchmark.pipeline_images_per_second(pipeline.train_batches(split, config), 1, 3) > 0


@pytest.mark.slow
@needs_artifacts("datasets", "imagenet_sample_250")
def test_input_benchmark_times_torchvision_on_the_same_folder(tmp_path):
  pytest.importorskip("torchvision", reason="PyTorch is in benchmarks/requirements.txt")
  folder = imagenet_sample_folder(str(tmp_path))
  assert input_benchmark.torchvision_images_per_second(folder, 32, 0.25, 8, 3, 0) > 0


@needs_artifacts("datasets", "imagenette2_224")
def test_torchvisions_own_input_shows_the_model_what_this_projects_shows_it(tmp_path):
  """accuracy.py --sides=torch_own_input: torchvision's pipeline scales pixels as ours does and,
  on square images (Imagenette's; on others TF-slim's crop, 0.875 of each side, keeps less of the
  longer one), its evaluation crop (resize, then centre crop) is ours (centre crop, then resize)
  up to resampling."""
  pytest.importorskip("torchvision", reason="PyTorch is in benchmarks/requirements.txt")
  imagenette = ARTIFACTS / "datasets" / "imagenette2_224"
  for split in ("train", "val"):
    for wnid in sorted(os.listdir(imagenette / split))[:2]:
      os.makedirs(tmp_path / split / wnid)
      for name in sorted(os.listdir(imagenette / split / wnid))[:20]:
        os.symlink(imagenette / split / wnid / name, tmp_path / split / wnid / name)
  config = load_config("mobilenet_v2", "res=64")
  config.data.dataset = f"folder:{tmp_path}"
  config.data.batch_size, config.data.eval_batch_size = 8, 40
  train, evaluation = accuracy_benchmark.torchvision_batches(config)
  images, labels = next(train)
  assert tuple(images.shape) == (8, 3, 64, 64) and len(labels) == 8
  assert -1 <= float(images.min()) < 0 < float(images.max()) <= 1
  ((their_images, their_labels, _),) = evaluation
  ((our_images, our_labels, _),) = accuracy_benchmark.grain_batches(config)[1]
  assert (their_labels == our_labels).all()
  same = float((their_images - our_images).abs().mean())
  shifted = float((their_images - our_images.roll(1, 0)).abs().mean())  # another image each
  # Measured: 0.068 (9 levels of 255: a DCT-scaled decode against a full one), 0.52 shifted.
  assert same < 0.1 and shifted > 3 * same


def test_the_crops_mult_adds_are_what_xla_counts_in_the_resize():
  """input.py --sweeps charges a step with the crop on the device crop_madds more mult-adds: the
  resize's two contractions, as XLA compiles them (2 flops a mult-add; the rest is rounding)."""
  for resolution in (64, 224):
    side = speed.store_side(resolution)
    resize = jax.jit(device_augment._resample).lower(
      jnp.zeros((side, side, 3), jnp.uint8),
      jnp.zeros((resolution, side)),
      jnp.zeros((resolution, side)),
    )
    flops = resize.compile().cost_analysis()["flops"]
    assert 1 < flops / (2 * input_benchmark.crop_madds(resolution)) < 1.02


@pytest.mark.slow
def test_the_speed_benchmark_times_a_configs_training_step_with_the_crop_in_it():
  config = load_config("tiny")
  config.data.augment_on_device = True  # its canvases 8/7 of the resolution a side,
  config.data.pixels_on_device = True  # gathered by the step from those on the device
  measures, _ = speed.config_contender(config, 4, "auto", "float32")
  assert speed.time_in_turns({"jax": {"train": measures["train"]}}, 1, 1)["jax"]["train"] > 0


def test_layer_benchmark_takes_every_convolution_with_its_shapes():
  """V1 (the paper's Table 1) at alpha 0.5, 128 px: the stem, then 13 depthwise-pointwise pairs,
  each with its input (batch 1), HWIO kernel and stride."""
  convs = layer_benchmark.conv_layers(load_config("mobilenet_v1", "width=0.5,res=128"))
  assert len(convs) == 27
  assert [(c.layer_type, c.input_shape, c.kernel_shape, c.stride) for c in convs[:4]] == [
    ("conv 3x3", (1, 128, 128, 3), (3, 3, 3, 16), 2),
    ("depthwise 3x3", (1, 64, 64, 16), (3, 3, 1, 16), 1),
    ("conv 1x1", (1, 64, 64, 16), (1, 1, 16, 32), 1),
    ("depthwise 3x3", (1, 64, 64, 32), (3, 3, 1, 32), 2),
  ]
  assert [(c.input_shape, c.kernel_shape) for c in convs[-2:]] == [
    ((1, 4, 4, 512), (3, 3, 1, 512)),
    ((1, 4, 4, 512), (1, 1, 512, 512)),
  ]


@pytest.mark.slow
@pytest.mark.parametrize(
  "arch,name", [("v3l", "mobilenet_v3_large"), ("v3s", "mobilenet_v3_small")]
)
def test_v3_has_torchvisions_parameters(arch, name):
  """torchvision's V3, an independent implementation, has exactly our parameters (PyTorch counts
  BN scale and offset as parameters)."""
  pytest.importorskip("torchvision", reason="PyTorch is in benchmarks/requirements.txt")
  ours = accounting.profile(load_config(name))
  theirs = sum(p.numel() for p in speed.torch_model(arch, 1.0, 0.2).parameters())
  assert ours.params + ours.bn_params == theirs


@pytest.mark.slow
def test_the_compile_profile_attributes_each_compile_to_the_test_that_ran_it(tmp_path):
  (tmp_path / "test_two.py").write_text(
    "import jax\n\n"
    "def test_compiles():\n"
    "  def doubled(x):\n"
    "    return 2 * x\n\n"
    "  jax.jit(doubled)(1.0)\n\n"
    "def test_compiles_nothing():\n"
    "  pass\n"
  )
  # Not this session's xdist worker's name, which would name the file.
  env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
  env["PYTHONPATH"] = str(REPO)
  tests = subprocess.run(
    [sys.executable, "-m", "pytest", "-q", "-p", "benchmarks.compile_profile", "test_two.py"],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
  )
  assert tests.returncode == 0, tests.stdout + tests.stderr
  rows = [json.loads(line) for line in (tmp_path / "compile_profile" / "main.jsonl").open()]
  assert [row["test"] for row in rows] == [
    "test_two.py::test_compiles",
    "test_two.py::test_compiles_nothing",
  ]
  assert [c["function"] for c in rows[0]["compiles"]] == ["jit(doubled)"]
  assert rows[1]["compiles"] == []  # each test's own
  table = subprocess.run(
    [sys.executable, str(REPO / "benchmarks" / "compile_profile.py")],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  ).stdout
  assert table.startswith("2 tests,") and "| `jit(doubled)` | 1 |" in table
