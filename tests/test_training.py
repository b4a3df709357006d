"""The real train_and_evaluate on the embedded digits data, with a tiny config."""

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from mobilenet_jax import evaluate, trainer
from mobilenet_jax.config import workdir as workdir_lib
from mobilenet_jax.core import errors, tracking
from mobilenet_jax.data import pipeline
from mobilenet_jax.models import mobilenet
from mobilenet_jax.sweeps import report
from mobilenet_jax.train import checkpointing, optim, train_step
from tests.helpers import (
  REPO,
  SAME_CURVE_RATE,
  TINY_OVERRIDES,
  assert_same_loss_curve,
  config_flags,
  final_params,
  launch,
  load_config,
  metrics,
  tiny_config,
)

# Whole training runs, exports, imported weights or several processes: not the fast tier.
pytestmark = pytest.mark.slow


def test_learns_digits_and_writes_every_file(tmp_path):
  workdir = str(tmp_path / "run")
  summary = trainer.train_and_evaluate(tiny_config(**{"wandb.mode": "offline"}), workdir)
  losses = [m["train/loss"] for m in metrics(workdir) if "train/loss" in m]
  assert np.mean(losses[-2:]) < 0.7 * losses[0]
  assert summary["top1"] > 0.5  # 10 classes: chance is 0.1
  assert summary["eval_count"] == 360  # every validation example exactly once
  assert summary["status"] == "finished" and summary["steps"] == 150
  for key in (
    "madds",
    "params",
    "width_multiplier",
    "resolution",
    "top5",
    "ema_top1",
    "images_per_second",
  ):
    assert summary[key] is not None
  assert 0 <= summary["input_wait_fraction"] < 1
  assert json.load(open(os.path.join(workdir, "config.json")))["resolution"] == 16
  assert any("eval/top1" in m for m in metrics(workdir))
  runs = list(pathlib.Path(workdir, "wandb").glob("offline-run-*"))
  assert len(runs) == 1 and runs[0].name.endswith(summary["wandb_run_id"])

  # Relaunching a finished workdir reports it and changes nothing.
  before = pathlib.Path(workdir, "metrics.jsonl").read_text()
  assert trainer.train_and_evaluate(tiny_config(), workdir)["top1"] == summary["top1"]
  assert pathlib.Path(workdir, "metrics.jsonl").read_text() == before


def tf1_rmsprop_numpy(params, grads_per_step, lrs, decay=0.9, momentum=0.9, eps=1.0):
  """TF1 ApplyRMSProp, transcribed: ms starts at 1; lr multiplies the momentum increment."""
  var, ms, mom = params.copy(), np.ones_like(params), np.zeros_like(params)
  for grad, lr in zip(grads_per_step, lrs):
    ms += (grad**2 - ms) * (1 - decay)
    mom = mom * momentum + lr * grad / np.sqrt(ms + eps)
    var -= mom
  return var


def test_tf1_rmsprop_matches_numpy_across_a_learning_rate_change():
  config = tiny_config(
    **{
      "optimizer.weight_decay": 0.0,
      "schedule.decay_rate": 0.5,
      "schedule.decay_epochs": 1.0,
      "optimizer.learning_rate": 0.1,
      "data.batch_size": 64,
    }
  )
  params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(5,)), jnp.float32)}
  tx, schedule, _ = optim.make_optimizer(config, params, steps_per_epoch=3)
  grads = [np.random.default_rng(i + 1).normal(size=(5,)).astype(np.float32) for i in range(7)]
  state, p = tx.init(params), params
  for grad in grads:
    updates, state = tx.update({"w": jnp.asarray(grad)}, state, p)
    p = optax.apply_updates(p, updates)
  lrs = [0.1 * 0.5 ** (step // 3) for step in range(7)]  # staircase: halves after steps 3, 6
  assert [float(schedule(s)) for s in range(7)] == pytest.approx(lrs)
  expected = tf1_rmsprop_numpy(np.asarray(params["w"]), grads, lrs)
  np.testing.assert_allclose(p["w"], expected, rtol=1e-6, atol=1e-7)


def test_warmup_then_cosine_schedule():
  config = tiny_config(
    **{
      "schedule.name": "cosine",
      "schedule.warmup_epochs": 2.0,
      "optimizer.learning_rate": 0.09,
      "optimizer.reference_batch_size": 32,
      "data.batch_size": 64,
      "training.num_steps": 110,
    }
  )
  schedule, peak = optim.learning_rate_schedule(config, steps_per_epoch=5)
  assert peak == pytest.approx(0.18)  # 0.09 per 32 images, scaled to 64
  assert [float(schedule(s)) for s in (0, 5, 10)] == pytest.approx([0.0, 0.09, 0.18])
  # Cosine over the 100 steps after warmup: half way it is half the peak, at the end zero.
  assert [float(schedule(s)) for s in (60, 110)] == pytest.approx([0.09, 0.0], abs=1e-7)


def test_label_smoothing_and_ema_follow_their_tf_definitions():
  logits, labels = jnp.log(jnp.asarray([[0.7, 0.2, 0.1]])), jnp.asarray([0])
  # Smoothed target: (1 - 0.3) one-hot + 0.3 / 3 everywhere.
  expected = -(0.8 * np.log(0.7) + 0.1 * np.log(0.2) + 0.1 * np.log(0.1))
  assert float(train_step.cross_entropy(logits, labels, 3, 0.3)[0]) == pytest.approx(expected)
  ema, new = {"w": jnp.asarray(1.0)}, {"w": jnp.asarray(0.0)}
  # tf.train.ExponentialMovingAverage(0.999, num_updates): min(0.999, (1 + t) / (10 + t)).
  assert float(train_step.ema_update(ema, new, 0, 0.999)["w"]) == pytest.approx(0.1)
  assert float(train_step.ema_update(ema, new, 10**6, 0.999)["w"]) == pytest.approx(0.999)


def test_diverging_run_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / "nan")
  config = tiny_config(
    **{
      "optimizer.learning_rate": 1e30,
      "training.num_steps": 20,
      "training.log_every_steps": 10,
      "training.checkpoint_every_steps": 1,
    }
  )
  with pytest.raises(errors.TrainingError, match=r"at step (\d+); stopped") as error:
    trainer.train_and_evaluate(config, workdir)
  failed_step = int(error.value.args[0].split("at step ")[1].split(";")[0])
  step, params = final_params(workdir)
  assert step == failed_step - 1
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


def test_weight_decay_mask_excludes_depthwise_bn_and_biases():
  config = load_config("mobilenet_v2", "width=0.35,res=32")
  model = mobilenet.build_model(config)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  mask = optim.weight_decay_mask(params, config.optimizer.weight_decay_exclude)
  assert mask["block_02"]["expand"]["conv"]["kernel"] is True
  assert mask["block_02"]["depthwise"]["conv"]["kernel"] is False
  assert mask["block_02"]["depthwise"]["bn"]["scale"] is False
  assert mask["classifier"]["kernel"] is True and mask["classifier"]["bias"] is False
  _, _, derived = optim.make_optimizer(config, params, 10)
  depthwise = sum(
    b["depthwise"]["conv"]["kernel"].size for k, b in params.items() if "depthwise" in b
  )
  assert derived["optimizer/undecayed_params"] > depthwise > 0


def test_unknown_preset_and_dataset_are_refused(tmp_path):
  with pytest.raises(
    errors.ConfigError,
    match=r"allowed presets: \['modern', 'paper_v1', 'paper_v2', 'paper_v3', 'short'\]",
  ):
    load_config("mobilenet_v2", "preset=fast")
  with pytest.raises(
    errors.DataError, match="allowed: 'digits', 'glyphs', 'folder:PATH', 'tfds:NAME'"
  ):
    trainer.train_and_evaluate(tiny_config(**{"data.dataset": "mnist"}), str(tmp_path / "x"))


@pytest.mark.parametrize(
  "kind",
  [
    "float",
    "quantization_aware",
    "crops_on_the_device",
    pytest.param("distilled", marks=pytest.mark.xdist_group("tiny_teacher")),
  ],
)
def test_sigterm_then_resume_ends_bitwise_equal_with_one_wandb_run(
  tmp_path, monkeypatch, caplog, kind, request
):
  # A teacher is read again from its weights on resume; half of the loss is its.
  teacher = (
    {"distill.teacher": f"workdir:{request.getfixturevalue('tiny_teacher')[1]}"}
    if kind == "distilled"
    else {}
  )
  config = tiny_config(
    **teacher,
    **{
      "distill.weight": 0.5,
      "model.quantized": kind == "quantization_aware",  # ranges, BN-freeze counters resume
      "data.augment_on_device": kind == "crops_on_the_device",  # boxes drawn from the step
      "qat.freeze_bn_step": 5,
      "wandb.mode": "offline",
      "training.num_steps": 20,
      "training.log_every_steps": 5,
      "training.checkpoint_every_steps": 1000,
    },
  )
  reached, steps = checkpointing.Preemption.reached, []

  def sigterm_after_step_8(self, sync_point):
    steps.append(sync_point)
    if len(steps) == 8:
      os.kill(os.getpid(), signal.SIGTERM)  # the real signal, through the loop's handler
    return reached(self, sync_point)

  monkeypatch.setattr(checkpointing.Preemption, "reached", sigterm_after_step_8)
  interrupted, straight = str(tmp_path / "interrupted"), str(tmp_path / "straight")
  # With the crops on the device, the interrupted run holds its pixels there (the host sends
  # indices), and resumes with them in the host's memory (it gathers canvases): both end bitwise
  # where the host's canvases read from the source take the straight run.
  on_device, in_memory = config.copy_and_resolve_references(), config.copy_and_resolve_references()
  on_device.data.pixels_on_device = in_memory.data.pixels_in_host_memory = (
    kind == "crops_on_the_device"
  )
  summary = trainer.train_and_evaluate(on_device, interrupted)
  assert summary["status"] == "preempted" and summary["steps"] == 8
  monkeypatch.undo()
  assert trainer.train_and_evaluate(in_memory, interrupted)["status"] == "finished"
  assert "Resumed" in caplog.text
  trainer.train_and_evaluate(config, straight)

  step_a, params_a = final_params(interrupted)
  step_b, params_b = final_params(straight)
  assert step_a == step_b == 20
  for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
    np.testing.assert_array_equal(a, b)
  runs = list(pathlib.Path(interrupted, "wandb").glob("offline-run-*"))
  assert len({run.name.rsplit("-", 1)[1] for run in runs}) == 1, runs
  logged = [m["step"] for m in metrics(interrupted) if "train/loss" in m]
  assert logged == sorted(set(logged)) == [5, 10, 15, 20]  # nothing logged twice


def test_the_train_step_compiles_once_per_run_and_once_on_resume(tmp_path):
  """Counted from JAX's own trace events (jax.monitoring), not by patching the library."""
  traces = []

  def count(event, duration, **details):
    if event == "/jax/core/compile/jaxpr_trace_duration" and details["fun_name"] == "train_step":
      traces.append(duration)

  workdir = str(tmp_path / "run")
  every = {
    "training.log_every_steps": 1,
    "training.eval_every_steps": 2,
    "training.checkpoint_every_steps": 2,
  }
  config = tiny_config(**{"training.num_steps": 4, **every})
  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    trainer.train_and_evaluate(config, workdir)
    assert len(traces) == 1
    (tmp_path / "run" / "summary.json").unlink()
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "4")
    trainer.train_and_evaluate(config, workdir)  # resumes at step 2 from a restored state
    assert len(traces) == 2
  finally:
    jax.monitoring.unregister_event_duration_listener(count)


def test_a_run_waiting_for_its_input_says_so_in_its_metrics_and_summary(tmp_path, monkeypatch):
  crop = pipeline.random_resized_crop

  def slow_crop(*args):
    time.sleep(0.005)  # 64 images on two threads: 0.16 s a batch against a step of milliseconds
    return crop(*args)

  monkeypatch.setattr(pipeline, "random_resized_crop", slow_crop)
  # The pipeline fills its buffer of 4 batches while the step compiles: the first two intervals
  # draw on it (measured on a loaded machine: 0.12, 0.05, 0.16, 0.82 at 8 steps logged every 2).
  config = tiny_config(
    **{"training.num_steps": 16, "training.log_every_steps": 4, "data.batch_size": 64}
  )
  summary = trainer.train_and_evaluate(config, str(tmp_path / "run"))
  waits = [
    m["train/input_wait_fraction"]
    for m in metrics(str(tmp_path / "run"))
    if "train/input_wait_fraction" in m
  ]
  assert len(waits) == 4 and waits[-1] > 0.8 and summary["input_wait_fraction"] > 0.8


def test_eight_devices_give_one_devices_loss_curve(tmp_path):
  """Eight (fake) devices in a process started for them, one device here, side by side. Two
  processes over gloo are checked where Ray places them (test_ray_launcher.py)."""
  overrides = {
    **TINY_OVERRIDES,
    "training.num_steps": 10,
    "training.log_every_steps": 1,
    "optimizer.learning_rate": SAME_CURVE_RATE,
  }
  eight = launch(
    str(tmp_path / "eight"),
    *config_flags(overrides),
    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
  )
  assert jax.device_count() == 1
  one = trainer.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "one"))
  output = eight.communicate(timeout=300)[0]
  assert eight.returncode == 0, output
  losses = {
    name: [m["train/loss"] for m in metrics(str(tmp_path / name)) if "train/loss" in m]
    for name in ("one", "eight")
  }
  summary = json.load(open(tmp_path / "eight" / "summary.json"))
  assert summary["devices"] == 8 and one["devices"] == 1
  assert_same_loss_curve(losses["eight"], losses["one"])

  # The checkpoint written on 8 devices restores on this process's single device.
  restored = evaluate.checkpoint(tiny_config(), str(tmp_path / "eight"))
  assert restored["step"] == 10 and restored["count"] == summary["eval_count"] == 360
  assert restored["top1"] == pytest.approx(summary["top1"], abs=1 / 360)


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path, caplog):
  path = tmp_path / "metrics.jsonl"
  good = '{"step": 25, "train/loss": 2.0}\n{"step": 50, "train/loss": 1.5}\n'
  path.write_text(good + '{"st')
  writer = tracking.MetricWriter(str(tmp_path), tiny_config(), {})
  assert writer.last_logged == 50
  assert path.read_text() == good
  assert "metrics.jsonl ended in a partial line (4 bytes" in caplog.text
  path.write_text(good + '{"step": 75}')  # whole but for its newline: kept
  assert tracking.MetricWriter(str(tmp_path), tiny_config(), {}).last_logged == 75
  assert path.read_text() == good + '{"step": 75}\n'


def test_a_refused_run_leaves_nothing_and_a_workdir_without_checkpoints_takes_a_new_config(
  tmp_path,
):
  workdir = tmp_path / "run"
  with pytest.raises(errors.ConfigError, match="num_classes=5 but digits has 10 classes"):
    trainer.train_and_evaluate(tiny_config(**{"model.num_classes": 5}), str(workdir))
  assert not workdir.exists()
  # A run that died before its first checkpoint: another config may take the workdir.
  workdir.mkdir()
  (workdir / "config.json").write_text(tiny_config(**{"seed": 7}).to_json_best_effort())
  (workdir / "metrics.jsonl").write_text('{"step": 1, "train/loss": 2.3}\n')
  config = tiny_config(**{"training.num_steps": 2, "training.log_every_steps": 1})
  summary = trainer.train_and_evaluate(config, str(workdir))
  assert summary["status"] == "finished"
  assert json.loads((workdir / "config.json").read_text())["seed"] == 0
  assert (
    workdir / "metrics.replaced_config.jsonl"
  ).read_text() == '{"step": 1, "train/loss": 2.3}\n'
  assert json.loads((workdir / "config.replaced_config.json").read_text())["seed"] == 7
  assert [m["step"] for m in metrics(str(workdir)) if "train/loss" in m] == [1, 2]
  # Once it holds a checkpoint, the workdir refuses another config (unfinished, to get there),
  # but not other resources: where a run trains does not change what it computes.
  (workdir / "summary.json").unlink()
  with pytest.raises(errors.ConfigError, match="holds a run with another config"):
    trainer.train_and_evaluate(tiny_config(**{"seed": 7}), str(workdir))
  workdir_lib.claim(
    tiny_config(
      **{
        "training.num_steps": 2,
        "training.log_every_steps": 1,
        "resources.processes": 2,
        "resources.gpus": 1.0,
      }
    ),
    str(workdir),
  )


def test_scoring_a_workdir_refuses_another_model_or_preprocessing(tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(tiny_config(**{"training.num_steps": 2}), workdir)
  with pytest.raises(errors.ConfigError, match=r"\['config.resolution'\] .*=16"):
    evaluate.checkpoint(tiny_config(**{"resolution": 32}), workdir)
  image = tmp_path / "digit.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
  with pytest.raises(errors.ConfigError, match="config.model.width_multiplier"):
    evaluate.predict(tiny_config(**{"model.width_multiplier": 0.5}), str(image), workdir)
  # Other data settings (another dataset, fewer examples) are the user's to choose.
  scored = evaluate.checkpoint(tiny_config(**{"data.max_eval_examples": 100}), workdir)
  assert scored["step"] == 2 and scored["count"] == 100


def test_ctrl_c_asks_for_a_checkpoint_and_a_second_one_aborts():
  before = signal.getsignal(signal.SIGINT)  # ignored where pytest runs as a background job
  preemption = checkpointing.Preemption()
  try:
    os.kill(os.getpid(), signal.SIGINT)
    assert preemption.reached(sync_point=False)  # one process: at once; it saves and stops
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  finally:
    preemption.restore()
  assert signal.getsignal(signal.SIGINT) is before


def test_a_workdir_in_use_is_refused_with_its_holder(tmp_path):
  workdir = str(tmp_path / "run")
  with workdir_lib.WorkdirLock(workdir):
    with pytest.raises(errors.WorkdirBusy, match=rf"in use by pid {os.getpid()} on "):
      trainer.train_and_evaluate(tiny_config(), workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json"))


def test_a_config_json_from_before_kernel_init_reads_as_he_fan_in(tmp_path):
  old = json.loads(tiny_config().to_json_best_effort())
  del old["model"]["kernel_init"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.check_trained_config(tiny_config(**{"model.kernel_init": "he_fan_in"}), str(tmp_path))
  with pytest.raises(errors.ConfigError, match=r"config.model.kernel_init='he_fan_in'"):
    workdir_lib.check_trained_config(tiny_config(**{"model.kernel_init": "slim"}), str(tmp_path))


def test_user_errors_before_any_work_name_the_key_or_file(tmp_path):
  with pytest.raises(
    errors.ConfigError,
    match=r"batch_size=2048 is larger than the "
    r"training split \(1437 examples",
  ):
    trainer.train_and_evaluate(tiny_config(**{"data.batch_size": 2048}), str(tmp_path / "a"))
  missing = tmp_path / "does_not_exist"
  with pytest.raises(errors.TrainingError, match="holds no checkpoints/"):
    evaluate.checkpoint(tiny_config(), str(missing))
  assert not missing.exists()  # nothing created
  (tmp_path / "empty.jpg").write_bytes(b"")
  for image in (tmp_path / "empty.jpg", tmp_path / "absent.png", tmp_path):
    with pytest.raises(errors.DataError, match=rf"--image={image} is not a readable image"):
      evaluate.predict(tiny_config(), str(image), str(missing))  # before any restore


def test_a_damaged_latest_checkpoint_is_skipped_and_the_one_before_used(tmp_path, caplog):
  workdir = tmp_path / "run"
  config = tiny_config(**{"training.num_steps": 4, "training.checkpoint_every_steps": 2})
  trainer.train_and_evaluate(config, str(workdir))
  shutil.rmtree(workdir / "checkpoints" / "4" / "state")
  assert evaluate.checkpoint(config, str(workdir))["step"] == 2  # eval changes nothing
  assert "note: checkpoint step 4 cannot be restored" in caplog.text
  caplog.clear()
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4"]
  (workdir / "summary.json").unlink()  # as if the run had died after the damaged save
  summary = trainer.train_and_evaluate(config, str(workdir))
  assert summary["status"] == "finished" and summary["steps"] == 4
  assert "Resumed" in caplog.text
  assert (workdir / "damaged_checkpoints" / "4").is_dir()  # kept, out of the manager's way


def test_without_an_ema_no_ema_copies_are_stored_and_older_checkpoints_with_them_resume(tmp_path):
  workdir = tmp_path / "run"
  config = tiny_config(**{"training.num_steps": 4, "training.checkpoint_every_steps": 2})
  assert config.training.ema_decay == 0
  trainer.train_and_evaluate(config, str(workdir))
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
  stored = manager.restore(2, args=ocp.args.Composite(state=ocp.args.PyTreeRestore())).state
  assert stored["ema_params"] is None and stored["ema_batch_stats"] is None
  # The layout before: the EMA copies stored beside the weights (as the weights themselves).
  old = {**stored, "ema_params": stored["params"], "ema_batch_stats": stored["batch_stats"]}
  shutil.rmtree(workdir / "checkpoints" / "4")
  shutil.rmtree(workdir / "checkpoints" / "2")
  (workdir / "summary.json").unlink()
  writer = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
  writer.save(
    2,
    args=ocp.args.Composite(state=ocp.args.StandardSave(old), meta=ocp.args.JsonSave({"step": 2})),
    force=True,
  )
  writer.wait_until_finished()
  summary = trainer.train_and_evaluate(config, str(workdir))
  assert summary["status"] == "finished" and summary["steps"] == 4


def test_a_workdir_that_cannot_be_written_is_one_line(tmp_path):
  (tmp_path / "a_file").write_text("")
  with pytest.raises(errors.WorkdirBusy, match=r"--workdir=.*a_file/run cannot hold a run"):
    trainer.train_and_evaluate(tiny_config(), str(tmp_path / "a_file" / "run"))
  (tmp_path / "train").mkdir()
  (tmp_path / "val").mkdir()
  with pytest.raises(errors.DataError, match=r"class_names='/nonexistent.txt': No such file"):
    trainer.train_and_evaluate(
      tiny_config(**{"data.dataset": f"folder:{tmp_path}", "data.class_names": "/nonexistent.txt"}),
      str(tmp_path / "run"),
    )


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_checkpoints_before(
  tmp_path, monkeypatch
):
  workdir = tmp_path / "run"
  config = tiny_config(**{"training.num_steps": 4, "training.checkpoint_every_steps": 2})
  save = ocp.CheckpointManager.save

  def disk_full_at_step_4(self, step, *args, **kwargs):
    if step == 4:
      raise OSError(28, "No space left on device")
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full_at_step_4)
  with pytest.raises(
    errors.TrainingError,
    match=r"step 4 failed: No space left on device; "
    r"the earlier checkpoints .* \(latest: step 2\)",
  ):
    trainer.train_and_evaluate(config, str(workdir))
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]


def test_a_workdir_resumes_when_its_image_folder_is_named_by_another_path(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "images").mkdir()
  workdir = str(tmp_path / "run")
  workdir_lib.claim(tiny_config(**{"data.dataset": "folder:images"}), workdir)
  (tmp_path / "run" / "checkpoints" / "10").mkdir(parents=True)
  workdir_lib.claim(tiny_config(**{"data.dataset": f"folder:{tmp_path / 'images'}/"}), workdir)
  with pytest.raises(errors.ConfigError, match="config.data.dataset differ"):
    workdir_lib.claim(tiny_config(**{"data.dataset": "folder:other"}), workdir)


def test_a_workdir_started_under_an_earlier_default_continues_with_it(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  workdir_lib.claim(tiny_config(**{"qat.learning_rate": 0.005}), workdir)
  (tmp_path / "run" / "checkpoints" / "10").mkdir(parents=True)
  default = tiny_config()
  assert default.qat.learning_rate == 0.001
  continued = workdir_lib.as_recorded(default, workdir)
  assert (continued.qat.learning_rate, default.qat.learning_rate) == (0.005, 0.001)
  assert "config.qat.learning_rate's default was 0.005: it continues with it" in caplog.text
  workdir_lib.claim(continued, workdir)
  asked_for = tiny_config(**{"qat.learning_rate": 0.0003})
  assert workdir_lib.as_recorded(asked_for, workdir) is asked_for
  with pytest.raises(errors.ConfigError, match="config.qat.learning_rate differ"):
    workdir_lib.claim(asked_for, workdir)
  assert workdir_lib.as_recorded(default, str(tmp_path / "new")) is default


# The last release with the flat package: its workdirs must resume, score and report unchanged.
FLAT_RELEASE = "c3c9d75"


def test_a_workdir_of_the_flat_release_scores_reports_and_resumes_bitwise(tmp_path):
  if subprocess.run(["git", "cat-file", "-e", FLAT_RELEASE], cwd=REPO).returncode:
    pytest.skip(f"needs the git history with {FLAT_RELEASE} (a shallow clone lacks it)")
  old = tmp_path / "flat_release"
  old.mkdir()
  subprocess.run(f"git archive {FLAT_RELEASE} | tar -x -C {old}", shell=True, cwd=REPO, check=True)
  overrides = {
    **TINY_OVERRIDES,
    "training.num_steps": 6,
    "training.checkpoint_every_steps": 3,
    "training.log_every_steps": 1,
  }
  workdir = tmp_path / "sweep" / "member"
  written = subprocess.run(
    [
      sys.executable,
      "launch.py",
      "--config=configs/tiny.py",
      f"--workdir={workdir}",
      *config_flags(overrides),
    ],
    cwd=old,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert written.returncode == 0, written.stdout + written.stderr
  summary = json.loads((workdir / "summary.json").read_text())
  config = tiny_config(**overrides)
  scored = evaluate.checkpoint(config, str(workdir))
  assert (scored["step"], scored["top1"]) == (6, summary["top1"])
  (row,) = report.rows(report.collect(str(tmp_path / "sweep")))
  assert (row["top1"], row["seeds"], row["status"]) == (summary["top1"], 1, "finished")
  assert trainer.train_and_evaluate(config, str(workdir)) == summary  # finished: answers as is
  step, at_six = final_params(workdir)
  assert step == 6
  (workdir / "summary.json").unlink()  # as if the run had died after its step-3 checkpoint
  shutil.rmtree(workdir / "checkpoints" / "6")
  resumed = trainer.train_and_evaluate(config, str(workdir))
  assert resumed["status"] == "finished" and resumed["top1"] == summary["top1"]
  assert jax.tree.all(jax.tree.map(np.array_equal, final_params(workdir)[1], at_six))


def test_a_finished_workdir_answers_only_for_its_own_config(tmp_path, caplog):
  workdir = str(tmp_path / "run")
  config = tiny_config(**{"training.num_steps": 2})
  summary = trainer.train_and_evaluate(config, workdir)
  placed_elsewhere = tiny_config(**{"training.num_steps": 2, "resources.cpus": 4.0})
  assert trainer.train_and_evaluate(placed_elsewhere, workdir) == summary
  assert f"{workdir} is already finished" in caplog.text
  other_recipe = tiny_config(
    **{"training.num_steps": 2, "optimizer.name": "nesterov", "optimizer.learning_rate": 0.05}
  )
  with pytest.raises(errors.ConfigError) as refused:
    trainer.train_and_evaluate(other_recipe, workdir)
  assert str(refused.value) == (
    f"{workdir} is finished, trained with another config (config.optimizer.learning_rate: 0.045 "
    "there, 0.05 here; config.optimizer.name: 'tf1_rmsprop' there, 'nesterov' here); its result "
    "is not this config's: use another --workdir"
  )


def test_a_full_disk_while_writing_metrics_is_one_error_and_the_run_resumes(tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  config = tiny_config(
    **{"training.num_steps": 6, "training.log_every_steps": 1, "training.checkpoint_every_steps": 2}
  )
  writes = []

  class FillingDisk:
    """metrics.jsonl on a disk that fills up after three records."""

    def __init__(self, path, mode):
      self.file = open(path, mode)

    def __enter__(self):
      return self

    def __exit__(self, *_):
      self.file.close()

    def write(self, text):
      writes.append(text)
      if len(writes) > 4:  # the optimizer's derived values, then steps 1-3
        raise OSError(errno.ENOSPC, "No space left on device")
      return self.file.write(text)

  def opened(path, *args, **kwargs):
    return (
      FillingDisk(path, *args) if path.endswith("metrics.jsonl") else open(path, *args, **kwargs)
    )

  monkeypatch.setattr(tracking, "open", opened, raising=False)
  with pytest.raises(errors.TrainingError) as stopped:
    trainer.train_and_evaluate(config, workdir)
  assert str(stopped.value).startswith(
    f"writing the metrics of step 4 to {workdir}/metrics.jsonl failed: No space left on device "
    "(the disk is full); the lines before it and the checkpoints are kept"
  )
  assert [m["step"] for m in metrics(workdir)] == [0, 1, 2, 3]
  monkeypatch.undo()
  assert trainer.train_and_evaluate(config, workdir)["status"] == "finished"
  assert [m["step"] for m in metrics(workdir) if "train/loss" in m] == [1, 2, 3, 4, 5, 6]


def test_a_checkpoint_without_its_data_files_is_one_note_on_the_screen(tmp_path):
  """Orbax's other failed reads end as asyncio shutdown reports: hundreds of tracebacks (22,520
  lines for this run, measured) that the one note already covers."""
  workdir = tmp_path / "run"
  overrides = {"training.num_steps": 4, "training.checkpoint_every_steps": 2}
  trainer.train_and_evaluate(tiny_config(**overrides), str(workdir))
  (workdir / "summary.json").unlink()
  for data in (workdir / "checkpoints" / "4" / "state" / "ocdbt.process_0" / "d").iterdir():
    data.unlink()
  resumed = launch(str(workdir), *config_flags({**TINY_OVERRIDES, **overrides}))
  output = resumed.communicate(timeout=300)[0]
  assert resumed.returncode == 0, output
  lines = [line for line in output.splitlines() if line.strip()]
  assert lines[0].startswith("note: checkpoint step 4 cannot be restored"), output
  assert lines[1] == f"Resumed {workdir} at step 2.", output
  assert "Traceback" not in output and "asyncio" not in output and len(lines) < 10, output
