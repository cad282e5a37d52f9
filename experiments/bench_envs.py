r"""Environment speed and the state overlap that G2PO's graph credit feeds on.

For each environment: steps per second of a random policy over a batch
(env.step only: resets and the policy are not timed), the wall time of the
first reset of that batch per instance (ALFWorld loads its games there), for
environments with worker processes optionally again with each of
`--worker_counts` workers, then `group_size`
attempts at each of `tasks` training tasks by a noisy oracle (a uniformly
random admissible action with probability `noise`, else the oracle's), with
these statistics over every step taken (a step sits in the node
(task, state key) of the state it acts from):

  shared_fraction     fraction of steps whose node is visited by >= 2 attempts
  visits_per_node     steps / distinct nodes
  singleton_fraction  fraction of steps whose node is visited exactly once
  win_rate            fraction of attempts won within the env's max_steps
  score               mean episode reward (partial credit: the shop's purchase
                      score; equals win_rate where rewards are 0/1)
  oracle_steps        mean episode length of the noise-free oracle

The G2PO paper reports about 5 visits per node and 8% single-visit steps on
ALFWorld.

  python -m experiments.bench_envs
  python -m experiments.bench_envs --envs=household-small --tasks=16 \
      --json=/tmp/envs.json
  python -m experiments.bench_envs --envs=alfworld --tasks=16 \
      --worker_counts=1,2,4 --json=/tmp/alfworld.json
"""

import json
import time

from absl import app, flags, logging
import numpy as np

from g2po_jax import envs

_ENVS = flags.DEFINE_list(
    'envs', 'household-small,household,twx-cooking,twx-twc,twx-coin,shop-small,shop',
    f'Environments to measure, from: {", ".join(envs.NAMES)}.')
_TASKS = flags.DEFINE_integer('tasks', 64, 'Training tasks per environment.')
_GROUP_SIZE = flags.DEFINE_integer('group_size', 8, 'Attempts per task.')
_NOISE = flags.DEFINE_float('noise', 0.3, 'Probability of a random action.')
_SPEED_SECONDS = flags.DEFINE_float(
    'speed_seconds', 2.0, 'Minimum env.step time spent measuring speed.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the policies\' randomness.')
_JSON = flags.DEFINE_string('json', None, 'Write the results here as JSON.')
_WORKER_COUNTS = flags.DEFINE_list(
    'worker_counts', [], 'Also measure steps/s with each of these numbers of '
    'worker processes (environments with a num_workers option).')


def steps_per_second(env: envs.BatchEnv, seeds: np.ndarray,
                     rng: np.random.Generator,
                     min_seconds: float) -> tuple[float, float]:
  """Random-policy throughput of env.step over batches of `seeds`.

  Returns:
    (steps per second, wall seconds per instance of the first reset).
  """
  steps, elapsed, reset_s = 0, 0.0, None
  while elapsed < min_seconds:
    tic = time.perf_counter()
    live = env.reset(seeds)
    if reset_s is None:
      reset_s = (time.perf_counter() - tic) / len(seeds)
    for _ in range(env.max_steps):
      actions = [ts.admissible[rng.integers(len(ts.admissible))]
                 if ts is not None and not ts.done else None for ts in live]
      if all(a is None for a in actions):
        break
      tic = time.perf_counter()
      out = env.step(actions)
      elapsed += time.perf_counter() - tic
      steps += sum(a is not None for a in actions)
      live = [o if o is not None else ts for o, ts in zip(out, live)]
  return steps / elapsed, reset_s


def noisy_oracle_rollouts(env: envs.BatchEnv, task_seeds: np.ndarray,
                          group_size: int, noise: float,
                          rng: np.random.Generator):
  """Runs `group_size` noisy-oracle attempts at each task.

  Returns:
    node [n] int: the (task, state key) node of each step taken, numbered
      densely; attempt [n] int: the attempt (row) taking it; won [A] bool
      per attempt (A = len(task_seeds) * group_size); lengths [A] int;
      score [A] float, the summed reward of each attempt.
  """
  seeds = np.repeat(task_seeds, group_size)
  live = env.reset(seeds)
  node_of: dict[tuple[int, str], int] = {}
  nodes, attempts = [], []
  won = np.zeros(len(seeds), bool)
  lengths = np.zeros(len(seeds), np.int64)
  score = np.zeros(len(seeds))
  for _ in range(env.max_steps):
    oracle = env.oracle_actions()
    actions = []
    for i, ts in enumerate(live):
      if ts is None or ts.done:
        actions.append(None)
        continue
      node = node_of.setdefault((i // group_size, ts.state_key), len(node_of))
      nodes.append(node)
      attempts.append(i)
      random = rng.random() < noise
      actions.append(ts.admissible[rng.integers(len(ts.admissible))]
                     if random else oracle[i])
    if all(a is None for a in actions):
      break
    out = env.step(actions)
    for i, ts in enumerate(out):
      if ts is not None:
        lengths[i] += 1
        won[i] |= ts.won
        score[i] += ts.reward
    live = [o if o is not None else ts for o, ts in zip(out, live)]
  return np.asarray(nodes), np.asarray(attempts), won, lengths, score


def overlap_statistics(node: np.ndarray, attempt: np.ndarray) -> dict:
  """shared_fraction, visits_per_node and singleton_fraction of steps.

  Args:
    node: [n] int, dense node ids of the steps.
    attempt: [n] int, the attempt taking each step.
  """
  visits = np.bincount(node)                                   # [N]
  pairs = np.unique(np.stack([node, attempt], -1), axis=0)     # distinct
  attempts_per_node = np.bincount(pairs[:, 0], minlength=len(visits))
  return {
      'shared_fraction': float(np.mean(attempts_per_node[node] >= 2)),
      'visits_per_node': float(len(node) / len(visits)),
      'singleton_fraction': float(np.mean(visits[node] == 1)),
  }


def measure(env: envs.BatchEnv, num_tasks: int, group_size: int,
            noise: float, min_seconds: float, seed: int) -> dict:
  """All statistics of one environment."""
  task_seeds = envs.split_seeds('train', num_tasks)
  speed, reset_s = steps_per_second(env, task_seeds,
                                    np.random.default_rng(seed), min_seconds)
  # Its own generator: the timed loop's draws must not shift these.
  rng = np.random.default_rng(seed + 1)
  node, attempt, won, _, score = noisy_oracle_rollouts(env, task_seeds, group_size,
                                                       noise, rng)
  _, _, clean_won, clean_len, _ = noisy_oracle_rollouts(env, task_seeds, 1, 0.0, rng)
  if not clean_won.all():
    logging.warning('%s: the noise-free oracle lost %d of %d tasks.', env.name,
                    (~clean_won).sum(), num_tasks)
  return {'steps_per_s': speed, 'reset_s': reset_s,
          **overlap_statistics(node, attempt),
          'win_rate': float(won.mean()), 'score': float(score.mean()),
          'oracle_steps': float(clean_len.mean())}


def speed_by_workers(name: str, counts: list[int], num_tasks: int,
                     min_seconds: float, seed: int) -> dict[str, float]:
  """Random-policy steps/s of a fresh `name` env with each worker count."""
  speeds = {}
  for count in counts:
    with envs.make(name, num_workers=count) as env:
      speeds[str(count)], _ = steps_per_second(
          env, envs.split_seeds('train', num_tasks),
          np.random.default_rng(seed), min_seconds)
  return speeds


def main(argv):
  del argv
  unknown = [n for n in _ENVS.value if n not in envs.NAMES]
  if unknown:
    raise app.UsageError(f'--envs: unknown {unknown}; choose from {envs.NAMES}.')
  results, skipped = {}, {}
  for name in _ENVS.value:
    try:
      env = envs.make(name)
    # Optional backends (a JVM, a module still being written) may be missing;
    # the other environments are still worth measuring.
    except Exception as e:  # pylint: disable=broad-except
      skipped[name] = f'{type(e).__name__}: {e}'
      logging.warning('skipping %s: %s', name, skipped[name])
      continue
    with env:
      results[name] = measure(env, _TASKS.value, _GROUP_SIZE.value,
                              _NOISE.value, _SPEED_SECONDS.value, _SEED.value)
    if _WORKER_COUNTS.value and 'num_workers' in envs.option_names(name):
      results[name]['steps_per_s_by_workers'] = speed_by_workers(
          name, [int(k) for k in _WORKER_COUNTS.value], _TASKS.value,
          _SPEED_SECONDS.value, _SEED.value)

  print(f'\n{_TASKS.value} tasks x {_GROUP_SIZE.value} attempts, noisy oracle '
        f'({_NOISE.value:.0%} random actions)\n')
  print('| env | steps/s | reset s | shared fraction | visits/node '
        '| singleton fraction | win rate | score | oracle steps |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for name, r in results.items():
    print(f'| {name} | {r["steps_per_s"]:,.0f} | {r["reset_s"]:.4f} | '
          f'{r["shared_fraction"]:.2f} | {r["visits_per_node"]:.2f} | '
          f'{r["singleton_fraction"]:.2f} | {r["win_rate"]:.2f} | '
          f'{r["score"]:.2f} | {r["oracle_steps"]:.1f} |')
  for name, r in results.items():
    if 'steps_per_s_by_workers' in r:
      print(f'\n{name} random-policy steps/s by worker processes: ' + ', '.join(
          f'{k}: {v:,.1f}' for k, v in r['steps_per_s_by_workers'].items()))
  for name, reason in skipped.items():
    print(f'\nskipped {name}: {reason}')
  if _JSON.value:
    with open(_JSON.value, 'w') as f:
      json.dump({'envs': results, 'skipped': skipped,
                 'config': {'tasks': _TASKS.value,
                            'group_size': _GROUP_SIZE.value,
                            'noise': _NOISE.value}}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
