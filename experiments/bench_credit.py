r"""Benchmark: hashing + graph + every estimator vs the dict-based reference.

  python -m experiments.bench_credit                       # the README tables
  python -m experiments.bench_credit --json=/tmp/credit.json --repeats=5

Synthetic rollouts: each task has a pool of state texts (about 600
characters, like the environments' state keys: an observation and the
admissible actions); its 8 attempts walk over the pool so states repeat about
as often as in ALFWorld. Every text is a fresh string object, as an
environment returns them, so no side reuses a cached `hash()`. Both sides
group each trajectory's T states plus its final observation: ours with
`graph.hash_strings` (deterministic 64-bit keys), the reference with a plain
dict (`ids.setdefault(text, len(ids))`, keys valid in this process only).

Hashing is also measured on its own, side by side with that dict grouping
(taking turns; CPU time of this process, as both are single-threaded host
work), with the host memory it takes: the peak bytes it allocates per hashed
text (tracemalloc), next to the mean size of a text. Other times are wall
medians over repeats, after compilation; device work ends with
`block_until_ready`.
"""

import json
import time
import tracemalloc

from absl import app
from absl import flags
import jax
import numpy as np

from g2po_jax import credit
from experiments.synthetic import make_rollouts
from g2po_jax import graph as graph_lib
from tests.credit import reference

FLAGS = flags.FLAGS
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats per measurement (median).')
flags.DEFINE_integer('obs_chars', 600, 'Characters per state text (lengths vary 50-100%).')
flags.DEFINE_bool('big', True, 'Also run the 100k-row batch.')
flags.DEFINE_list('steps', ['15', '50', '200'], 'Episode lengths T of the 16x8xT batches.')

def _fresh(texts: list[list[str]]) -> list[list[str]]:
  """Copies of the texts as new string objects (no cached hash())."""
  return [[t.encode().decode() for t in row] for row in texts]


def _median_seconds(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def _median_fresh_seconds(fn, texts, repeats):
  """Median time of fn(copy of texts), each repeat on fresh string objects."""
  return _interleaved_medians({'fn': fn}, texts, repeats)['fn']


def _interleaved_medians(fns, texts, repeats, clock=time.perf_counter):
  """{name: median seconds of fn(fresh copy of texts)}, the functions taking
  turns so that a busy machine slows them alike."""
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      copy = _fresh(texts)
      t0 = clock()
      fn(copy)
      times[name].append(clock() - t0)
  return {name: float(np.median(t)) for name, t in times.items()}


def dict_grouping(texts: list[list[str]]) -> list[list[int]]:
  """Dense ids of the texts by a plain dict: the least a Python grouping does."""
  ids = {}
  return [[ids.setdefault(t, len(ids)) for t in row] for row in texts]


def _peak_bytes(fn, *args) -> int:
  tracemalloc.start()
  fn(*args)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  return peak


def _ours(batch, name, keys=None):
  if keys is None:
    keys = graph_lib.hash_strings(batch['texts'])
  out = credit.estimate(name, group=batch['group'], state=keys[:, :-1], next_state=keys[:, 1:],
                        reward=batch['reward'], valid=batch['valid'], mask=batch['mask'])
  return out.block_until_ready()


def _reference(batch, name):
  keys = dict_grouping(batch['texts'])
  return reference.estimate(name, group=batch['group'], state=[k[:-1] for k in keys],
                            next_state=[k[1:] for k in keys], reward=batch['reward'],
                            valid=batch['valid'], mask=batch['mask'])


def run_case(label, batch, names, reference_names, repeats):
  rows = int(batch['mask'].sum())
  texts = batch['texts']
  num_texts = sum(map(len, texts))
  flat = [t for row in texts for t in row]
  text_bytes = sum(len(t.encode()) for t in flat)
  keys = graph_lib.hash_strings(texts)
  # Host work only, single-threaded: CPU time, so other jobs on a shared
  # machine do not count.
  side_by_side = _interleaved_medians({'hash': graph_lib.hash_strings, 'dict': dict_grouping},
                                      texts, max(repeats, 15), clock=time.process_time)
  hash_s, dict_s = side_by_side['hash'], side_by_side['dict']
  groups = credit.validate_batch(batch['group'], keys[:, :-1], keys[:, 1:], batch['reward'],
                                 batch['valid'], batch['mask'])
  graph_s = _median_seconds(lambda: graph_lib.build_graph(groups[0], groups[1], groups[2],
                                                          batch['mask']), repeats)
  result = {'rows': rows, 'texts': num_texts, 'hash_ms': 1e3 * hash_s,
            'dict_grouping_ms': 1e3 * dict_s, 'hash_speedup_over_dict': dict_s / hash_s,
            'graph_ms': 1e3 * graph_s,
            'text_bytes_per_text': text_bytes / num_texts,
            'hash_peak_bytes_per_text': _peak_bytes(graph_lib.hash_strings, flat) / num_texts,
            'estimators': {}}
  for name in names:
    _ours(batch, name, keys)                               # compile
    est_s = _median_seconds(lambda: _ours(batch, name, keys), repeats)
    e2e_s = _median_fresh_seconds(lambda x: _ours(dict(batch, texts=x), name), texts, repeats)
    entry = {'estimate_ms': 1e3 * est_s, 'end_to_end_ms': 1e3 * e2e_s,
             'us_per_row': 1e6 * e2e_s / rows}
    if name in reference_names:
      ref_s = _median_fresh_seconds(lambda x: _reference(dict(batch, texts=x), name), texts,
                                    max(1, repeats // 3))
      entry.update(reference_ms=1e3 * ref_s, speedup=ref_s / e2e_s)
      np.testing.assert_allclose(np.asarray(_ours(batch, name, keys)),
                                 _reference(batch, name), atol=1e-3)
    result['estimators'][name] = entry
  print(f'\n### {label}: {rows} rows, {num_texts} texts of {text_bytes / num_texts:.0f} B; '
        f'hash_strings {result["hash_ms"]:.2f} ms vs dict grouping '
        f'{result["dict_grouping_ms"]:.2f} ms ({result["hash_speedup_over_dict"]:.2f}x), '
        f'{result["hash_peak_bytes_per_text"]:.0f} B of host memory per text at peak; '
        f'graph {result["graph_ms"]:.1f} ms')
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
  print(f'jax {jax.__version__} on {jax.devices()[0].device_kind}; state texts of up to '
        f'{FLAGS.obs_chars} characters; medians of {FLAGS.repeats} runs.')
  results = {}
  for steps in map(int, FLAGS.steps):
    label = f'16x8x{steps}'
    results[label] = run_case(label, make_rollouts(16, 8, steps, FLAGS.obs_chars), names, names,
                              FLAGS.repeats)
  if FLAGS.big:
    label = '288x8x50 (~100k rows)'
    batch = make_rollouts(288, 8, 50, FLAGS.obs_chars)
    results[label] = run_case(label, batch, names, ['g2po'], max(1, FLAGS.repeats // 2))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(results, f, indent=2)
    print(f'\nwrote {FLAGS.json}')


if __name__ == '__main__':
  app.run(main)
