"""A run's workdir: checked before anything starts, and locked while it trains.

Two trainers on one workdir would overwrite each other's checkpoints and logs
(killing a sweep can leave a member running, and an immediate rerun starts a
second trainer). So the trainer takes `WORKDIR/trainer.lock`, a JSON file
holding its host, pid and process start time, created atomically
(`O_CREAT | O_EXCL`). A second trainer stops with one line naming the
holder. A lock whose process is gone (same host, no live process with that
pid and start time) is stale and taken over; a lock from another host cannot
be checked, so the message says which file to delete once that trainer is
gone. The lock is released when the run ends and, failing that, at exit.

In a multi-process run only process 0 locks: the other processes share the
workdir legitimately.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import tempfile

from absl import logging

from g2po_jax.train.config import ConfigError

LOCK_FILE = 'trainer.lock'


class WorkdirError(ConfigError):
  """The workdir cannot be used: not a directory, not writable, or in use."""


def prepare(workdir: str, lock: bool = True) -> Lock | None:
  """Creates `workdir` if needed, checks that it is a writable directory, and
  (with `lock`) locks it for this process.

  Returns:
    The held `Lock` (None without `lock`).
  Raises:
    WorkdirError: naming the workdir and the problem, in one line.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'--workdir={workdir} is a file, not a directory.')
  try:
    os.makedirs(workdir, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=workdir, prefix='.write_test')
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f'--workdir={workdir} is not writable: {e.strerror}.') from None
  return Lock(workdir) if lock else None


def _start_time(pid: int) -> int | None:
  """When process `pid` started (clock ticks since boot), or None if unknown.

  Tells a live process from an unrelated one that reuses a dead one's pid.
  """
  try:
    with open(f'/proc/{pid}/stat') as f:
      # Field 22; the command name (field 2) may hold spaces, so split after it.
      return int(f.read().rsplit(')', 1)[1].split()[19])
  except (OSError, IndexError, ValueError):
    return None


def _alive(pid: int, start: int | None) -> bool:
  """Whether `pid` (started at `start`, if known) is still running here."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:       # it exists, owned by someone else
    pass
  now = _start_time(pid)
  return start is None or now is None or now == start


class Lock:
  """The trainer's lock on a workdir; see the module docstring."""

  def __init__(self, workdir: str):
    self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
    self._mine = {'host': socket.gethostname(), 'pid': os.getpid(),
                  'start': _start_time(os.getpid())}
    for _ in range(3):         # a stale lock is removed, then taken
      try:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
      except FileExistsError:
        self._take_over_if_stale()
        continue
      with os.fdopen(fd, 'w') as f:
        json.dump(self._mine, f)
      atexit.register(self.release)
      return
    raise WorkdirError(f'could not take the lock {self.path}; another trainer is starting on '
                       'the same workdir.')

  def _holder(self) -> dict | None:
    try:
      with open(self.path) as f:
        holder = json.load(f)
      return holder if {'host', 'pid'} <= set(holder) else None
    except FileNotFoundError:
      return {}                # released meanwhile: try again
    except (OSError, ValueError, TypeError):
      return None

  def _take_over_if_stale(self) -> None:
    """Removes the lock file if its holder is gone; raises if it is alive."""
    holder = self._holder()
    if holder == {}:
      return
    if holder is None:
      raise WorkdirError(f'the workdir is locked by {self.path}, which cannot be read; delete '
                         'it if no trainer is running there.')
    here = holder['host'] == self._mine['host']
    if here and (holder['pid'] == self._mine['pid']
                 or not _alive(holder['pid'], holder.get('start'))):
      if self._holder() == holder:          # unchanged since it was judged stale
        logging.warning('taking over the stale lock %s of pid %d, which is gone.', self.path,
                        holder['pid'])
        try:
          os.remove(self.path)
        except FileNotFoundError:
          pass
      return
    where = 'this host' if here else f'host {holder["host"]}'
    raise WorkdirError(
        f'the workdir is in use by trainer pid {holder["pid"]} on {where} (lock file '
        f'{self.path}); stop it or use another --workdir'
        + ('.' if here else '; delete the lock file if that trainer is gone.'))

  def release(self) -> None:
    """Deletes the lock file if this process still holds it."""
    if self._holder() == self._mine:
      try:
        os.remove(self.path)
      except FileNotFoundError:
        pass
    atexit.unregister(self.release)
