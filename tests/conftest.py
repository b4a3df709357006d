import atexit
import importlib.util
import os
import pathlib
import shutil
import tempfile

# One XLA compilation cache for the whole session, subprocesses included: the tests build the
# same small models again and again. Set before JAX is imported, which reads it then.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="mobilenet_jax_xla_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import pytest  # noqa: E402

from benchmarks import input as input_benchmark  # noqa: E402
from mobilenet_jax import command_line  # noqa: E402

def pytest_collection_modifyitems(items):
  """The tests marked slow start first, so that neither xdist worker idles through the last."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.fixture(scope="session")
def shared_tmp_path(tmp_path_factory, worker_id):
  """A temporary directory that every xdist worker of this session sees (each worker's own
  base directory is a child of it)."""
  base = tmp_path_factory.getbasetemp()
  return base if worker_id == "master" else base.parent


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory):
  """The 250 ImageNet sample images in the folder layout PATH/{train,val}/<wnid>/<file> (links)."""
  root = tmp_path_factory.mktemp("imagenet_sample")
  return pathlib.Path(input_benchmark.imagenet_sample_folder(str(root)))


# The messages that ask for TensorFlow can only be seen where it is missing (CI, a fresh clone).
without_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                                        reason="TensorFlow is installed here")
with_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                     reason="TensorFlow is not installed (pip install tensorflow-cpu)")
