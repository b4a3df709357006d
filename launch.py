"""The one entry point.

  python launch.py --config=configs/mobilenet_v2.py --config.model.width_multiplier=0.75 \
      --config.resolution=160 --mode=profile
  python launch.py --config=configs/mobilenet_v2.py:width=0.5,res=160 --workdir=runs/v2
  python launch.py --sweep=experiments/quickstart.py --workdir=runs/quickstart [--jobs=2]
  python launch.py --sweep=experiments/v2_tradeoff.py --workdir=/shared/runs/v2 --launcher=ray \
      --ray_address=auto
  python launch.py --mode=report --workdir=runs/quickstart
  python launch.py --config=configs/tiny.py --mode=eval --workdir=runs/tiny
  python launch.py --config=configs/tiny.py --mode=export --workdir=runs/tiny --format=onnx --int8
"""

import functools
import json
import sys

from mobilenet_jax import runtime

if __name__ == "__main__":
  # glibc reads its tunables when a process starts: re-execute before JAX and XLA load.
  runtime.reexec_with_huge_pages()

import jax  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mobilenet_jax import command_line, errors, evaluate, export, profile_report  # noqa: E402
from mobilenet_jax import report, sweep  # noqa: E402
from mobilenet_jax import config as config_lib  # noqa: E402
from mobilenet_jax import ray_launcher, trainer  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=True)
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "profile", "eval", "predict", "report", "export"],
    "train: train and evaluate in --workdir (or run --sweep); profile: mult-adds and params; "
    "eval: score config.init_from's weights or --workdir's latest checkpoint (last line: JSON); "
    "predict: top-5 labels of --image; report: tables and plots of the sweep in --workdir; "
    "export: those weights as --format files in --workdir/export/, checked and timed.")
_FORMAT = flags.DEFINE_multi_enum("format", ["onnx"], list(export.FORMATS),
                                  "--mode=export: the formats to write (repeat for several).")
_INT8 = flags.DEFINE_bool("int8", False, "--mode=export: also write an int8 model per format, "
                          "calibrated on 100 training images.")
_CHECK_EXAMPLES = flags.DEFINE_integer(
    "check_examples", 250, "--mode=export: validation images each export is checked on.")
_IMAGE = flags.DEFINE_string("image", None, "Image file for --mode=predict.")
_SWEEP = flags.DEFINE_string("sweep", None, "Sweep file (experiments/*.py): run its members, "
                             "each in --workdir/<member>; --config.key=value applies to all.")
_JOBS = flags.DEFINE_integer("jobs", 1, "Sweep members run at once, as local processes "
                             "(--launcher=local).")
_LAUNCHER = flags.DEFINE_enum(
    "launcher", "local", ["local", "ray"], "Where sweep members run: local processes, or Ray "
    "tasks asking for each member's config.resources (on --ray_address's cluster).")
_RAY_ADDRESS = flags.DEFINE_string(
    "ray_address", None, "--launcher=ray: 'auto' (the cluster `ray start` started on this node) "
    "or HOST:PORT; omitted, a Ray cluster of this machine alone is started for the sweep.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print one command per sweep member and exit.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, summary).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, to run as several processes "
    "(omit on TPU pods and SLURM, where jax.distributed finds it).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


_SWEEP_OVERRIDES = []


def _parse_flags(argv):
  if any(a.startswith("--sweep") for a in argv):
    # A sweep has no single config file to parse overrides against: each member applies them.
    _SWEEP_OVERRIDES.extend(a for a in argv if a.startswith("--config."))
    argv = [a for a in argv if not a.startswith("--config.")]
  specs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
  if specs:  # loaded once here too, so a broken config file is one line, not absl's traceback
    try:
      command_line.load_config_file(specs[-1])
    except errors.UserError as error:
      sys.exit(f"error: {error}")
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as error:
    try:
      command_line.check_overrides(argv)
    except errors.ConfigError as explained:
      sys.exit(f"error: {explained}")
    sys.exit(f"error: {error}")


def _initialize_distributed():
  if _NUM_PROCESSES.value and _NUM_PROCESSES.value > 1:
    # CPU processes exchange collectives over gloo; GPUs and TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax and JAX log every save and backend probe
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  try:
    if _SWEEP.value or _MODE.value == "report":
      return _sweep_or_report()
    if _CONFIG.value is None:
      sys.exit("error: --config=FILE[:arg] is required, e.g. --config=configs/mobilenet_v2.py")
    config = config_lib.validate(_CONFIG.value)
    if _MODE.value == "export":
      if not _WORKDIR.value:
        sys.exit("error: --mode=export needs --workdir=DIR: a run with checkpoints, or with "
                 "--config.init_from=KIND:PATH the directory its export/ goes in")
      export.export(config, _WORKDIR.value, _FORMAT.value, _INT8.value, _CHECK_EXAMPLES.value)
    elif _MODE.value in ("eval", "predict"):
      if not (config.init_from or _WORKDIR.value):
        sys.exit(f"error: --mode={_MODE.value} needs --config.init_from=KIND:PATH or "
                 "--workdir=DIR (a run with checkpoints)")
      if _MODE.value == "predict":
        if not _IMAGE.value:
          sys.exit("error: --mode=predict needs --image=PATH")
        for label, probability in evaluate.predict(config, _IMAGE.value, _WORKDIR.value):
          print(f"{probability:7.2%}  {label}")
      elif config.init_from:
        print(json.dumps(evaluate.imported_weights(config)))
      else:
        print(json.dumps(evaluate.checkpoint(config, _WORKDIR.value)))
    elif _MODE.value == "profile":
      profile_report.run(config)
    elif _MODE.value == "train":
      if not _WORKDIR.value:
        sys.exit("error: --mode=train needs --workdir=DIR")
      _initialize_distributed()
      trainer.train_and_evaluate(config, _WORKDIR.value)
  except errors.UserError as error:  # config, data, weights and workdir errors explain themselves
    sys.exit(f"error: {error}")


def _sweep_or_report():
  if not _WORKDIR.value:
    sys.exit("error: --sweep and --mode=report need --workdir=DIR")
  if _MODE.value == "report":
    return _write_and_print_report()
  if _MODE.value != "train":
    sys.exit(f"error: --sweep runs training; --mode={_MODE.value} does not apply to it")
  if _JOBS.value < 1:
    sys.exit(f"error: --jobs={_JOBS.value}; allowed: integers >= 1 (sweep members run at once)")
  definition = sweep.load_sweep(_SWEEP.value)
  if _DRY_RUN.value:
    return sweep.dry_run(definition, _WORKDIR.value, _SWEEP_OVERRIDES)
  if _LAUNCHER.value == "ray":
    run_members = functools.partial(ray_launcher.run_members, address=_RAY_ADDRESS.value)
  else:
    run_members = functools.partial(sweep.run_locally, jobs=_JOBS.value)
  statuses = sweep.run(definition, _WORKDIR.value, run_members, _SWEEP_OVERRIDES)
  if "finished" in statuses.values():
    _write_and_print_report()
  unfinished = {n: s for n, s in statuses.items() if s != "finished"}
  print(f"sweep {definition.name}: {len(statuses) - len(unfinished)}/{len(statuses)} finished"
        + "".join(f"\n  {n}: {s}" for n, s in unfinished.items()))
  if unfinished:
    sys.exit(1)


def _write_and_print_report():
  report.write(_WORKDIR.value)
  with open(f"{_WORKDIR.value}/report.md") as f:
    print(f.read())


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
