r"""Benchmark: state keys + graph + every estimator vs the dict-based reference.

  python -m experiments.bench_credit                       # the README tables
  python -m experiments.bench_credit --json=/tmp/credit.json --repeats=5

Synthetic rollouts: each task has a pool of state texts (about 600
characters, like the environments' state keys: an observation and the
admissible actions); its 8 attempts walk over the pool so states repeat about
as often as in ALFWorld. Every text is a fresh string object, as an
environment returns them, so no side reuses a cached `hash()`.

State keys are computed where the environment writes a state
(`envs.TimeStep.key`: `graph.text_key`, BLAKE2b of the text, inside
`env.step`); `rollout.collect` stores each step's key in a [B, T + 1] uint64
array as it goes and keeps no text. So the credit path starts from keys:
ours turns the collected keys into the [B, T] state and next-state keys the
graph reads (`rollout.state_key_arrays`), the reference groups the texts
with a plain dict (`ids.setdefault(text, len(ids))`, keys valid in this
process only). Both see each trajectory's states: one per real step, plus
the state its last step reached.

Measured side by side (taking turns; CPU time of this process, as all are
single-threaded host work): (a) the dict grouping of fresh texts; (b) the
credit path's work on the collected keys; (c) keying fresh texts as the
rollout does: one `text_key` per state (paid inside `env.step`, where the
TimeStep is built), alone and with the store into the key array (the rollout
loop). (c) is not on the credit path but is paid for every state, so it is
reported per text. Host memory: the bytes per real step that the rollout
keeps for state identity (state keys, true keys and the mask), next to what
keeping each step's state text would take (the str object and a list slot).
Other times are wall medians over repeats, after compilation; device work
ends with `block_until_ready`.
"""

import json
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from g2po_jax import credit
from experiments.synthetic import make_rollouts
from g2po_jax import graph as graph_lib
from g2po_jax.train import rollout
from tests.credit import reference

FLAGS = flags.FLAGS
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats per measurement (median).')
flags.DEFINE_integer('obs_chars', 600, 'Characters per state text (lengths vary 50-100%).')
flags.DEFINE_bool('big', True, 'Also run the 100k-row batch.')
flags.DEFINE_list('steps', ['15', '50', '57', '200'],
                  'Episode lengths T of the 16x8xT batches (T=57: about 6,400 rows).')


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


def source_keys(texts: list[list[str]], width: int) -> np.ndarray:
  """[B, width] uint64 keys of each trajectory's states (0 past them), as
  `rollout.collect` stores them: one `text_key` per state, as each TimeStep
  computes it, and one store per state."""
  keys = np.zeros((len(texts), width), np.uint64)
  for i, row in enumerate(texts):
    for t, text in enumerate(row):
      keys[i, t] = graph_lib.text_key(text)
  return keys


def _ours(batch, name, state, next_state):
  out = credit.estimate(name, group=batch['group'], state=state, next_state=next_state,
                        reward=batch['reward'], valid=batch['valid'], mask=batch['mask'])
  return out.block_until_ready()


def _end_to_end(batch, name, keys):
  """From the keys a rollout collected to the advantages."""
  return _ours(batch, name, *rollout.state_key_arrays(keys, batch['mask']))


def _reference(batch, name):
  keys = dict_grouping(batch['texts'])
  return reference.estimate(name, group=batch['group'], state=[k[:-1] for k in keys],
                            next_state=[k[1:] for k in keys], reward=batch['reward'],
                            valid=batch['valid'], mask=batch['mask'])


def run_case(label, batch, names, reference_names, repeats):
  mask = batch['mask']
  rows = int(mask.sum())
  # The states a rollout keys: each real step's, then the one its last step reached.
  texts = [row[:n + 1] for row, n in zip(batch['texts'], mask.sum(1).tolist())]
  num_texts = sum(map(len, texts))
  text_bytes = sum(len(t.encode()) for row in texts for t in row)
  width = mask.shape[1] + 1
  keys = source_keys(texts, width)
  # Host work only, single-threaded: CPU time, so other jobs on a shared
  # machine do not count.
  side_by_side = _interleaved_medians(
      {'keys': lambda _: rollout.state_key_arrays(keys, mask), 'dict': dict_grouping,
       'text_key': lambda x: [list(map(graph_lib.text_key, row)) for row in x],
       'keying': lambda x: source_keys(x, width)}, texts, max(repeats, 15),
      clock=time.process_time)
  keys_s, dict_s = side_by_side['keys'], side_by_side['dict']
  text_key_s, keying_s = side_by_side['text_key'], side_by_side['keying']
  state, next_state = rollout.state_key_arrays(keys, mask)
  graph_s = _median_seconds(lambda: graph_lib.build_graph(batch['group'], state, next_state,
                                                          mask), repeats)
  # Keeping each step's state text instead: the str object and a list slot.
  text_kept = sum(sys.getsizeof(t) + 8 for row in texts for t in row[:-1]) / rows
  result = {'rows': rows, 'texts': num_texts, 'source_keys_ms': 1e3 * keys_s,
            'dict_grouping_ms': 1e3 * dict_s, 'speedup_over_dict': dict_s / keys_s,
            'text_key_us_per_text': 1e6 * text_key_s / num_texts,
            'keying_us_per_text': 1e6 * keying_s / num_texts,
            'keying_ms': 1e3 * keying_s, 'graph_ms': 1e3 * graph_s,
            'text_bytes_per_text': text_bytes / num_texts,
            # What collect keeps: the keys of the states (and the final one),
            # the true keys ([B, T] uint64, as the state keys here) and the mask.
            'kept_bytes_per_step': (keys.nbytes + state.nbytes + mask.nbytes) / rows,
            'text_kept_bytes_per_step': text_kept, 'estimators': {}}
  for name in names:
    _ours(batch, name, state, next_state)                 # compile
    est_s = _median_seconds(lambda: _ours(batch, name, state, next_state), repeats)
    e2e_s = _median_seconds(lambda: _end_to_end(batch, name, keys), repeats)
    entry = {'estimate_ms': 1e3 * est_s, 'end_to_end_ms': 1e3 * e2e_s,
             'us_per_row': 1e6 * e2e_s / rows}
    if name in reference_names:
      ref_s = _median_fresh_seconds(lambda x: _reference(dict(batch, texts=x), name),
                                    batch['texts'], max(1, repeats // 3))
      entry.update(reference_ms=1e3 * ref_s, speedup=ref_s / e2e_s)
      np.testing.assert_allclose(np.asarray(_end_to_end(batch, name, keys)),
                                 _reference(batch, name), atol=1e-3)
    result['estimators'][name] = entry
  print(f'\n### {label}: {rows} rows, {num_texts} state texts of {text_bytes / num_texts:.0f} B; '
        f'source keys {result["source_keys_ms"]:.3f} ms vs dict grouping '
        f'{result["dict_grouping_ms"]:.2f} ms ({result["speedup_over_dict"]:.0f}x), '
        f'{result["kept_bytes_per_step"]:.1f} B kept per step (texts: '
        f'{result["text_kept_bytes_per_step"]:.0f} B); keying the texts: text_key (in '
        f'env.step) {result["text_key_us_per_text"]:.2f} us per text, with the store (in the '
        f'rollout loop) {result["keying_us_per_text"]:.2f} us ({result["keying_ms"]:.2f} ms '
        f'for the batch); graph {result["graph_ms"]:.1f} ms')
  print('| estimator | estimate() ms | end to end ms (source keys incl.) | us/row | '
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
