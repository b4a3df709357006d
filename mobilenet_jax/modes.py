"""What `launch.py` does: its flags, the config loaded once, and the table of modes and sweep
launchers it dispatches to. Every mode's refusals are one line (`errors.UserError`)."""

import dataclasses
import functools
import json
import logging
import sys
from typing import Callable

import jax
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from mobilenet_jax import evaluate, trainer
from mobilenet_jax.config import command_line, schema
from mobilenet_jax.core import errors, tables
from mobilenet_jax.counting import profile_report
from mobilenet_jax.deploy import export
from mobilenet_jax.models import mobilenet
from mobilenet_jax.sweeps import definition, launching, report

FLAGS = flags.FLAGS
_FORMAT = flags.DEFINE_multi_enum(
  "format",
  ["onnx"],
  list(export.FORMATS),
  "--mode=export: the formats to write (repeat for several).",
)
_INT8 = flags.DEFINE_bool(
  "int8",
  False,
  "--mode=export: also write a post-training int8 model per format.",
)
_CALIBRATION_EXAMPLES = flags.DEFINE_integer(
  "calibration_examples",
  export.CALIBRATION_EXAMPLES,
  "--mode=export --int8: training images the activation ranges are calibrated on.",
)
_CHECK_EXAMPLES = flags.DEFINE_integer(
  "check_examples", 250, "--mode=export: validation images each export is checked on (0 = all)."
)
_IMAGE = flags.DEFINE_string("image", None, "Image file for --mode=predict.")
_SWEEP = flags.DEFINE_string(
  "sweep",
  None,
  "Sweep file (experiments/*.py): run its members, "
  "each in --workdir/<member>; --config.key=value applies to all.",
)
_JOBS = flags.DEFINE_integer(
  "jobs", 1, "Sweep members run at once, as local processes (--launcher=local)."
)
_RAY_ADDRESS = flags.DEFINE_string(
  "ray_address",
  None,
  "--launcher=ray: 'auto' (the cluster `ray start` started on this node) "
  "or HOST:PORT; omitted, a Ray cluster of this machine alone is started for the sweep.",
)
_RAY_CONNECT_TIMEOUT_S = flags.DEFINE_float(
  "ray_connect_timeout_s", 5.0, "--launcher=ray: seconds to wait for --ray_address to answer."
)
_RAY_WAIT = flags.DEFINE_bool(
  "ray_wait_for_resources",
  False,
  "--launcher=ray: submit members that ask for more than the "
  "cluster has and wait for them (a cluster that autoscales); otherwise they fail at once.",
)
_BASELINE = flags.DEFINE_string(
  "baseline",
  None,
  "For --mode=report: another sweep's workdir (the same members without a teacher, say): its "
  "curves drawn beside, and each member's top-1 gain over its member.",
)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print one command per sweep member and exit.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, summary).")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0, to run as several processes "
  "(omit on TPU pods and SLURM, where jax.distributed finds it).",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


@dataclasses.dataclass(frozen=True)
class Mode:
  run: Callable  # (config or None, workdir or None) -> None; prints what the mode shows
  doc: str
  needs_config: bool = True
  needs_workdir: str = ""  # what --workdir is for, where the mode cannot run without one


def _train(config, workdir):
  if _NUM_PROCESSES.value and _NUM_PROCESSES.value > 1:
    # CPU processes exchange collectives over gloo; GPUs and TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  trainer.train_and_evaluate(config, workdir)


def _needs_weights(config, workdir, mode):
  if not (config.init_from or workdir):
    raise errors.UserError(
      f"--mode={mode} needs --config.init_from=KIND:PATH or --workdir=DIR (a run with checkpoints)"
    )


def _eval(config, workdir):
  _needs_weights(config, workdir, "eval")
  print(
    json.dumps(
      evaluate.imported_weights(config)
      if config.init_from and not evaluate.has_checkpoints(workdir)
      else evaluate.checkpoint(config, workdir)
    )
  )


def _predict(config, workdir):
  _needs_weights(config, workdir, "predict")
  if not _IMAGE.value:
    raise errors.UserError("--mode=predict needs --image=PATH")
  for label, probability in evaluate.predict(config, _IMAGE.value, workdir):
    print(f"{probability:7.2%}  {label}")


def _export(config, workdir):
  export.check_request(_FORMAT.value, _CHECK_EXAMPLES.value, _CALIBRATION_EXAMPLES.value)
  variables, _ = evaluate.inference_variables(config, mobilenet.build_model(config), workdir)
  export.export(
    config,
    variables,
    workdir,
    _FORMAT.value,
    _INT8.value,
    _CHECK_EXAMPLES.value,
    _CALIBRATION_EXAMPLES.value,
  )


def _report(config, workdir):
  report.write(workdir, _BASELINE.value)
  with open(f"{workdir}/report.md") as f:
    print(f.read())


def _keys(config, workdir):
  print(
    tables.markdown_table(
      ("key", "default", "allowed", "role", "what it is"),
      [
        (f"config.{key.name}", repr(key.default), key.allowed(), key.role, key.doc)
        for key in schema.KEYS
      ],
    )
  )


MODES = {
  "train": Mode(
    _train,
    "train and evaluate in --workdir (or run --sweep)",
    needs_workdir="the run's checkpoints, metrics and summary",
  ),
  "profile": Mode(lambda config, _: profile_report.run(config), "mult-adds and parameters"),
  "eval": Mode(
    _eval, "score config.init_from's weights or --workdir's latest checkpoint (last line: JSON)"
  ),
  "predict": Mode(_predict, "top-5 labels of --image"),
  "report": Mode(
    _report,
    "tables and plots of the sweep in --workdir",
    needs_config=False,
    needs_workdir="the sweep's members",
  ),
  "export": Mode(
    _export,
    "those weights as --format files in --workdir/export/, checked and timed",
    needs_workdir="a run with checkpoints, or with "
    "--config.init_from=KIND:PATH the directory its export/ goes in",
  ),
  "keys": Mode(_keys, "every config key: default, allowed values, role", needs_config=False),
}


@dataclasses.dataclass(frozen=True)
class Launcher:
  run_members: Callable  # () -> a launching.run `run_members`, with the flags applied
  check: Callable[[], None] = lambda: None  # before the sweep writes anything


def _ray_launcher():
  """Imported only for --launcher=ray (tests/test_layout.py IMPORTED_WHEN_USED): Ray's import
  would delay every member process."""
  from mobilenet_jax.sweeps import ray_launcher

  return ray_launcher


# Where --sweep's members run.
LAUNCHERS = {
  "local": Launcher(lambda: functools.partial(launching.run_locally, jobs=_JOBS.value)),
  "ray": Launcher(
    lambda: functools.partial(
      _ray_launcher().run_members, address=_RAY_ADDRESS.value, wait_for_resources=_RAY_WAIT.value
    ),
    lambda: _ray_launcher().check_address(_RAY_ADDRESS.value, _RAY_CONNECT_TIMEOUT_S.value),
  ),
}
_MODE = flags.DEFINE_enum(
  "mode", "train", list(MODES), "; ".join(f"{name}: {mode.doc}" for name, mode in MODES.items())
)
_LAUNCHER = flags.DEFINE_enum(
  "launcher",
  "local",
  list(LAUNCHERS),
  "Where sweep members run: local processes, or Ray "
  "tasks asking for each member's config.resources (on --ray_address's cluster).",
)


def _run_sweep(workdir, overrides):
  if _MODE.value != "train":
    raise errors.UserError(f"--sweep runs training; --mode={_MODE.value} does not apply to it")
  if _JOBS.value < 1:
    raise errors.UserError(
      f"--jobs={_JOBS.value}; allowed: integers >= 1 (sweep members run at once)"
    )
  sweep = definition.load_sweep(_SWEEP.value)
  if _DRY_RUN.value:
    return launching.dry_run(sweep, workdir, overrides)
  launcher = LAUNCHERS[_LAUNCHER.value]
  launcher.check()
  statuses = launching.run(sweep, workdir, launcher.run_members(), overrides)
  if "finished" in statuses.values():
    _report(None, workdir)
  unfinished = {n: s for n, s in statuses.items() if s != "finished"}
  print(
    f"sweep {sweep.name}: {len(statuses) - len(unfinished)}/{len(statuses)} finished"
    + "".join(f"\n  {n}: {s}" for n, s in unfinished.items())
  )
  if unfinished:
    sys.exit(1)


def configure_logging():
  """The library's notes on stdout, one plain line each; absl's (Orbax, JAX) only from warnings."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  notes = logging.getLogger("mobilenet_jax")
  handler = logging.StreamHandler(sys.stdout)
  handler.setFormatter(logging.Formatter("%(message)s"))
  notes.addHandler(handler)
  notes.setLevel(logging.INFO)
  notes.propagate = False


@dataclasses.dataclass(frozen=True)
class Parsed:
  """What parse_flags hands to main: the config, loaded once, and a sweep's overrides."""

  config: object  # ml_collections.ConfigDict, or None without --config
  sweep_overrides: tuple  # ((dotted key, value), ...) for every member


def parse_flags(argv):
  """absl's flags, with --config=FILE[:arg] loaded once here (a broken file is one line) and
  its --config.key=value overrides applied by config_flags. A sweep has no single config file:
  its --config.* overrides are kept, as (key, value) pairs, for every member."""
  sweep_overrides, config = (), None
  try:
    if any(a.startswith("--sweep") for a in argv):
      sweep_overrides = tuple(
        command_line.parse_override(a) for a in argv if a.startswith("--config.")
      )
      argv = [a for a in argv if not a.startswith("--config.")]
    specs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    if specs:
      config = command_line.load_config_file(specs[-1])
  except errors.UserError as error:
    sys.exit(f"error: {error}")
  argv = [a for a in argv if not a.startswith("--config=")]
  try:
    if config is not None:  # its overrides are read from `argv` and applied here
      config_flags.DEFINE_config_dict(
        "config", config, "Config file[:arg], loaded once.", lock_config=True, sys_argv=argv
      )
    remaining = FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as error:
    try:
      command_line.check_overrides(config, argv)
    except errors.ConfigError as explained:
      sys.exit(f"error: {explained}")
    sys.exit(f"error: {error}")
  if len(remaining) > 1:
    sys.exit(f"error: unexpected arguments {remaining[1:]}")
  return Parsed(FLAGS.config if config is not None else None, sweep_overrides)


def main(parsed):
  configure_logging()
  workdir, mode, config = _WORKDIR.value, MODES[_MODE.value], parsed.config
  try:
    if _SWEEP.value:
      if not workdir:
        raise errors.UserError("--sweep needs --workdir=DIR (the sweep's members)")
      return _run_sweep(workdir, parsed.sweep_overrides)
    if mode.needs_workdir and not workdir:
      raise errors.UserError(f"--mode={_MODE.value} needs --workdir=DIR: {mode.needs_workdir}")
    if mode.needs_config:
      if config is None:
        raise errors.UserError(
          "--config=FILE[:arg] is required, e.g. --config=configs/mobilenet_v2.py"
        )
      schema.validate(config)
    mode.run(config, workdir)
  except errors.UserError as error:  # config, data, weights and workdir errors explain themselves
    sys.exit(f"error: {error}")
