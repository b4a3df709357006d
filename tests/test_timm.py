"""timm checkpoints in Flax: the fixtures' stand-in state dicts (../shared/fixtures/timm/, no
download, no PyTorch) written as safetensors give timm's logits; the MNv4 configs' sizes are
timm's; a checkpoint of another model is refused in one line."""

import importlib.util
import json
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from mobilenet_jax import evaluate
from mobilenet_jax.core import errors
from mobilenet_jax.counting import accounting
from mobilenet_jax.models import importers, mobilenet
from tests.helpers import SAMPLE, SHARED, load_config, needs_artifacts

FIXTURES = SHARED / "fixtures" / "timm"
needs_fixtures = needs_artifacts(root=FIXTURES)
MODELS = (
  "mobilenetv1_100",
  "mobilenetv2_050",
  "mobilenetv3_large_100",
  "tf_mobilenetv3_large_075",
  "mobilenetv4_conv_small_050",
  "mobilenetv4_conv_small",
  "mobilenetv4_conv_medium",
  "mobilenetv4_hybrid_medium",
)


def fixture_checkpoint(name, tmp_path):
  """The fixture's spec, its safetensors file and the timm config pointed at it."""
  sys.path.insert(0, str(FIXTURES))
  from state_dict import make_state_dict

  spec = json.loads((FIXTURES / f"{name}.json").read_text())
  tensors = make_state_dict(spec["state_dict"], spec["seed"], np.load(FIXTURES / spec["bn_stats"]))
  path = tmp_path / "model.safetensors"
  save_file(tensors, str(path))
  config = load_config("timm", name)
  config.init_from = f"timm:{path}"
  return spec, path, config


def imported_logits(config, images):
  model = mobilenet.build_model(config)
  imported = importers.load_for_model(config, model)
  variables = {"params": imported.params, "batch_stats": imported.batch_stats}
  return np.asarray(jax.jit(model.apply)(variables, images.astype(np.float32) / 127.5 - 1.0))


@pytest.mark.slow
@needs_fixtures
@pytest.mark.parametrize("name", MODELS)
def test_timm_fixture_logits_and_parameter_count(name, tmp_path):
  spec, _, config = fixture_checkpoint(name, tmp_path)
  images = np.load(FIXTURES / spec["inputs"])
  expected = np.asarray(spec["logits"])
  if name == "mobilenetv4_hybrid_medium":
    # Its fourth image sits on float32 rounding itself: XLA's and the shifted convolutions give
    # logits 8.2e-5 (of the largest) apart. Computed in float64 it is 8.7e-5 from timm's.
    with jax.enable_x64(True):
      config.model.conv_impl = "xla"
      model = mobilenet.build_model(config).clone(dtype="float64")
      imported = importers.load_for_model(config, model)
      variables = jax.tree.map(
        lambda a: np.asarray(a, np.float64),
        {"params": imported.params, "batch_stats": imported.batch_stats},
      )
      logits = np.asarray(jax.jit(model.apply)(variables, images.astype(np.float64) / 127.5 - 1.0))
  else:
    logits = imported_logits(config, images)
  assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()
  assert (logits.argmax(1) == expected.argmax(1)).all()
  counts = accounting.profile(config)
  assert counts.params + counts.bn_params == spec["params"]


@pytest.mark.parametrize(
  "name, params",
  [
    ("mobilenet_v4_hybrid_medium", 11_074_648),
    ("mobilenet_v4_hybrid_large", 37_764_624),
    ("mobilenet_v4_conv_large", 32_590_864),
  ],
)
def test_new_mnv4_configs_have_timms_parameter_counts(name, params):
  counts = accounting.profile(load_config(name))
  assert counts.params + counts.bn_params == params


def test_attention_matmuls_are_counted_as_their_own_layer_type():
  config = load_config("mobilenet_v4_hybrid_medium")
  by_type = accounting.profile(config).by_type()
  # 4 MQA blocks at 16x16 queries over 8x8 keys (KV stride 2), 4 at 8x8 over 8x8; 4 heads of 64:
  # QK^T and AV each heads * queries * keys * 64 multiply-adds.
  expected = 4 * 2 * 4 * 256 * 64 * 64 + 4 * 2 * 4 * 64 * 64 * 64
  assert by_type[accounting.ATTENTION] == (expected, 0)


@pytest.mark.slow
@needs_fixtures
def test_checkpoint_of_another_width_names_the_first_tensor_and_the_model(tmp_path):
  _, path, config = fixture_checkpoint("mobilenetv2_050", tmp_path)
  wrong = load_config("timm", "mobilenetv2_100")
  wrong.init_from = f"timm:{path}"
  with pytest.raises(errors.WeightsError) as error:
    importers.load_for_model(wrong, mobilenet.build_model(wrong))
  message = str(error.value)
  assert "\n" not in message
  assert "conv_stem.weight is (16, 3, 3, 3) in the file, the model's is (32, 3, 3, 3)" in message
  assert "it looks like timm's mobilenetv2_050" in message


def test_truncated_or_foreign_files_and_unknown_names_are_one_line(tmp_path):
  config = load_config("timm", "mobilenetv2_100")
  cut = tmp_path / "cut.safetensors"
  save_file({"conv_stem.weight": np.zeros((32, 3, 3, 3), np.float32)}, str(cut))
  cut.write_bytes(cut.read_bytes()[:-20])
  foreign = tmp_path / "model.safetensors"
  foreign.write_text("not a safetensors file")
  for path in (cut, foreign):
    config.init_from = f"timm:{path}"
    with pytest.raises(errors.WeightsError, match="is not a whole safetensors file") as error:
      importers.load_for_model(config, mobilenet.build_model(config))
    assert "\n" not in str(error.value)
  with pytest.raises(errors.ConfigError, match="unknown timm model; allowed: .*mobilenetv1_100"):
    load_config("timm", "mobilenetv5")


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="PyTorch is installed")
def test_pytorch_checkpoint_without_pytorch_says_to_use_safetensors(tmp_path):
  config = load_config("timm", "mobilenetv2_100")
  path = tmp_path / "pytorch_model.bin"
  path.write_bytes(b"")
  config.init_from = f"timm:{path}"
  with pytest.raises(errors.WeightsError, match="needs PyTorch to read; use the model's"):
    importers.load_for_model(config, mobilenet.build_model(config))


@pytest.mark.slow
@needs_fixtures
def test_fine_tuning_a_timm_checkpoint_takes_a_new_classifier(tmp_path):
  spec, _, config = fixture_checkpoint("mobilenetv4_conv_small_050", tmp_path)
  config.init_new_classifier = True
  config.model.num_classes = 10
  imported = importers.load_for_model(config, mobilenet.build_model(config))
  assert imported.params["classifier"]["kernel"].shape == (1280, 10)
  stem = np.asarray(imported.params["block_00"]["conv_bn"]["conv"]["kernel"])
  assert stem.shape == (3, 3, 3, 32)  # timm keeps MNv4's stem at 32 below width 1.0


@pytest.mark.slow
@needs_fixtures
@needs_artifacts("datasets", "imagenet_sample_250")
def test_predict_from_a_timm_checkpoint_without_class_names_gives_class_indices(tmp_path, caplog):
  _, _, config = fixture_checkpoint("mobilenetv4_conv_small_050", tmp_path)
  top5 = evaluate.predict(config, str(SAMPLE / "n01440764_tench.JPEG"))
  indices = [int(label.removeprefix("class index ")) for label, _ in top5]
  assert all(label.startswith("class index ") for label, _ in top5)
  assert len(set(indices)) == 5 and all(0 <= i < 1000 for i in indices)
  assert [p for _, p in top5] == sorted((p for _, p in top5), reverse=True)
  assert "note: no class names" in caplog.text
