"""The one entry point.

  python launch.py --config=configs/mobilenet_v2.py --config.model.width_multiplier=0.75 \
      --config.resolution=160 --mode=profile
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from mobilenet_jax import config as config_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:arg].", lock_config=True)
_MODE = flags.DEFINE_enum("mode", "profile", ["profile"], "What to do with the config.")


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError, flags.Error) as error:
    try:
      config_lib.check_overrides(argv)
    except config_lib.ConfigError as explained:
      sys.exit(f"error: {explained}")
    sys.exit(f"error: {error}")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"error: unexpected arguments {argv[1:]}")
  if _CONFIG.value is None:
    sys.exit("error: --config=FILE[:arg] is required, e.g. --config=configs/mobilenet_v2.py")
  try:
    config = config_lib.validate(_CONFIG.value)
    if _MODE.value == "profile":
      from mobilenet_jax import profile_report
      profile_report.run(config)
  except config_lib.ConfigError as error:
    sys.exit(f"error: {error}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
