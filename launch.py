"""The one entry point.

  python launch.py --config=configs/mobilenet_v2.py --config.model.width_multiplier=0.75 \
      --config.resolution=160 --mode=profile
  python launch.py --config=configs/mobilenet_v2.py:width=0.5,res=160 --workdir=runs/v2
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mobilenet_jax import config as config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=True)
_MODE = flags.DEFINE_enum("mode", "train", ["train", "profile"],
                          "train: train and evaluate in --workdir; profile: mult-adds and params.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, summary).")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, to run as several processes "
    "(omit on TPU pods and SLURM, where jax.distributed finds it).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as error:
    try:
      config_lib.check_overrides(argv)
    except config_lib.ConfigError as explained:
      sys.exit(f"error: {explained}")
    sys.exit(f"error: {error}")


def _initialize_distributed():
  import jax
  if _NUM_PROCESSES.value and _NUM_PROCESSES.value > 1:
    # CPU processes exchange collectives over gloo; GPUs and TPUs use their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def main(argv):
  logging.set_verbosity(logging.WARNING)  # Orbax and JAX log every save and backend probe
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  if _CONFIG.value is None:
    sys.exit("error: --config=FILE[:arg] is required, e.g. --config=configs/mobilenet_v2.py")
  try:
    config = config_lib.validate(_CONFIG.value)
    if _MODE.value == "profile":
      from mobilenet_jax import profile_report
      profile_report.run(config)
    elif _MODE.value == "train":
      if not _WORKDIR.value:
        sys.exit("error: --mode=train needs --workdir=DIR")
      _initialize_distributed()
      from mobilenet_jax import trainer
      trainer.train_and_evaluate(config, _WORKDIR.value)
  except config_lib.ConfigError as error:
    sys.exit(f"error: {error}")
  except Exception as error:  # data and training errors carry their own explanation
    from mobilenet_jax import data, trainer
    if isinstance(error, (data.DataError, trainer.TrainingError)):
      sys.exit(f"error: {error}")
    raise


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
