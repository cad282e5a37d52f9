"""`python -m experiments.train`: every user error ends in one line naming it.

Errors found by validation are tested one by one in tests/train (the
messages); these run the trainer as a user does, for each way an error
reaches the command line.
"""

import os
import re
import shutil
import socket
import subprocess
import sys

import jax.numpy as jnp
import pytest

from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import workdir as workdir_lib
from tests.train.common import tmpfs_command

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = '--config=configs/household_small_g2po.py:runlocal'
# The micro policy on 2 tasks x 4 attempts x 4 steps: one iteration in seconds.
MICRO = [CONFIG, '--config.model.preset=micro', '--config.rollout.num_tasks=2',
         '--config.rollout.group_size=4', '--config.rollout.max_new_tokens=6',
         '--config.env.max_steps=4', '--config.num_iterations=1', '--config.eval.every=0',
         '--config.ppo.minibatch_size=16', '--config.graph_image_every=0']


def _train_argv(*args: str) -> list[str]:
  return [sys.executable, '-m', 'experiments.train', *args]


def _output(argv: list[str]) -> list[str]:
  """The lines the command prints, other than INFO progress; it must fail."""
  out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=600)
  assert out.returncode == 1, out.stderr
  lines = (out.stdout + out.stderr).strip().splitlines()
  return [line for line in lines if not re.match(r'I\d{4} ', line)]


def test_an_unknown_key_is_one_line(tmp_path):
  argv = _train_argv(CONFIG, f'--workdir={tmp_path}', '--config.rollout.groupsize=8')
  assert _output(argv) == [
      "config error: unknown config key 'rollout.groupsize': rollout has no 'groupsize'; did "
      "you mean 'rollout.group_size'?"]


@pytest.mark.slow
@pytest.mark.parametrize('args, expected', [
    (['--config.seed=-1'], 'config error: seed must be an integer in [0, 2**31); got -1.'),
    (['--config.mesh.data=3'], 'config error: mesh.data=3, mesh.fsdp=1: mesh data=3 x fsdp=1 '
                               'does not use the 1 devices exactly.'),
    (['--config.model.init_from=/nonexistent'],
     "config error: model.init_from: '/nonexistent' does not exist."),
    (['--config=configs/nope.py'], "config error: --config: there is no config file "
                                   "'configs/nope.py'."),
    (['--config=configs/household_small_g2po.py:runlcal'],
     "config error: unknown config arg 'runlcal'; known: runlocal."),
])
def test_config_errors_are_one_line(tmp_path, args, expected):
  assert _output(_train_argv(CONFIG, f'--workdir={tmp_path}', *args)) == [expected]


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
  path = tmp_path / 'file'
  path.write_text('')
  assert _output(_train_argv(CONFIG, f'--workdir={path}')) == [
      f'workdir error: --workdir={path} is a file, not a directory.']


@pytest.mark.slow
def test_a_read_only_workdir_is_one_line(tmp_path):
  mount = str(tmp_path / 'ro')
  train = ' '.join(_train_argv(CONFIG, f'--workdir={mount}/run'))
  command = tmpfs_command(train, mount, read_only=True)
  if command is None:
    pytest.skip('no unprivileged mount namespaces here to make a read-only disk')
  assert _output(command) == [
      f'workdir error: --workdir={mount}/run is not writable: Read-only file system.']


@pytest.mark.slow
def test_a_second_trainer_on_a_workdir_is_one_line(tmp_path):
  holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
  try:
    (tmp_path / workdir_lib.LOCK_FILE).write_text(
        f'{{"host": "{socket.gethostname()}", "pid": {holder.pid}, "start": null}}')
    assert _output(_train_argv(*MICRO, f'--workdir={tmp_path}')) == [
        f'workdir error: the workdir is in use by trainer pid {holder.pid} on this host (lock '
        f'file {tmp_path / workdir_lib.LOCK_FILE}); stop it or use another --workdir.']
  finally:
    holder.kill()
    holder.wait()


@pytest.mark.slow
def test_unreadable_checkpoints_are_one_line(tmp_path):
  checkpoints = tmp_path / 'checkpoints'
  ckpt = ckpt_lib.Checkpointer(str(checkpoints), keep=3)
  for step in (0, 1):
    ckpt.save(step, {'w': jnp.zeros(3)}, {'iteration': step})
  ckpt.close()
  shutil.rmtree(checkpoints / '1' / 'state')
  lines = _output(_train_argv(*MICRO, f'--workdir={tmp_path}'))
  assert len(lines) == 1 and lines[0].startswith(
      f'checkpoint error: none of the checkpoints [0, 1] in {checkpoints} is readable')


@pytest.mark.slow
def test_a_full_disk_at_the_checkpoint_is_one_line(tmp_path):
  mount = str(tmp_path / 'disk')
  train = ' '.join(_train_argv(*MICRO, f'--workdir={mount}/run'))
  command = tmpfs_command(train, mount, size='96k')     # logs fit, the checkpoint does not
  if command is None:
    pytest.skip('no unprivileged mount namespaces here to make a small disk')
  lines = _output(command)
  assert len(lines) == 1 and lines[0].startswith(
      f'checkpoint error: no room to save checkpoint 0 in {mount}/run/checkpoints')
  assert lines[0].endswith('(No space left on device).')
