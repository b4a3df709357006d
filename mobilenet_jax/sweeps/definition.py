"""Sweeps as code: a sweep file (experiments/*.py) defines `get_sweep()` returning a `Sweep`, a
name and named members, each a config file and the overrides that make it differ. Each member
runs as its own `launch.py` command line in DIR/<member>/ (launching.py runs them).
"""

import dataclasses
import itertools
import os
import sys
from typing import Any, Sequence

from mobilenet_jax.config import command_line
from mobilenet_jax.core import errors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Member:
  name: str
  config: str  # config file[:arg], relative to the repository
  overrides: tuple = ()  # ((dotted key, value), ...)


@dataclasses.dataclass(frozen=True)
class Sweep:
  name: str
  members: tuple

  def __post_init__(self):
    names = [m.name for m in self.members]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
      raise errors.ConfigError(f"sweep {self.name!r} names members twice: {duplicates}")


def grid(
  config: str, name: str, axes: dict[str, Sequence[Any]], fixed: dict[str, Any] | None = None
) -> tuple[Member, ...]:
  """Members for every combination of `axes` ({dotted key: values}), each also with the `fixed`
  overrides; `name` formats the keys' last parts, e.g. grid('configs/tiny.py',
  'a{width_multiplier:g}_r{resolution}',
  {'model.width_multiplier': (0.5, 1), 'resolution': (8, 16)})."""
  keys = list(axes)
  members = []
  for values in itertools.product(*(axes[k] for k in keys)):
    fields = {k.rsplit(".", 1)[-1]: v for k, v in zip(keys, values)}
    overrides = tuple((fixed or {}).items()) + tuple(zip(keys, values))
    try:
      member_name = name.format(**fields)
    except (KeyError, IndexError) as error:
      raise errors.ConfigError(
        f"sweep member name {name!r} names {error}, which is not an axis; axes: {sorted(fields)}"
      ) from None
    members.append(Member(member_name, config, overrides))
  return tuple(members)


def load_sweep(path: str) -> Sweep:
  return command_line.load_function(
    path, f"--sweep={path}", "get_sweep", "experiments/quickstart.py"
  )()


def member_command(sweep, member, workdir, extra_overrides=()):
  """The launch.py command line of one member; the sweep-wide (key, value) overrides come last
  and win."""
  args = [
    sys.executable,
    os.path.join(REPO, "launch.py"),
    f"--config={member.config}",
    f"--workdir={os.path.join(workdir, member.name)}",
  ]
  overrides = (("wandb.group", sweep.name),) + tuple(member.overrides) + tuple(extra_overrides)
  return args + [f"--config.{k}={v}" for k, v in overrides]


def member_config(member, extra_overrides=()):
  """The member's config, with the sweep-wide (key, value) overrides applied."""
  config = command_line.load_config_file(os.path.join(REPO, member.config))
  return command_line.apply_overrides(config, list(member.overrides) + list(extra_overrides))
