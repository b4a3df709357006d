"""A run's workdir: one run or sweep holds it at a time, and once it holds a checkpoint it
belongs to the config recorded in its config.json.

The lock is `flock` on WORKDIR/.lock, which the kernel releases when the holder exits in any
way (kill -9 included), so a crashed holder never leaves a stale lock; the file itself only
records who held it last, for the message a second launcher gets.
"""

import datetime
import fcntl
import json
import logging
import os
import socket

import jax
import ml_collections

from mobilenet_jax.config import command_line, schema
from mobilenet_jax.core import errors, tracking

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class WorkdirLock:
  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def __enter__(self):
    workdir = os.path.dirname(self.path)
    try:
      os.makedirs(workdir, exist_ok=True)
      handle = open(self.path, "a+")
    except OSError as error:  # a file in its place, no permission, a read-only filesystem
      raise errors.WorkdirBusy(
        f"--workdir={workdir} cannot hold a run: {error.strerror} "
        f"({error.filename}); choose a directory you can write"
      ) from None
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      handle.close()
      raise errors.WorkdirBusy(
        f"{os.path.dirname(self.path)} is in use by {holder}; wait for it to "
        "finish, stop it (it checkpoints on SIGTERM), or use another --workdir"
      )
    handle.seek(0)
    handle.truncate()
    handle.write(
      f"pid {os.getpid()} on {socket.gethostname()} since "
      f"{datetime.datetime.now().isoformat(timespec='seconds')}\n"
    )
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *_):
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()


def read_config(workdir):
  """The workdir's config.json as a nested dict, with the keys added since it was written (at
  the values those runs used), so it resumes and scores as before."""
  config = tracking.read_json(os.path.join(workdir, "config.json"))
  for dotted, value in schema.added_keys().items():
    *groups, key = dotted.split(".")[1:]
    node = config
    for group in groups:
      node = node.setdefault(group, {})
    node.setdefault(key, value)
  return config


def recorded_config(workdir):
  """The workdir's config.json as {dotted key: value}, or None when it has none."""
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return None
  return tracking.flatten(read_config(workdir), "config.")


def as_recorded(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """`config` with the values `workdir` recorded for keys left at a default that has changed
  since (`schema.Key.earlier_defaults`): a run started under the earlier default continues,
  and answers, as it was started. Other keys are compared as before."""
  recorded, given = recorded_config(workdir) or {}, _flat(config)
  adopted = {
    dotted: recorded[dotted]
    for dotted, (default, earlier) in schema.changed_defaults().items()
    if given.get(dotted) == default and recorded.get(dotted) in earlier
  }
  if not adopted:
    return config
  for dotted, value in adopted.items():
    log.info(
      "%s was started when %s's default was %r: it continues with it", workdir, dotted, value
    )
  return command_line.apply_overrides(
    config.copy_and_resolve_references(),
    [(dotted[len("config.") :], value) for dotted, value in adopted.items()],
  )


def _flat(config):
  """{'config.' + dotted key: value} of a ConfigDict, as config.json records it."""
  return tracking.flatten(json.loads(config.to_json_best_effort()), "config.")


def _comparable(key, value):
  """A folder dataset compares by the folder it names, however its path is spelled."""
  if key == "config.data.dataset" and str(value).startswith("folder:"):
    return "folder:" + os.path.realpath(value[len("folder:") :])
  return value


def _differences(recorded, config, roles):
  """Sorted dotted keys of the given schema roles whose values differ."""
  given = _flat(config)
  return sorted(
    k
    for k in set(recorded) | set(given)
    if schema.role(k) in roles and _comparable(k, recorded.get(k)) != _comparable(k, given.get(k))
  )


def check_trained_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to score `workdir`'s checkpoint with a model or preprocessing other than the one
  its config.json records (another resolution would score another function of the weights)."""
  recorded = recorded_config(workdir)
  differ = _differences(recorded, config, ("model",)) if recorded else []
  if differ:
    raise errors.ConfigError(
      f"{workdir} was trained with other values of {differ} (its config.json: "
      f"{', '.join(f'{k}={recorded.get(k)!r}' for k in differ[:3])}); score it with the "
      "config it was trained with"
    )


# A workdir resumes with other values of the placement keys only; what it computed depends on
# these roles' keys alone.
RESUME_COMPARES = tuple(role for role in schema.ROLES if role != "placement")
RESULT_ROLES = ("model", "recipe", "seed")


def check_finished_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """A finished workdir's result answers only for the config it was trained with: refuses
  another, naming each key that differs with both values."""
  recorded = recorded_config(workdir)
  changed = _differences(recorded, config, RESULT_ROLES) if recorded else []
  if changed:
    given = _flat(config)
    values = "; ".join(f"{k}: {recorded.get(k)!r} there, {given.get(k)!r} here" for k in changed)
    raise errors.ConfigError(
      f"{workdir} is finished, trained with another config ({values}); its result is not this "
      "config's: use another --workdir"
    )


def claim(config: ml_collections.ConfigDict, workdir: str) -> None:
  """A workdir belongs to one config once it holds a checkpoint: resuming with another would
  silently mix two runs. Before its first checkpoint, a new config replaces the old one."""
  path = os.path.join(workdir, "config.json")
  recorded = recorded_config(workdir)
  if recorded is not None:
    changed = _differences(recorded, config, RESUME_COMPARES)
    checkpoints = os.path.join(workdir, "checkpoints")
    if (
      changed
      and os.path.isdir(checkpoints)
      and any(name.isdigit() for name in os.listdir(checkpoints))
    ):
      raise errors.ConfigError(
        f"{workdir} holds a run with another config ({', '.join(changed[:5])} differ; its "
        f"config.json has {', '.join(f'{k}={recorded.get(k)!r}' for k in changed[:3])}); use "
        "a new --workdir, or the original config to resume it"
      )
    if not changed:
      return
    if jax.process_index() == 0:
      # The replaced config and what was logged under it are kept, under names that say so.
      for name in ("config.json", "metrics.jsonl"):
        if os.path.exists(os.path.join(workdir, name)):
          stem, ext = os.path.splitext(name)
          os.replace(
            os.path.join(workdir, name), os.path.join(workdir, f"{stem}.replaced_config{ext}")
          )
    log.info(
      "%s has no checkpoint yet: this run's config replaces config.json (the old one "
      "is kept as config.replaced_config.json)",
      workdir,
    )
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    tracking.write_json(path, json.loads(config.to_json_best_effort()))
