import importlib.util
import pathlib

import pytest

from mobilenet_jax import command_line

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ARTIFACTS = SHARED / "artifacts"


def load_config(name, arg=None):
  return command_line.load_config_file(str(REPO / "configs" / f"{name}.py")
                                       + (f":{arg}" if arg else ""))


def needs_artifacts(*parts):
  """Skips (with the reason) on a fresh clone, where ../shared/ is absent; CI has it."""
  path = ARTIFACTS.joinpath(*parts)
  return pytest.mark.skipif(not path.exists(), reason=f"needs {path} (present in CI, not in a fresh clone)")


# The messages that ask for TensorFlow can only be seen where it is missing (CI, a fresh clone).
without_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                                        reason="TensorFlow is installed here")
