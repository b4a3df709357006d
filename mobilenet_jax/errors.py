"""The base of every error a user can fix: `launch.py` prints its message in one line."""


class UserError(Exception):
  """A config, dataset, weights file or workdir that cannot be used as given; the message names
  the key or file and what to do."""
