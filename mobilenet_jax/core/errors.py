"""Errors a user can fix: `launch.py` prints their message in one line, never a traceback."""


class UserError(Exception):
  """A config, dataset, weights file or workdir that cannot be used as given; the message names
  the key or file and what to do."""


class ConfigError(UserError, ValueError):
  """A config value that cannot be used; the message names the key and the allowed values."""


class DataError(UserError, ValueError):
  """A dataset that cannot be read; the message says what to do."""


class WeightsError(UserError, ValueError):
  """Weights that do not fit the configured model; the message lists every problem."""


class TrainingError(UserError, RuntimeError):
  """A run that cannot go on (NaN loss, bad batch split); the message names the step."""


class WorkdirBusy(UserError, RuntimeError):
  """The workdir is held by another live process, or cannot be written; the message says which."""
