r"""Benchmark: the state-matching rules (`graph.matching`), speed and quality.

  python -m experiments.bench_matching --json=experiments/results/benchmarks/matching.json \
      | tee experiments/results/benchmarks/matching.md

Speed: synthetic batches as in `bench_credit` (`synthetic.make_rollouts`:
each task a pool of state texts of up to `obs_chars` characters, 8 attempts
walking over it), with the
noise of `household-noisy` on every visit (`envs.noisy.header` and
`garble`: clock, step counter, request id, chatter, case and space jitter),
so no two visits of a state read alike. Each rule keys the texts of every
trajectory (its T states and final observation) in one matcher call; times
are wall and CPU (`time.process_time`: the rules are single-threaded host
work, so CPU time is what a busy machine distorts least) medians of
`repeats` runs, the rules taking turns. `difflib` is
quadratic in a group's distinct states and far slower: it runs on the first
`difflib_groups` task groups only, and its time is scaled by the number of
groups (groups are independent and alike), labelled "extrapolated".
Quality on the synthetic batch: purity and recall against the pool states.

Quality on the real world: `household-noisy`, 16 tasks x 8 attempts played
by the oracle with `random_actions` random actions, up to 50 steps; purity,
recall and single-visit steps of each rule against the true states.
"""

import json
import time

from absl import app
from absl import flags
import numpy as np

from experiments import synthetic
from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax.envs import noisy

FLAGS = flags.FLAGS
flags.DEFINE_string('json', None, 'Also write the figures to this JSON file.')
flags.DEFINE_integer('repeats', 3, 'Timed repeats per measurement (median).')
flags.DEFINE_integer('obs_chars', 600, 'Characters per state text (lengths vary 50-100%).')
flags.DEFINE_integer('steps', 50, 'Episode length T of the 16x8xT batch.')
flags.DEFINE_bool('big', True, 'Also run the 100k-row batch (no difflib).')
flags.DEFINE_integer('difflib_groups', 2, 'Task groups difflib runs on (then extrapolated).')
flags.DEFINE_list('near', ['0.7', '0.75', '0.8'], 'Thresholds of the near rule.')
flags.DEFINE_float('difflib_threshold', 0.95, "difflib's threshold (GiGPO's default).")
flags.DEFINE_integer('world_tasks', 16, 'household-noisy tasks (8 attempts each).')
flags.DEFINE_float('random_actions', 0.3, 'Share of random actions of the playing oracle.')


def noisy_batch(num_tasks: int, steps: int, obs_chars: int, seed: int = 0):
  """(texts [n], group [n], true state [n]) of a noisy 8-attempt batch."""
  rng = np.random.default_rng(seed)
  clean = synthetic.make_rollouts(num_tasks, 8, steps, obs_chars, seed)
  texts, group, true = [], [], []
  for b, row in enumerate(clean['texts']):
    clock = int(rng.integers(6 * 3600, 20 * 3600))
    for t, text in enumerate(row[:int(clean['mask'][b].sum()) + 1]):
      clock += int(rng.integers(1, 60))
      texts.append(noisy.header(clock, t, int(rng.integers(0, 2**32)))
                   + noisy.garble(text, rng))
      group.append(clean['group'][b])
      true.append(text)
  return texts, np.asarray(group), graph_lib.text_keys(true)


def rules() -> dict[str, graph_lib.Matcher]:
  out = {'exact': graph_lib.make_matcher('exact'),
         'normalized': graph_lib.make_matcher('normalized', rules=noisy.NoisyEnv.NORMALIZERS)}
  for s in map(float, FLAGS.near):
    out[f'near {s:g}'] = graph_lib.make_matcher('near', similarity=s)
  return out


def _quality(group, keys, true) -> dict[str, float]:
  mask = np.ones((len(keys), 1), bool)
  return graph_lib.matching_stats(group, keys[:, None], true[:, None], mask)


def _timed(fns: dict, texts, group, repeats: int) -> tuple[dict, dict]:
  """({name: (median wall seconds, median CPU seconds)}, {name: keys}), the
  rules taking turns."""
  times = {name: [] for name in fns}
  keys = {}
  for _ in range(repeats):
    for name, fn in fns.items():
      fresh = [t.encode().decode() for t in texts]      # no cached hash()
      t0, c0 = time.perf_counter(), time.process_time()
      keys[name] = fn(fresh, group)
      times[name].append((time.perf_counter() - t0, time.process_time() - c0))
  return {name: tuple(np.median(t, axis=0).tolist()) for name, t in times.items()}, keys


def run_speed(label: str, num_tasks: int, with_difflib: bool) -> dict:
  texts, group, true = noisy_batch(num_tasks, FLAGS.steps, FLAGS.obs_chars)
  seconds, keys = _timed(rules(), texts, group, FLAGS.repeats)
  out = {'rows': len(texts), 'groups': int(np.unique(group).size),
         'mean_chars': float(np.mean([len(t) for t in texts])), 'rules': {}}
  for name, (wall, cpu) in seconds.items():
    out['rules'][name] = {'ms': 1e3 * wall, 'cpu_ms': 1e3 * cpu,
                          **_quality(group, keys[name], true)}
  if with_difflib:
    some = np.isin(group, np.unique(group)[:FLAGS.difflib_groups])
    sub = [t for t, s in zip(texts, some) if s]
    fn = graph_lib.make_matcher('difflib', similarity=FLAGS.difflib_threshold)
    t0, c0 = time.perf_counter(), time.process_time()
    sub_keys = fn(sub, group[some])
    measured, measured_cpu = time.perf_counter() - t0, time.process_time() - c0
    scale = out['groups'] / FLAGS.difflib_groups
    out['rules'][f'difflib {FLAGS.difflib_threshold:g}'] = {
        'ms': 1e3 * measured * scale, 'cpu_ms': 1e3 * measured_cpu * scale, 'extrapolated': True,
        'measured_ms': 1e3 * measured, 'measured_cpu_ms': 1e3 * measured_cpu,
        'measured_groups': FLAGS.difflib_groups, **_quality(group[some], sub_keys, true[some])}
  exact = out['rules']['exact']
  print(f'\n### {label}: {out["rows"]} texts of {out["mean_chars"]:.0f} characters in '
        f'{out["groups"]} groups (synthetic, noisy)')
  print('| rule | ms | x exact | CPU ms | x exact (CPU) | purity | recall '
        '| single-visit steps (true) |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|')
  for name, r in out['rules'].items():
    note = (f' (extrapolated from {r["measured_groups"]} groups)'
            if r.get('extrapolated') else '')
    print(f'| {name} | {r["ms"]:.1f}{note} | {r["ms"] / exact["ms"]:.1f} | '
          f'{r["cpu_ms"]:.1f} | {r["cpu_ms"] / exact["cpu_ms"]:.1f} | {r["purity"]:.3f} | '
          f'{r["recall"]:.3f} | {r["singleton_fraction"]:.1%} '
          f'({r["true_singleton_fraction"]:.1%}) |')
  return out


def play(name: str, num_tasks: int, max_steps: int, random_actions: float, seed: int = 0):
  """(state texts [n], group [n], true keys [n]) of a noisy oracle's play."""
  env = envs.make(name)
  seeds = np.repeat(envs.split_seeds('train', num_tasks), 8)
  rng = np.random.default_rng(seed)
  current = env.reset(seeds)
  texts, group, true = [], [], []
  for _ in range(max_steps):
    actions = [None if s.done else best if rng.random() >= random_actions
               else str(rng.choice(s.admissible))
               for s, best in zip(current, env.oracle_actions())]
    for i, a in enumerate(actions):
      if a is not None:
        texts.append(current[i].state_key)
        true.append(current[i].true_state_key)
        group.append(seeds[i])
    current = [n if n is not None else s for n, s in zip(env.step(actions), current)]
  return texts, np.asarray(group), graph_lib.text_keys(true)


def run_world() -> dict:
  texts, group, true = play('household-noisy', FLAGS.world_tasks, 50, FLAGS.random_actions)
  fns = rules()
  fns[f'difflib {FLAGS.difflib_threshold:g}'] = graph_lib.make_matcher(
      'difflib', similarity=FLAGS.difflib_threshold)
  seconds, keys = _timed(fns, texts, group, 1)
  out = {'steps': len(texts), 'rules': {}}
  print(f'\n### household-noisy: {len(texts)} steps of {FLAGS.world_tasks} tasks x 8 attempts '
        f'(oracle with {FLAGS.random_actions:.0%} random actions)')
  print('| rule | ms | CPU ms | nodes | visits / node | single-visit steps (true) '
        '| merged nodes | purity | recall |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|')
  for name in fns:
    q = _quality(group, keys[name], true)
    wall, cpu = seconds[name]
    out['rules'][name] = {'ms': 1e3 * wall, 'cpu_ms': 1e3 * cpu, **q}
    print(f'| {name} | {1e3 * wall:.1f} | {1e3 * cpu:.1f} | {q["nodes"]:.0f} | '
          f'{q["visits_per_node"]:.2f} | {q["singleton_fraction"]:.1%} '
          f'({q["true_singleton_fraction"]:.1%}) | {q["merged_nodes"]:.0f} | '
          f'{q["purity"]:.3f} | {q["recall"]:.3f} |')
  return out


def main(argv):
  del argv
  print(f'State matching; medians of {FLAGS.repeats} runs; state texts of up to '
        f'{FLAGS.obs_chars} characters plus noise.')
  results = {'world': run_world()}
  results[f'16x8x{FLAGS.steps}'] = run_speed(f'16x8x{FLAGS.steps}', 16, True)
  if FLAGS.big:
    results['288x8x50'] = run_speed('288x8x50 (~100k texts)', 288, False)
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(results, f, indent=2)
    print(f'\nwrote {FLAGS.json}')


if __name__ == '__main__':
  app.run(main)
