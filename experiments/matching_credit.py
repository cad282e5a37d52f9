r"""State matching on household-noisy: graph quality and G2PO's credit, no training.

  python -m experiments.matching_credit --out=experiments/results/matching

Rollouts: 16 tasks x 8 attempts of `household-noisy`, played by the oracle
with `random_actions` random actions, up to `max_steps` steps (the shape of
one iteration of configs/household_noisy_g2po.py, with a noisy oracle in
place of a warm-started policy); one batch per seed. For each matching rule,
the batch's state texts are keyed (timed) and G2PO's advantages computed
from those keys (spec ALGORITHMS.md section 5, `mean_norm` as the config).
The reference is G2PO on the true states (the inner world's keys): a rule's
credit error is the RMS difference of its advantages from the reference's,
over real steps. GRPO, which reads no state keys, is the "no graph" point.
Also reported per rule: purity, recall, single-visit steps (and the true
figure), merged nodes (nodes holding two or more true states).

Writes OUT/credit.json and OUT/credit.md (mean +- std over seeds).
"""

import json
import os
import time

from absl import app
from absl import flags
import numpy as np

from g2po_jax import credit
from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax.envs import noisy

FLAGS = flags.FLAGS
flags.DEFINE_string('out', 'experiments/results/matching', 'Where credit.{json,md} go.')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'One rollout batch per seed.')
flags.DEFINE_integer('tasks', 16, 'Tasks per batch (8 attempts each).')
flags.DEFINE_integer('max_steps', 20, 'Episode limit.')
flags.DEFINE_float('random_actions', 0.5, 'Share of random actions of the playing oracle.')
flags.DEFINE_list('near', ['0.7', '0.75', '0.8'], 'Thresholds of the near rule.')
flags.DEFINE_float('difflib_threshold', 0.95, "difflib's threshold (GiGPO's default).")
flags.DEFINE_bool('difflib', True, 'Also run difflib (minutes per batch on 2 CPU cores).')

SUCCESS_REWARD = 10.0
_OPTIONS = {'g2po': {'norm': 'mean_norm', 'success_reward': SUCCESS_REWARD},
            'grpo': {'norm': 'mean_norm'}}


def play(seed: int):
  """(texts [B][<=T+1], true texts, reward [B, T], valid, mask, group [B])."""
  env = envs.make('household-noisy')
  seeds = np.repeat(envs.split_seeds('train', FLAGS.tasks, start=1000 * seed), 8)
  b, t = len(seeds), FLAGS.max_steps
  rng = np.random.default_rng(seed)
  current = env.reset(seeds)
  texts = [[s.state_key] for s in current]
  trues = [[s.true_state_key] for s in current]
  reward, valid, mask = np.zeros((b, t), np.float32), np.zeros((b, t), bool), np.zeros((b, t), bool)
  for step in range(t):
    actions = [None if s.done else best if rng.random() >= FLAGS.random_actions
               else str(rng.choice(s.admissible))
               for s, best in zip(current, env.oracle_actions())]
    for i, res in enumerate(env.step(actions)):
      if res is not None:
        reward[i, step], valid[i, step], mask[i, step] = SUCCESS_REWARD * res.won, res.valid, True
        texts[i].append(res.state_key)
        trues[i].append(res.true_state_key)
        current[i] = res
  return texts, trues, reward, valid, mask, seeds


def keyed(rows: list[list[str]], group: np.ndarray, match, t: int):
  """([B, T] state keys, [B, T] next-state keys, seconds) of a matcher."""
  live = np.arange(t + 1) < np.array([len(r) for r in rows])[:, None]
  flat = [x for r in rows for x in r]
  t0 = time.perf_counter()
  keys = np.zeros(live.shape, np.uint64)
  keys[live] = match(flat, group[np.nonzero(live)[0]])
  seconds = time.perf_counter() - t0
  return keys[:, :-1], keys[:, 1:], seconds


def rules() -> dict:
  out = {'exact': graph_lib.make_matcher('exact'),
         'normalized': graph_lib.make_matcher('normalized', rules=noisy.NoisyEnv.NORMALIZERS)}
  for s in map(float, FLAGS.near):
    out[f'near {s:g}'] = graph_lib.make_matcher('near', similarity=s)
  if FLAGS.difflib:
    out[f'difflib {FLAGS.difflib_threshold:g}'] = graph_lib.make_matcher(
        'difflib', similarity=FLAGS.difflib_threshold)
  return out


def run_seed(seed: int) -> dict[str, dict[str, float]]:
  texts, trues, reward, valid, mask, group = play(seed)
  t = mask.shape[1]
  as_int = lambda k: k.view(np.int64)
  adv = lambda name, s, n: np.asarray(credit.estimate(
      name, group=group, state=as_int(s), next_state=as_int(n), reward=reward, valid=valid,
      mask=mask, **_OPTIONS[name]))
  true_state, true_next, _ = keyed(trues, group, graph_lib.exact_keys, t)
  reference = adv('g2po', true_state, true_next)
  rms = lambda a: float(np.sqrt(np.mean((a - reference)[mask] ** 2)))
  out = {'grpo (no graph)': {'credit_rms_error': rms(adv('grpo', true_state, true_next))}}
  for name, match in rules().items():
    state, nxt, seconds = keyed(texts, group, match, t)
    out[name] = {'ms': 1e3 * seconds, 'credit_rms_error': rms(adv('g2po', state, nxt)),
                 **graph_lib.matching_stats(group, state, true_state, mask)}
  out['_batch'] = {'steps': float(mask.sum()), 'success': float((reward.sum(1) > 0).mean()),
                   'reference_rms': float(np.sqrt(np.mean(reference[mask] ** 2)))}
  return out


def _cell(values: list[float], fmt: str) -> str:
  text = fmt.format(np.mean(values))
  return text + (' ± ' + fmt.format(np.std(values, ddof=1)) if len(values) > 1 else '')


def main(argv):
  del argv
  runs = {int(s): run_seed(int(s)) for s in FLAGS.seeds}
  os.makedirs(FLAGS.out, exist_ok=True)
  with open(os.path.join(FLAGS.out, 'credit.json'), 'w') as f:
    json.dump(runs, f, indent=2)
  first = next(iter(runs.values()))
  batch = lambda k: [r['_batch'][k] for r in runs.values()]
  lines = [f'household-noisy, {FLAGS.tasks} tasks x 8 attempts, up to {FLAGS.max_steps} steps, '
           f'oracle with {FLAGS.random_actions:.0%} random actions; {len(runs)} seeds '
           f'(one batch each): {_cell(batch("steps"), "{:.0f}")} steps, success '
           f'{_cell(batch("success"), "{:.2f}")}; RMS of the reference advantages '
           f'{_cell(batch("reference_rms"), "{:.2f}")}.', '',
           '| rule | ms / batch | purity | recall | single-visit steps (true) | merged nodes '
           '| visits / node | G2PO credit RMS error |',
           '|---|---:|---:|---:|---:|---:|---:|---:|']
  for name in first:
    if name.startswith('_'):
      continue
    col = lambda k, fmt: (_cell([r[name][k] for r in runs.values()], fmt)
                          if k in first[name] else '–')
    single = (f'{col("singleton_fraction", "{:.3f}")} ({col("true_singleton_fraction", "{:.3f}")})'
              if 'singleton_fraction' in first[name] else '–')
    lines.append(f'| {name} | {col("ms", "{:.1f}")} | {col("purity", "{:.3f}")} | '
                 f'{col("recall", "{:.3f}")} | {single} | {col("merged_nodes", "{:.1f}")} | '
                 f'{col("visits_per_node", "{:.2f}")} | {col("credit_rms_error", "{:.3f}")} |')
  text = '\n'.join(lines) + '\n'
  with open(os.path.join(FLAGS.out, 'credit.md'), 'w') as f:
    f.write(text)
  print(text)


if __name__ == '__main__':
  app.run(main)
