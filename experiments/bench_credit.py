r"""Benchmark: hashing + graph + every estimator vs the dict-based reference.

  python -m experiments.bench_credit                       # the README table
  python -m experiments.bench_credit --json=/tmp/credit.json --repeats=5

Synthetic rollouts: each task has a pool of states with 512-token
observations (lengths 256-512); its 8 attempts walk over the pool so states
repeat about as often as in ALFWorld. Both sides hash each observation once
(the T states of a trajectory plus its final observation): ours with
`graph.hash_tokens`, the reference with Python tuples as dict keys. Times are
medians over repeats, after compilation; device work ends with
`block_until_ready`.
"""

import json
import time

from absl import app
from absl import flags
import jax
import numpy as np

from g2po_jax import credit
from g2po_jax import graph as graph_lib
from tests.credit import reference

FLAGS = flags.FLAGS
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats per measurement (median).')
flags.DEFINE_integer('obs_len', 512, 'Tokens per observation.')
flags.DEFINE_bool('big', True, 'Also run the 100k-row batch.')
flags.DEFINE_list('steps', ['15', '50', '200'], 'Episode lengths T of the 16x8xT batches.')

SUCCESS_REWARD = 10.0


def make_rollouts(num_tasks: int, group_size: int, steps: int, obs_len: int, seed: int = 0):
  """A padded rollout batch with token observations [B, T+1, L]."""
  rng = np.random.default_rng(seed)
  b = num_tasks * group_size
  pool = max(steps // 2, 4)                        # states per task
  vocab_tokens = rng.integers(0, 150_000, (num_tasks, pool, obs_len), dtype=np.int32)
  obs_lengths = rng.integers(obs_len // 2, obs_len + 1, (num_tasks, pool))
  # Random walks that mostly move forward: revisits across attempts, some loops.
  moves = rng.choice([-1, 0, 1, 1, 1], (b, steps + 1))
  walk = np.clip(np.cumsum(moves, axis=1), 0, pool - 1)
  task = np.repeat(np.arange(num_tasks), group_size)
  lengths = np.where(rng.random(b) < 0.5, rng.integers(steps // 2, steps + 1, b), steps)
  mask = np.arange(steps)[None] < lengths[:, None]
  reward = np.zeros((b, steps), np.float32)
  won = (lengths < steps)
  reward[np.arange(b), lengths - 1] = np.where(won, SUCCESS_REWARD, 0.0)
  return dict(
      group=task,
      tokens=vocab_tokens[task[:, None], walk],          # [B, T+1, L]
      token_lengths=obs_lengths[task[:, None], walk],    # [B, T+1]
      reward=reward, valid=rng.random((b, steps)) < 0.9, mask=mask)


def _median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _ours(batch, name, keys=None):
  if keys is None:
    keys = graph_lib.hash_tokens(batch['tokens'], batch['token_lengths'])
  out = credit.estimate(name, group=batch['group'], state=keys[:, :-1], next_state=keys[:, 1:],
                        reward=batch['reward'], valid=batch['valid'], mask=batch['mask'])
  return out.block_until_ready()


def _reference(batch, name):
  tokens, lengths = batch['tokens'], batch['token_lengths']
  b, t1 = lengths.shape
  ids = {}
  keys = [[ids.setdefault(tuple(tokens[i, j, :lengths[i, j]].tolist()), len(ids))
           for j in range(t1)] for i in range(b)]
  return reference.estimate(name, group=batch['group'], state=[k[:-1] for k in keys],
                            next_state=[k[1:] for k in keys], reward=batch['reward'],
                            valid=batch['valid'], mask=batch['mask'])


def run_case(label, batch, names, reference_names, repeats):
  rows = int(batch['mask'].sum())
  keys = graph_lib.hash_tokens(batch['tokens'], batch['token_lengths'])
  hash_s = _median_seconds(lambda: graph_lib.hash_tokens(batch['tokens'], batch['token_lengths']),
                           repeats)
  # Any hash must read every observation token once: this bounds the end to end time.
  read_s = _median_seconds(lambda: batch['tokens'].sum(dtype=np.int64), repeats)
  groups = credit.validate_batch(batch['group'], keys[:, :-1], keys[:, 1:], batch['reward'],
                                 batch['valid'], batch['mask'])
  graph_s = _median_seconds(lambda: graph_lib.build_graph(groups[0], groups[1], groups[2],
                                                          batch['mask']), repeats)
  result = {'rows': rows, 'hash_ms': 1e3 * hash_s, 'read_once_ms': 1e3 * read_s,
            'graph_ms': 1e3 * graph_s, 'estimators': {}}
  for name in names:
    _ours(batch, name, keys)                               # compile
    est_s = _median_seconds(lambda: _ours(batch, name, keys), repeats)
    e2e_s = _median_seconds(lambda: _ours(batch, name), repeats)
    entry = {'estimate_ms': 1e3 * est_s, 'end_to_end_ms': 1e3 * e2e_s,
             'us_per_row': 1e6 * e2e_s / rows}
    if name in reference_names:
      ref_s = _median_seconds(lambda: _reference(batch, name), max(1, repeats // 3))
      entry.update(reference_ms=1e3 * ref_s, speedup=ref_s / e2e_s)
      np.testing.assert_allclose(np.asarray(_ours(batch, name, keys)),
                                 _reference(batch, name), atol=1e-3)
    result['estimators'][name] = entry
  print(f'\n### {label}: {rows} rows; hashing {result["hash_ms"]:.1f} ms (reading the '
        f'{batch["tokens"].nbytes / 1e6:.1f} MB of observations once: '
        f'{result["read_once_ms"]:.1f} ms), graph {result["graph_ms"]:.1f} ms')
  print('| estimator | estimate() ms | end to end ms (hash incl.) | us/row | '
        'reference ms | speedup |')
  print('|---|---:|---:|---:|---:|---:|')
  for name, e in result['estimators'].items():
    ref = f'{e["reference_ms"]:.0f} | {e["speedup"]:.0f}x' if 'reference_ms' in e else '- | -'
    print(f'| {name} | {e["estimate_ms"]:.1f} | {e["end_to_end_ms"]:.1f} | '
          f'{e["us_per_row"]:.2f} | {ref} |')
  return result


def main(argv):
  del argv
  names = list(credit.ESTIMATORS)
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}; '
        f'observations of {FLAGS.obs_len} tokens; medians of {FLAGS.repeats} runs.')
  results = {}
  for steps in map(int, FLAGS.steps):
    label = f'16x8x{steps}'
    results[label] = run_case(label, make_rollouts(16, 8, steps, FLAGS.obs_len), names, names,
                              FLAGS.repeats)
  if FLAGS.big:
    label = '288x8x50 (~100k rows)'
    batch = make_rollouts(288, 8, 50, FLAGS.obs_len)
    results[label] = run_case(label, batch, names, ['g2po'], max(1, FLAGS.repeats // 2))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(results, f, indent=2)
    print(f'\nwrote {FLAGS.json}')


if __name__ == '__main__':
  app.run(main)
