"""A training config small enough to compile and run in seconds, and a tiny disk."""

import os
import shutil
import subprocess

import ml_collections as mlc

from configs import household_small_g2po
from g2po_jax import envs


def micro_config(estimator: str = 'g2po', **overrides) -> mlc.ConfigDict:
  """household-small with the 'micro' policy: 2 tasks x 4 attempts x 4 steps.

  Args:
    estimator: credit.name.
    **overrides: dotted keys with '__' for '.', e.g. ckpt__every=1.
  """
  c = household_small_g2po.get_config('runlocal')
  c.model.preset = 'micro'
  c.credit.name = estimator
  c.credit.norm = 'mean_std_norm'   # the spec's default (the demo config picks mean_norm)
  c.rollout.num_tasks = 2
  c.rollout.group_size = 4
  c.rollout.prompt_len = 128
  c.rollout.max_new_tokens = 6
  c.env.max_steps = 4
  c.num_iterations = 1
  c.eval.every = 0
  c.ppo.minibatch_size = 16
  c.graph_image_every = 0
  for key, value in overrides.items():
    node = c
    *path, last = key.split('__')
    for part in path:
      node = node[part]
    node[last] = value
  return c


class FollowsOracle(envs.BatchEnv):
  """Wraps an environment so that an untrained policy acts like a noisy oracle
  in every other instance: there, an action whose length is not a multiple
  of 3 becomes the oracle's next action. Other actions pass through (almost
  always invalid), so each group mixes successes and failures.

  A random micro policy never writes an admissible action, so every step is
  invalid, every attempt fails, and group estimators give exactly 0: the
  end-to-end tests would not notice credit that never reaches the loss.
  """

  def __init__(self, env: envs.BatchEnv):
    self._env = env
    self.name, self.max_steps = env.name, env.max_steps

  def reset(self, seeds):
    return self._env.reset(seeds)

  def step(self, actions):
    oracle = self._env.oracle_actions()
    return self._env.step([
        best if i % 2 == 0 and action is not None and best is not None and len(action) % 3
        else action for i, (action, best) in enumerate(zip(actions, oracle))])

  def oracle_actions(self):
    return self._env.oracle_actions()

  def vocabulary(self):
    return self._env.vocabulary()

  def task_type(self, index):
    return self._env.task_type(index)

  def close(self):
    self._env.close()


def follows_oracle(monkeypatch) -> None:
  """Makes the trainer's environments `FollowsOracle`."""
  make = envs.make
  monkeypatch.setattr(envs, 'make', lambda name, **kw: FollowsOracle(make(name, **kw)))


def tmpfs_command(command: str, mountpoint: str, size: str = '96k',
                  read_only: bool = False) -> list[str] | None:
  """argv running shell `command` with a fresh tmpfs of `size` at `mountpoint`.

  The mount lives in a user and mount namespace of its own (no root needed,
  nothing outside changes), so a test can fill a disk or make it read-only.
  None where this kernel does not allow unprivileged namespaces.
  """
  if shutil.which('unshare') is None:
    return None
  os.makedirs(mountpoint, exist_ok=True)
  prefix = ['unshare', '--user', '--map-root-user', '--mount', 'sh', '-c']
  mount = f'mount -t tmpfs -o size={size}{",ro" if read_only else ""} tmpfs {mountpoint}'
  if subprocess.run(prefix + [mount], capture_output=True).returncode:
    return None
  return prefix + [f'{mount} && {command}']
