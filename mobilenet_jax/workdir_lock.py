"""One run or sweep per workdir at a time: an exclusive lock that names its holder.

The lock is `flock` on WORKDIR/.lock, which the kernel releases when the holder exits in any
way (kill -9 included), so a crashed holder never leaves a stale lock; the file itself only
records who held it last, for the message a second launcher gets.
"""

import datetime
import fcntl
import os
import socket

from mobilenet_jax import errors

LOCK_FILE = ".lock"


class WorkdirBusy(errors.UserError, RuntimeError):
  """The workdir is held by another live process, or cannot be written; the message says which."""


class WorkdirLock:

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def __enter__(self):
    workdir = os.path.dirname(self.path)
    try:
      os.makedirs(workdir, exist_ok=True)
      handle = open(self.path, "a+")
    except OSError as error:  # a file in its place, no permission, a read-only filesystem
      raise WorkdirBusy(f"--workdir={workdir} cannot hold a run: {error.strerror} "
                        f"({error.filename}); choose a directory you can write") from None
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      handle.seek(0)
      holder = handle.read().strip() or "another process"
      handle.close()
      raise WorkdirBusy(f"{os.path.dirname(self.path)} is in use by {holder}; wait for it to "
                        "finish, stop it (it checkpoints on SIGTERM), or use another --workdir")
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
    handle.flush()
    self._file = handle
    return self

  def __exit__(self, *_):
    fcntl.flock(self._file, fcntl.LOCK_UN)
    self._file.close()
