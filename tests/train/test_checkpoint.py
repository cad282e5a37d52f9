"""Tests for g2po_jax/train/checkpoint.py: one-line errors for a full disk and
for checkpoints that cannot be read (the rest is tested through the trainer)."""

import collections
import errno
import os
import shutil
import subprocess
import sys

import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from g2po_jax.train import checkpoint as ckpt_lib
from tests.train.common import tmpfs_command

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STATE = {'w': jnp.ones((512, 512)), 'b': jnp.arange(8.0)}        # 1 MiB


def _one_line(error: Exception) -> str:
  assert '\n' not in str(error)
  return str(error)


def test_no_room_stops_the_save_before_it_starts(tmp_path, monkeypatch):
  usage = collections.namedtuple('usage', 'total used free')
  monkeypatch.setattr(shutil, 'disk_usage', lambda path: usage(2**30, 2**30 - 2**19, 2**19))
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), keep=2)
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    ckpt.save(3, STATE, {'iteration': 3})
  ckpt.close()
  assert _one_line(info.value) == (
      f'no room to save checkpoint 3 in {tmp_path}: it needs about 2.0 MiB and the disk has '
      '0.5 MiB free (No space left on device).')
  assert ckpt.steps() == []


@pytest.mark.parametrize('failure', [
    OSError(errno.ENOSPC, 'No space left on device'),
    ValueError('RESOURCE_EXHAUSTED: Error writing local file "x/_sharding": Failed to write '
               "17078 bytes to file 4: No space left on device [os_error_code='28']"),
])
def test_a_failed_write_is_one_checkpoint_error(tmp_path, monkeypatch, failure):
  def save(*args, **kwargs):
    raise failure
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), keep=2)
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    ckpt.save(5, STATE, {'iteration': 5})
  ckpt.close()
  assert _one_line(info.value) == (f'saving checkpoint 5 in {tmp_path} failed: No space left '
                                   'on device (errno 28).')


def test_other_errors_keep_their_traceback(tmp_path, monkeypatch):
  def save(*args, **kwargs):
    raise KeyError('a bug')
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), keep=2)
  with pytest.raises(KeyError, match='a bug'):
    ckpt.save(5, STATE, {'iteration': 5})
  ckpt.close()


def test_no_readable_checkpoint_is_one_error(tmp_path):
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), keep=3)
  for step in (0, 1):
    ckpt.save(step, STATE, {'iteration': step})
  ckpt.close()
  for step in ('0', '1'):
    shutil.rmtree(tmp_path / step / 'state')
  ckpt = ckpt_lib.Checkpointer(str(tmp_path), keep=3)
  with pytest.raises(ckpt_lib.CheckpointError) as info:
    ckpt.restore_latest(ckpt_lib.abstract(STATE))
  ckpt.close()
  message = _one_line(info.value)
  assert message.startswith(f'none of the checkpoints [0, 1] in {tmp_path} is readable '
                            '(checkpoint 1: ')
  assert message.endswith('); move the directory away to start over.')


# Saves STATE into a 96 KiB tmpfs; with FAKE_ROOM the disk claims to have
# room, so orbax really starts writing and fails half-way.
_SAVE = '''
import collections, shutil, sys
import jax
from g2po_jax.train import checkpoint
if sys.argv[2] == 'FAKE_ROOM':
  shutil.disk_usage = lambda p: collections.namedtuple('u', 'total used free')(2**40, 0, 2**40)
ckpt = checkpoint.Checkpointer(sys.argv[1], keep=2)
try:
  noise = jax.random.normal(jax.random.key(0), (512, 512))     # does not compress
  ckpt.save(0, {'w': noise}, {'iteration': 0})
  ckpt.close()
except checkpoint.CheckpointError as e:
  sys.exit(f'checkpoint error: {e}')
'''


@pytest.mark.parametrize('room', ['REAL', 'FAKE_ROOM'])
def test_a_full_disk_is_one_line(tmp_path, room):
  mount = str(tmp_path / 'disk')
  command = tmpfs_command(f'{sys.executable} -c "$0" {mount}/checkpoints {room}', mount)
  if command is None:
    pytest.skip('no unprivileged mount namespaces here to make a small disk')
  out = subprocess.run(command[:-1] + [command[-1], _SAVE], capture_output=True, text=True,
                       cwd=REPO, timeout=300)
  lines = (out.stdout + out.stderr).strip().splitlines()
  assert out.returncode == 1
  assert len(lines) == 1, out.stderr
  assert lines[0].startswith(f'checkpoint error: ') and f'{mount}/checkpoints' in lines[0]
  assert 'No space left on device' in lines[0]
