"""Tests for g2po_jax/train/workdir.py: the checks and the trainer's lock."""

import json
import os
import socket
import subprocess
import sys

import pytest

from g2po_jax.train import workdir as workdir_lib


def _error(fn, *args, **kwargs) -> str:
  with pytest.raises(workdir_lib.WorkdirError) as info:
    fn(*args, **kwargs)
  assert '\n' not in str(info.value)
  return str(info.value)


def _write_lock(workdir, **holder):
  (workdir / workdir_lib.LOCK_FILE).write_text(json.dumps(holder))


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid                  # reaped: no process has this pid now


def test_prepare_creates_and_locks(tmp_path):
  workdir = tmp_path / 'a' / 'b'
  lock = workdir_lib.prepare(str(workdir))
  holder = json.loads((workdir / workdir_lib.LOCK_FILE).read_text())
  assert holder['host'] == socket.gethostname() and holder['pid'] == os.getpid()
  lock.release()
  assert os.listdir(workdir) == []


def test_a_file_is_not_a_workdir(tmp_path):
  path = tmp_path / 'file'
  path.write_text('x')
  assert _error(workdir_lib.prepare, str(path)) == f'--workdir={path} is a file, not a directory.'
  assert 'is not writable: Not a directory' in _error(workdir_lib.prepare, str(path / 'sub'))


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only directories')
def test_a_read_only_workdir_is_refused(tmp_path):
  tmp_path.chmod(0o555)
  try:
    assert 'is not writable: Permission denied' in _error(workdir_lib.prepare, str(tmp_path))
  finally:
    tmp_path.chmod(0o755)


def test_a_second_trainer_is_stopped_naming_the_holder(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  try:
    _write_lock(tmp_path, host=socket.gethostname(), pid=holder.pid,
                start=workdir_lib._start_time(holder.pid))
    message = _error(workdir_lib.prepare, str(tmp_path))
    assert message == (f'the workdir is in use by trainer pid {holder.pid} on this host (lock '
                       f'file {tmp_path / workdir_lib.LOCK_FILE}); stop it or use another '
                       '--workdir.')
  finally:
    holder.kill()
    holder.wait()
  workdir_lib.prepare(str(tmp_path)).release()        # gone now: taken over


def test_a_stale_lock_is_taken_over(tmp_path, caplog):
  dead = _dead_pid()
  _write_lock(tmp_path, host=socket.gethostname(), pid=dead, start=None)
  lock = workdir_lib.prepare(str(tmp_path))
  assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())['pid'] == os.getpid()
  assert f'stale lock {tmp_path / workdir_lib.LOCK_FILE} of pid {dead}' in caplog.text
  lock.release()


def test_a_reused_pid_is_not_the_holder(tmp_path):
  """Same pid, another start time: the holder died and its pid was reused."""
  alive = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
  try:
    _write_lock(tmp_path, host=socket.gethostname(), pid=alive.pid,
                start=workdir_lib._start_time(alive.pid) - 1)
    workdir_lib.prepare(str(tmp_path)).release()
  finally:
    alive.kill()
    alive.wait()


def test_a_lock_from_another_host_is_respected(tmp_path):
  _write_lock(tmp_path, host='elsewhere', pid=1, start=None)
  assert 'in use by trainer pid 1 on host elsewhere' in _error(workdir_lib.prepare, str(tmp_path))
  assert 'delete the lock file if that trainer is gone' in _error(workdir_lib.prepare,
                                                                  str(tmp_path))


def test_an_unreadable_lock_is_not_taken_over(tmp_path):
  (tmp_path / workdir_lib.LOCK_FILE).write_text('{"ho')
  assert 'cannot be read; delete it if no trainer is running there' in _error(
      workdir_lib.prepare, str(tmp_path))


def test_the_same_process_may_lock_again(tmp_path):
  """A process that trains twice in one workdir (as the tests do) holds it."""
  workdir_lib.prepare(str(tmp_path))
  workdir_lib.prepare(str(tmp_path)).release()
  assert not (tmp_path / workdir_lib.LOCK_FILE).exists()


def test_other_processes_of_a_run_do_not_lock(tmp_path):
  _write_lock(tmp_path, host='process-0-host', pid=1, start=None)
  assert workdir_lib.prepare(str(tmp_path), lock=False) is None
  assert json.loads((tmp_path / workdir_lib.LOCK_FILE).read_text())['host'] == 'process-0-host'


def test_the_lock_goes_when_the_process_exits(tmp_path):
  code = f'from g2po_jax.train import workdir; workdir.prepare({str(tmp_path)!r})'
  subprocess.run([sys.executable, '-c', code], check=True)
  assert not (tmp_path / workdir_lib.LOCK_FILE).exists()
