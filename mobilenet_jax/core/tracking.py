"""Metrics to metrics.jsonl and W&B (process 0 only), and the progress bar."""

import errno
import json
import logging
import os

import jax
import tqdm

from mobilenet_jax.core import errors

log = logging.getLogger(__name__)


def flatten(tree, prefix=""):
  """{'a': {'b': 1}} -> {'a.b': 1}: W&B gets dotted keys once, never nested and dotted twins."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, f"{name}."))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def write_json(path, payload):
  """Replaces `path` atomically: a crash never leaves a half-written file behind."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_json(path):
  with open(path) as f:
    return json.load(f)


# config.wandb.mode: 'auto' is online where WANDB_API_KEY is set, else offline.
WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_mode(mode):
  if mode == "auto":
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"
  return mode


def run_tags(config):
  """The config's tags plus α and resolution, so sweep members filter by either in W&B."""
  return list(config.wandb.tags) + [
    f"alpha={config.model.width_multiplier:g}",
    f"res={config.resolution}",
  ]


def logged_steps(path):
  """The steps in a metrics.jsonl. A last line cut short (the disk filled, or the process died,
  while it was written) is dropped from the file with a note; nothing else is changed."""
  with open(path, "rb") as f:
    lines = f.read().split(b"\n")
  steps, tail = [], lines.pop()  # `tail` is empty when the file ends in a newline
  if tail:
    try:
      steps.append(json.loads(tail)["step"])
      with open(path, "ab") as f:  # complete but for its newline
        f.write(b"\n")
    except (ValueError, KeyError):
      os.truncate(path, os.path.getsize(path) - len(tail))
      log.warning(
        "note: %s ended in a partial line (%d bytes, written when the run stopped); "
        "dropped it, the earlier lines are kept",
        path,
        len(tail),
      )
  for number, line in enumerate(lines, 1):
    if line.strip():
      try:
        steps.append(json.loads(line)["step"])
      except (ValueError, KeyError):
        log.warning(
          "note: %s line %d is not a metrics record; left as it is, skipped", path, number
        )
  return steps


class MetricWriter:
  """Appends one JSON object per logged step; after a resume, steps already in the file are
  skipped, so nothing written before is rewritten or duplicated."""

  def __init__(self, workdir, config, run_info, run_id=None):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.last_logged = -1
    self._speeds, self._input_waits = [], []
    self.run = None
    self.run_id = run_id
    if not self.enabled:
      return
    if os.path.exists(self.path):
      self.last_logged = max(logged_steps(self.path), default=-1)
    mode = wandb_mode(config.wandb.mode)
    if mode != "disabled":
      import wandb

      self.run = wandb.init(
        project=config.wandb.project,
        entity=config.wandb.entity or None,
        group=config.wandb.group or None,
        tags=run_tags(config),
        id=run_id,
        resume="allow",
        mode=mode,
        dir=os.path.abspath(workdir),
        config={**flatten(json.loads(config.to_json_best_effort())), **run_info},
        # A run's quantization-aware fine-tuning (training.int8='qat') is a second run inside it.
        settings=wandb.Settings(silent=True, reinit="create_new"),
      )
      self.run_id = self.run.id
      self.run.summary.update(run_info)

  def log(self, step, metrics):
    if "train/images_per_second" in metrics:
      self._speeds.append(metrics["train/images_per_second"])
      self._input_waits.append(metrics["train/input_wait_fraction"])
    if not self.enabled or step <= self.last_logged and "eval/top1" not in metrics:
      return
    try:
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
    except OSError as error:  # a full disk, a quota, a filesystem gone read-only
      full = " (the disk is full)" if error.errno == errno.ENOSPC else ""
      raise errors.TrainingError(
        f"writing the metrics of step {step} to {self.path} failed: "
        f"{error.strerror or error}{full}; the lines before it and the checkpoints are kept "
        "(a torn last line is dropped on resume): free space and run the same command to resume"
      ) from None
    if self.run is not None:
      self.run.log({**metrics, "global_step": step}, step=step)

  def images_per_second(self):
    """Median training speed of this session's logged intervals (the first includes compiling)."""
    return _median(self._speeds[1:] or self._speeds)

  def input_wait_fraction(self):
    """Median fraction of wall time the loop waited for input, over the same intervals."""
    return _median(self._input_waits[1:] or self._input_waits)

  def progress(self, start, total):
    return Progress(start, total, self.enabled)

  def finish(self, summary):
    if self.run is not None:
      self.run.summary.update({k: v for k, v in summary.items() if v is not None})
      self.run.finish()


def _median(values):
  values = sorted(values)
  return values[len(values) // 2] if values else None


class Progress:
  """Step, loss, img/s, the fraction of time spent waiting for input and the ETA on one line
  (tqdm computes the ETA)."""

  def __init__(self, start, total, enabled):
    self.bar = tqdm.tqdm(
      total=total,
      initial=start,
      unit="step",
      disable=not enabled,
      dynamic_ncols=True,
      mininterval=1.0,
    )

  def update(self, step, metrics):
    self.bar.set_postfix(
      loss=f"{metrics['train/loss']:.3f}",
      img_s=f"{metrics['train/images_per_second']:.0f}",
      input_wait=f"{metrics['train/input_wait_fraction']:.0%}",
      refresh=False,
    )
    self.bar.update(step - self.bar.n)

  def close(self):
    self.bar.close()
