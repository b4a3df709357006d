"""Bad config values are refused with messages that name the key and the allowed values."""

import json

import pytest

from mobilenet_jax import modes
from mobilenet_jax.config import schema as config_lib
from mobilenet_jax.core import errors
from tests.helpers import load_config, run_launch


def refused(config, *fragments):
  with pytest.raises(errors.ConfigError) as error:
    config_lib.validate(config)
  for fragment in fragments:
    assert fragment in str(error.value)


def test_width_multiplier_must_be_positive():
  for width in (0.0, -0.5):
    config = load_config("mobilenet_v1")
    config.model.width_multiplier = width
    refused(config, "config.model.width_multiplier", "> 0")


def test_resolution_that_collapses_the_feature_map():
  config = load_config("mobilenet_v2")
  config.resolution = 16
  refused(config, "config.resolution=16", "downsample by 32", ">= 32")


def test_unknown_block_type():
  config = load_config("mobilenet_v1")
  config.model.blocks = config.model.blocks + (("fused_mbconv", 1, 64, 1, 1),)
  refused(config, "config.model.blocks[10]", "'fused_mbconv'", "'inverted_residual'")


@pytest.mark.parametrize(
  "key,value,fragment",
  [
    ("training.keep_checkpoints", 0, "delete every checkpoint"),
    ("training.log_every_steps", 0, ">= 1"),
    ("training.checkpoint_every_steps", 0, ">= 1"),
    ("training.eval_every_steps", -1, ">= 0"),
    ("data.max_eval_examples", -5, "0 = the whole split"),
    ("mesh", (("batch", -1),), "no 'data' axis"),
    ("resources.processes", 0, "allowed: >= 1"),
    ("resources.gpus", -1.0, "allowed: >= 0"),
  ],
)
def test_values_that_would_lose_work_or_divide_by_zero(key, value, fragment):
  config = load_config("tiny")
  config.update_from_flattened_dict({key: value})
  with pytest.raises(errors.ConfigError, match=f"config.{key}="):
    config_lib.validate(config)
  with pytest.raises(errors.ConfigError, match=fragment):
    config_lib.validate(config)


def test_unknown_key_with_suggestion():
  config = load_config("mobilenet_v2")
  config.model.unlock()
  config.model.width_multipler = 0.5
  refused(config, "config.model.width_multipler", "did you mean 'width_multiplier'")


def test_wrong_type():
  config = load_config("mobilenet_v2")
  config.model.unlock()
  del config.model.num_classes
  config.model.num_classes = "1000"
  refused(config, "config.model.num_classes", "expected int")


def test_unknown_choice():
  config = load_config("mobilenet_v2")
  config.model.activation = "swish"
  refused(config, "config.model.activation='swish'", "['relu6', 'relu', 'hard_swish', 'gelu']")


def test_config_file_argument():
  config = load_config("mobilenet_v2", "width=0.5,res=160")
  assert (config.model.width_multiplier, config.resolution) == (0.5, 160)
  with pytest.raises(errors.ConfigError, match=r"key one of \['preset', 'res', 'width'\]"):
    load_config("mobilenet_v2", "alpha=0.5")


@pytest.mark.slow
def test_profile_cli_prints_tables_and_json():
  result = run_launch(
    "--config=configs/mobilenet_v2.py",
    "--config.model.width_multiplier=0.75",
    "--config.resolution=160",
    "--mode=profile",
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  summary = json.loads(lines[-1])
  assert summary["madds"] == 107_295_200 and summary["width_multiplier"] == 0.75
  assert summary["resolution"] == 160 and summary["rho"] == round(160 / 224, 4)
  assert all(isinstance(summary[k], int) for k in ("madds", "params", "bn_params"))
  assert any(line.startswith("| block_17 ") for line in lines)


@pytest.mark.slow
def test_cli_unknown_key_and_bad_type():
  result = run_launch(
    "--config=configs/mobilenet_v2.py",
    "--config.model.widht_multiplier=2",
    "--mode=profile",
    timeout=300,
  )
  assert result.returncode != 0
  assert "unknown config key config.model.widht_multiplier" in result.stderr
  assert "did you mean 'width_multiplier'" in result.stderr
  result = run_launch(
    "--config=configs/mobilenet_v2.py", "--config.resolution=big", "--mode=profile", timeout=300
  )
  assert result.returncode != 0 and "config.resolution takes a int" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
  "text,message",
  [
    (None, "no such file"),
    ("def get_config(:\n", "line 1: invalid syntax"),
    ("x = 1\n", "defines no get_config() (see configs/mobilenet_v2.py)"),
  ],
)
def test_a_broken_config_file_is_one_line_naming_it(tmp_path, text, message):
  path = tmp_path / "my_config.py"
  if text is not None:
    path.write_text(text)
  result = run_launch(f"--config={path}", "--mode=profile")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.startswith(f"error: --config={path}: ") and message in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
  "row,fragment",
  [
    (
      ("inverted_residual", 6, 24, 1, 2, {"kernal": 5}),
      "take no option 'kernal'; allowed: ['act', 'kernel', 'se']",
    ),
    (("inverted_residual", 6, 24, 1, 2, {"kernel": 4}), "option kernel=4; allowed: [1, 3, 5, 7]"),
    (("inverted_residual", 6, 24, 1, 2, {"act": "swish"}), "option act='swish'; allowed: "),
    (("separable", 1, 24, 1, 1, {"se": 0.25}), "'separable' blocks take no option 'se'"),
    (("uib", 4, 24, 1, 2, {"kernel": 0}), "a strided UIB needs a depthwise conv"),
    (("uib", 4, 24, 1, 1, [5]), "the sixth value holds per-row options as a dict"),
  ],
)
def test_row_options_are_checked_against_the_block_registry(row, fragment):
  config = load_config("mobilenet_v2")
  config.model.blocks = config.model.blocks + (row,)
  refused(config, "config.model.blocks[8]", fragment)


@pytest.mark.parametrize(
  "name, fragment",
  [
    ("mobilenet_v3_small", "config.model.activation='hard_swish' has no fused int8 kernel"),
    ("mobilenet_v4_conv_small", "pooled_head (config.model.pooled_head_channels=1280)"),
  ],
)
def test_a_layer_quantization_aware_training_cannot_compute_is_named(name, fragment):
  config = load_config(name)
  config.training.int8 = "qat"
  refused(config, "config.training.int8='qat'", fragment)
  config.training.int8, config.model.quantized = "none", True
  refused(config, "config.model.quantized=True", fragment)


def test_a_squeeze_excite_block_is_named_when_quantized():
  config = load_config("mobilenet_v2")
  config.model.quantized = True
  config.model.blocks = config.model.blocks + (("inverted_residual", 6, 24, 1, 1, {"se": 0.25}),)
  refused(config, "block_18/squeeze_excite is not supported by quantization-aware training")
  config.model.blocks = config.model.blocks[:-1]
  config.training.int8 = "post_training"
  refused(config, "config.training.int8='post_training' with config.model.quantized=True")
  config.model.quantized, config.training.int8, config.qat.num_steps = False, "qat", 100
  refused(config, "config.qat.freeze_bn_step=200 is after the fine-tuning's last step")


def test_the_key_reference_lists_every_key_with_its_registrys_names(capsys):
  modes.MODES["keys"].run(None, None)
  rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines()[2:]}
  assert list(rows) == [f"config.{key.name}" for key in config_lib.KEYS]
  assert "['exponential', 'cosine']" in rows["config.schedule.name"]
  assert "['tf1_rmsprop', 'momentum', 'nesterov']" in rows["config.optimizer.name"]
  assert "| placement " in rows["config.resources.gpus"]


def test_base_config_and_the_roles_come_from_the_one_schema():
  flat = config_lib.base_config().to_dict()
  assert flat["model"]["kernel_init"] == "he_fan_out" and flat["data"]["dataset"] == "digits"
  assert config_lib.role("config.model.blocks") == "model"
  assert config_lib.role("config.resources.cpus") == "placement"
  assert config_lib.role("config.wandb.tags") == "bookkeeping"
  assert config_lib.role("config.seed") == "seed"
  assert config_lib.added_keys() == {
    "config.model.pooled_head_channels": 0,
    "config.model.pooled_head_norm": False,
    "config.model.kernel_init": "he_fan_in",
    "config.training.measure_latency": True,
    "config.training.onnx_latency": False,
    "config.training.int8": "none",
    "config.training.int8_calibration_examples": 100,
    "config.model.quantized": False,
    "config.qat.num_steps": 300,
    "config.qat.learning_rate": 0.005,
    "config.qat.freeze_bn_step": 200,
    "config.qat.range_decay": 0.99,
    "config.distill.teacher": "",
    "config.distill.teacher_config": "",
    "config.distill.teacher_classes": "",
    "config.distill.temperature": 1.0,
    "config.distill.weight": 1.0,
    "config.model.padding": "same",
    "config.model.input_mean": (0.5, 0.5, 0.5),
    "config.model.input_std": (0.5, 0.5, 0.5),
    "config.model.stem_fixed_below_width": 0.0,
    "config.data.augment_on_device": False,
    "config.data.pixels_on_device": False,
    "config.data.pixels_in_host_memory": False,
    "config.data.allow_upsampling": False,
    "config.distill.cache": "",
  }
