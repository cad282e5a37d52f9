r"""Estimator shoot-out in seconds: tabular policies on procedural graph MDPs.

  python -m experiments.shootout --preset=hard --out=experiments/results/shootout
  python -m experiments.shootout --preset=easy --estimators=grpo,g2po --iters=50
  python -m experiments.shootout --preset=hard --scan     # coarse lr scan, held-out seeds only

Every estimator trains a tabular softmax policy per task with plain SGD (see
`OPTIMIZER_NOTE`) on `--seeds` seeds x 5 learning rates. The whole sweep is
one jitted program compiled once (the estimator is a `lax.switch` branch);
each estimator is one call of it. The rate is chosen per estimator on the
first `--heldout` seeds (best area under the success curve) and the tables,
curves and statistics come from the remaining seeds at that rate.

Each estimator's 5 rates are `center * 2**[-2..2]`, with `center` read off a
coarse scan (`--scan`: 25 rates from 1 to 10^4, held-out seeds only) and
stored in `LR_CENTERS`. `--lrs` replaces every grid.

Outputs under --out: <preset>.md (tables, settings, timing), <preset>.png
(learning curves and held-out rate sensitivity) and <preset>.json.
"""

import time

_START = time.perf_counter()   # reported wall time includes importing JAX and compiling

import dataclasses
import json
import os
import platform

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from g2po_jax import credit
from g2po_jax.shootout import learner
from g2po_jax.shootout import report

FLAGS = flags.FLAGS
flags.DEFINE_enum('preset', 'hard', sorted(learner.PRESETS), 'Task family.')
flags.DEFINE_string('out', None, 'Directory for <preset>.md, <preset>.png, <preset>.json.')
flags.DEFINE_string('json', None, 'Also write the summary JSON to this path.')
flags.DEFINE_list('estimators', ['grpo', 'rloo', 'gigpo', 'g2po', 'graphgpo', 'hgpo', 'gagpo'],
                  'Estimators (names in g2po_jax.credit.ESTIMATORS).')
flags.DEFINE_integer('seeds', 25, 'Seeds in all, held-out ones included.')
flags.DEFINE_integer('heldout', 5, 'Leading seeds used only to choose each learning rate.')
flags.DEFINE_list('lrs', None, 'Learning rates for every estimator (replaces the grids).')
flags.DEFINE_integer('iters', 100, 'Policy-gradient iterations per run.')
flags.DEFINE_integer('num_tasks', 8, 'Tasks per seed (N).')
flags.DEFINE_integer('group_size', 8, 'Attempts per task and iteration (G).')
flags.DEFINE_enum('optimizer', 'sgd', sorted(learner.OPTIMIZERS), 'Optimizer of the logits.')
flags.DEFINE_bool('scan', False, 'Coarse learning-rate scan on the held-out seeds only.')

OPTIMIZER_NOTE = (
    'SGD, not Adam: with a tabular policy every (state, action) logit is its own '
    'parameter, and Adam rescales each one to a step of about lr whatever its gradient, '
    'which erases exactly what the estimators differ in (the size of the credit each '
    'step gets).')
GRID = 2.0 ** np.arange(-2, 3)                     # 5 rates, a factor 2 apart
SCAN = np.logspace(0, 4, 25)                        # 1 .. 10^4, 6 per decade
# Grid centers per preset, from `--scan` (SGD; held-out seeds 0-4, 100
# iterations): the scan's best rate, rounded.
LR_CENTERS = {
    'easy': {'grpo': 320, 'rloo': 150, 'gigpo': 220, 'g2po': 220, 'graphgpo': 320,
             'hgpo': 460, 'gagpo': 1000},
    'hard': {'grpo': 1000, 'rloo': 220, 'gigpo': 460, 'g2po': 460, 'graphgpo': 1000,
             'hgpo': 2200, 'gagpo': 680},
    'wide': {'grpo': 460, 'rloo': 150, 'gigpo': 320, 'g2po': 220, 'graphgpo': 680,
             'hgpo': 680, 'gagpo': 680},
}
DEFAULT_CENTER = 100.0


def lr_grid(preset: str, name: str) -> np.ndarray:
  if FLAGS.lrs:
    return np.asarray([float(x) for x in FLAGS.lrs], np.float32)
  if FLAGS.optimizer != 'sgd':
    raise app.UsageError('the learning-rate grids were scanned for SGD; pass --lrs for '
                         f'--optimizer={FLAGS.optimizer}.')
  return (LR_CENTERS.get(preset, {}).get(name, DEFAULT_CENTER) * GRID).astype(np.float32)


def check_flags():
  unknown = [e for e in FLAGS.estimators if e not in credit.ESTIMATORS]
  if unknown or not FLAGS.estimators:
    raise app.UsageError(f'unknown estimators {unknown}; choose from {", ".join(credit.ESTIMATORS)}.')
  if not 1 <= FLAGS.heldout < FLAGS.seeds:
    raise app.UsageError(f'--heldout must be in [1, --seeds - 1 = {FLAGS.seeds - 1}]; '
                         f'got {FLAGS.heldout}.')
  if FLAGS.lrs:
    try:
      lrs = [float(x) for x in FLAGS.lrs]
    except ValueError as e:
      raise app.UsageError(f'--lrs must be numbers; got {FLAGS.lrs}.') from e
    if not all(np.isfinite(x) and x > 0 for x in lrs):
      raise app.UsageError(f'--lrs must be finite and > 0; got {lrs}.')


# --- Running -----------------------------------------------------------------


def run_all(config: learner.TrainConfig, seeds: np.ndarray, grids: dict[str, np.ndarray]):
  """Compiles the sweep once, then runs every estimator on seeds x its grid.

  Returns:
    ({name: metrics [R, L, ...] numpy}, timing dict).
  """
  num_lrs = len(next(iter(grids.values())))
  run_seeds = np.repeat(seeds, num_lrs).astype(np.int32)            # seed-major [R*L]
  sweep = learner.make_sweep(config)
  t0 = time.perf_counter()
  lrs0 = np.tile(grids[config.estimators[0]], len(seeds))
  compiled = sweep.lower(jnp.int32(0), run_seeds, lrs0).compile()
  timing = {'compile_s': time.perf_counter() - t0, 'run_s': {}}
  print(f'compiled one program for {len(config.estimators)} estimators x {len(run_seeds)} '
        f'runs in {timing["compile_s"]:.1f} s', flush=True)
  results = {}
  for which, name in enumerate(config.estimators):
    t0 = time.perf_counter()
    lrs = np.tile(grids[name], len(seeds)).astype(np.float32)
    out = jax.device_get(compiled(jnp.int32(which), run_seeds, lrs))
    timing['run_s'][name] = time.perf_counter() - t0
    results[name] = {k: v.reshape(len(seeds), num_lrs, *v.shape[1:]) for k, v in out.items()}
    auc = report.area_under_curve(results[name]['success']).mean(0)
    print(f'[{which + 1}/{len(config.estimators)}] {name:9s} {timing["run_s"][name]:5.1f} s  '
          f'mean AUC per lr: ' + ' '.join(f'{g:.3g}:{a:.3f}' for g, a in zip(grids[name], auc)),
          flush=True)
  return results, timing


# --- Output ------------------------------------------------------------------


def plot(summaries: dict[str, dict], path: str, title: str):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (ax, ax_lr) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={'width_ratios': [3, 2]})
  for name, s in summaries.items():
    mean, std = np.asarray(s['curve_mean']), np.asarray(s['curve_std'])
    x = np.arange(mean.size)
    line, = ax.plot(x, mean, label=f'{name} (lr {s["lr"]:.3g})', lw=1.8)
    ax.fill_between(x, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1),
                    color=line.get_color(), alpha=0.12, lw=0)
    ax_lr.plot(s['lrs'], s['heldout_auc_per_lr'], 'o-', color=line.get_color(), ms=3, lw=1)
    ax_lr.plot([s['lr']], [s['heldout_auc_per_lr'][s['lr_index']]], 'o',
               color=line.get_color(), ms=8, mfc='none')
  for level in report.THRESHOLDS:
    ax.axhline(level, color='grey', lw=0.6, ls=':')
  ax.set(xlabel='iteration', ylabel='exact success (mean over tasks)', ylim=(0, 1.01),
         title=f'{title}: test seeds, mean ± std')
  ax.legend(fontsize=8, loc='lower right')
  ax_lr.set(xscale='log', xlabel='learning rate', ylabel='AUC on held-out seeds',
            title='rate choice (circled)')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def settings_text(config: learner.TrainConfig, timing: dict, num_test: int) -> str:
  m = config.mdp
  runs = timing['runs']
  lines = [
      f'Preset `{FLAGS.preset}`: {m.num_states} states, {m.num_actions} actions, depth D = '
      f'{m.depth}, horizon H = {m.horizon}, trap fraction {m.trap_fraction}, invalid fraction '
      f'{m.invalid_fraction}, start bias {m.start_bias}. {config.num_tasks} tasks x '
      f'{config.group_size} attempts per iteration, {config.num_iters} iterations, '
      f'{config.optimizer.upper()}.',
      f'Learning rate chosen per estimator on seeds 0-{FLAGS.heldout - 1} (best AUC over its '
      f'5-rate grid); every number below is over the other {num_test} seeds at that rate '
      '(mean ± std over seeds). Iterations to X% count updates until the exact success '
      'first reaches X%; "≥ (k/n)" means only k of n seeds got there within the run and the '
      f'others count as {config.num_iters + 1}.',
      f'Wall time {timing["total_s"]:.1f} s for {len(config.estimators)} estimators x {runs} '
      f'runs x {config.num_iters} iterations (importing JAX {timing["import_s"]:.1f} s, '
      f'compiling {timing["compile_s"]:.1f} s, running '
      f'{sum(timing["run_s"].values()):.1f} s), on {timing["machine"]}.',
  ]
  return '\n\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  check_flags()
  import_s = time.perf_counter() - _START
  load = os.getloadavg()
  config = learner.TrainConfig(
      mdp=learner.PRESETS[FLAGS.preset], estimators=tuple(FLAGS.estimators),
      num_tasks=FLAGS.num_tasks, group_size=FLAGS.group_size, num_iters=FLAGS.iters,
      optimizer=FLAGS.optimizer)
  if FLAGS.scan:
    seeds = np.arange(FLAGS.heldout)
    grids = {name: SCAN.astype(np.float32) for name in config.estimators}
  else:
    seeds = np.arange(FLAGS.seeds)
    grids = {name: lr_grid(FLAGS.preset, name) for name in config.estimators}
    if len({len(g) for g in grids.values()}) != 1:
      raise app.UsageError('every estimator needs the same number of learning rates.')
  print(f'shoot-out `{FLAGS.preset}`: {len(config.estimators)} estimators x {len(seeds)} seeds '
        f'x {len(next(iter(grids.values())))} lrs x {FLAGS.iters} iterations; jax '
        f'{jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} cores, '
        f'load average {load[0]:.1f}', flush=True)
  results, timing = run_all(config, seeds, grids)
  timing['import_s'] = import_s
  timing['runs'] = len(seeds) * len(next(iter(grids.values())))
  timing['total_s'] = time.perf_counter() - _START
  end_load = os.getloadavg()
  timing['machine'] = (f'{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), '
                       f'load average {load[0]:.1f} at start / {end_load[0]:.1f} at end')
  print(f'total wall time {timing["total_s"]:.1f} s (import {import_s:.1f}, compile '
        f'{timing["compile_s"]:.1f}, run {sum(timing["run_s"].values()):.1f})', flush=True)

  if FLAGS.scan:
    scan = {}
    for name, metrics in results.items():
      auc = report.area_under_curve(metrics['success']).mean(0)
      scan[name] = {'lrs': grids[name].tolist(), 'heldout_auc': auc.tolist(),
                    'best_lr': float(grids[name][int(np.argmax(auc))])}
      print(f'{name:9s} best lr {scan[name]["best_lr"]:8.3g}  AUC {auc.max():.3f}')
    if FLAGS.json:
      with open(FLAGS.json, 'w') as f:
        json.dump({'preset': FLAGS.preset, 'scan': scan, 'timing': timing}, f, indent=1)
    return

  summaries = {name: report.summarize(metrics, grids[name], FLAGS.heldout)
               for name, metrics in results.items()}
  num_test = FLAGS.seeds - FLAGS.heldout
  text = '\n\n'.join([f'## Shoot-out: `{FLAGS.preset}`', settings_text(config, timing, num_test),
                      report.markdown_tables(summaries), OPTIMIZER_NOTE])
  print('\n' + text, flush=True)
  payload = {
      'preset': FLAGS.preset, 'mdp': dataclasses.asdict(config.mdp),
      'num_tasks': config.num_tasks, 'group_size': config.group_size,
      'num_iters': config.num_iters, 'optimizer': config.optimizer,
      'seeds': FLAGS.seeds, 'heldout': FLAGS.heldout, 'timing': timing,
      'summaries': summaries,
  }
  if 'grpo' in summaries:
    payload['iters_to_80_minus_grpo_paired'] = {
        name: report.paired_difference(summaries, name, 'grpo') for name in summaries}
  paths = []
  if FLAGS.out:
    os.makedirs(FLAGS.out, exist_ok=True)
    base = os.path.join(FLAGS.out, FLAGS.preset)
    with open(base + '.md', 'w') as f:
      f.write(text + '\n')
    plot(summaries, base + '.png', f'shoot-out {FLAGS.preset}')
    paths += [base + '.md', base + '.png']
    if not FLAGS.json:
      paths.append(base + '.json')
      with open(base + '.json', 'w') as f:
        json.dump(payload, f, indent=1)
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(payload, f, indent=1)
    paths.append(FLAGS.json)
  if paths:
    print('wrote ' + ', '.join(paths))


if __name__ == '__main__':
  app.run(main)
