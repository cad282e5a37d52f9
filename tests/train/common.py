"""A training config small enough to compile and run in seconds, and a tiny disk."""

import os
import shutil
import subprocess

import ml_collections as mlc

from configs import household_small_g2po


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
