import atexit
import logging
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

from tests import helpers  # noqa: E402

# Session fixtures that train a run: the tests using one go to one xdist worker
# (--dist loadgroup), so that the other never waits on its lock.
TRAINED_FIXTURES = ("tiny_teacher", "tiny_run", "qat_run")


def pytest_itemcollected(item):
  trained = [name for name in TRAINED_FIXTURES if name in getattr(item, "fixturenames", ())]
  if trained and not item.get_closest_marker("xdist_group"):
    item.add_marker(pytest.mark.xdist_group(trained[0]))


def pytest_collection_modifyitems(items):
  """The tests marked slow start first, so that neither xdist worker idles through the last."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_tmp_path(tmp_path_factory, worker_id):
  """A temporary directory that every xdist worker of this session sees (each worker's own
  base directory is a child of it)."""
  base = tmp_path_factory.getbasetemp()
  return base if worker_id == "master" else base.parent


@pytest.fixture(scope="session")
def tiny_teacher(shared_tmp_path):
  """(config, workdir) of a float tiny run of 100 steps, to teach students."""
  workdir = shared_tmp_path / "tiny_teacher"
  return helpers.trained_once(helpers.tiny_config(**{"training.num_steps": 100}), workdir)


@pytest.fixture(scope="module")
def imagenet_folder(tmp_path_factory):
  """The 250 ImageNet sample images in the folder layout PATH/{train,val}/<wnid>/<file> (links)."""
  root = tmp_path_factory.mktemp("imagenet_sample")
  return pathlib.Path(helpers.imagenet_sample_folder(str(root)))


@pytest.fixture(autouse=True)
def library_notes(caplog):
  """The library's notes (logging, INFO and up) are what caplog.text holds."""
  caplog.set_level(logging.INFO, logger="mobilenet_jax")
