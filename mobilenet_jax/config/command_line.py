"""Config files as the command line names them ('path.py[:arg]'), and one-line explanations of
--config.* overrides that absl's parser rejects."""

import ast
import importlib.util
import os

import ml_collections

from mobilenet_jax.config import schema
from mobilenet_jax.core import errors


def load_function(path, flag, name, example):
  """The function `name` of the Python file at `path`, which `flag` named; a missing file, a
  syntax error or a missing function is one line."""
  if not os.path.isfile(path):
    raise errors.ConfigError(f"{flag}: no such file {path!r}")
  module_spec = importlib.util.spec_from_file_location(f"_{name}_file", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as error:
    raise errors.ConfigError(f"{flag}: {path} line {error.lineno}: {error.msg}") from None
  if not hasattr(module, name):
    raise errors.ConfigError(f"{flag}: {path} defines no {name}() (see {example})")
  return getattr(module, name)


def load_config_file(spec, flag=None):
  """Loads 'path/to/config.py[:arg]' the way --config does: get_config(arg); its errors name
  `flag` (default: --config=SPEC)."""
  path, _, arg = spec.partition(":")
  flag = flag or f"--config={spec}"
  return load_function(path, flag, "get_config", "configs/mobilenet_v2.py")(arg or None)


def apply_overrides(config, overrides):
  """Sets ((dotted key, value), ...) on `config`; a string value for a key of another type is
  read as --config.key=value reads it (a number, a bool, a tuple)."""
  for dotted, value in overrides:
    *groups, key = dotted.split(".")
    node = config
    for group in groups:
      node = node[group]
    if isinstance(value, str) and not isinstance(node[key], str):
      lowered = value.lower()
      try:
        value = lowered == "true" if lowered in ("true", "false") else ast.literal_eval(value)
      except (ValueError, SyntaxError):
        raise errors.ConfigError(
          f"--config.{dotted}={value}: config.{dotted} takes a {type(node[key]).__name__} "
          f"(the default is {node[key]!r})"
        ) from None
    node[key] = value
  return config


def parse_override(arg):
  """'--config.key=value' as (dotted key, value as written): the one form overrides take."""
  dotted, sep, value = arg[len("--config.") :].partition("=")
  if not sep or not dotted:
    raise errors.ConfigError(f"{arg}: expected --config.KEY=VALUE")
  return dotted, value


def check_overrides(config, argv):
  """Explains a failed --config.* override of `config`: an unknown key (with the keys that
  exist there) or a value that does not parse as the key's type."""
  if config is None:
    if any(a.startswith("--config.") for a in argv):
      raise errors.ConfigError(
        "--config.KEY=VALUE needs --config=FILE[:arg] (e.g. "
        "--config=configs/mobilenet_v2.py), or --sweep=FILE"
      )
    return
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    path, value = parse_override(arg)
    prefix, node = "config", config
    for key in path.split("."):
      if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        allowed = node.keys() if isinstance(node, ml_collections.ConfigDict) else []
        raise errors.ConfigError(f"{arg}: {schema.unknown_key(f'{prefix}.{key}', allowed)}")
      prefix, node = f"{prefix}.{key}", node[key]
    if isinstance(node, (int, float)) and not isinstance(node, bool):
      try:
        type(node)(value)
      except ValueError:
        raise errors.ConfigError(
          f"{arg}: {prefix} takes a {type(node).__name__} (the default is {node!r})"
        ) from None
