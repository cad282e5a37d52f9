r"""Plots and tables of a sweep, from its TensorBoard logs.

  python -m experiments.report runs/compare                # -> runs/compare/report/
  python -m experiments.report runs/compare --out=experiments/results \
      --threshold=0.5 --budgets=20,40,60 --window=5
  python -m experiments.report --graph=runs/g2po/batches/batch_000060.npz   # one picture

ROOT holds one workdir per member (as experiments/sweep.py lays it out), or is
itself a single run. Members are grouped by every config value that differs
between them except the seed, so each group is one estimator or variant and
its members are its seeds. The report writes, into --out:

  report.md            a table per group, mean +- std over seeds: final
                       success (rollout and eval), success at fixed iteration
                       budgets, iterations to reach --threshold, episode length,
                       graph + credit time as a share of the iteration, graph
                       statistics; then one row per member and the commands
  learning_curves.png  success vs iterations and vs environment steps (and eval
                       success), mean and min-max band over seeds, per group
  diagnostics.png      episode length, graph+credit time share, visits per node
                       and single-visit share vs iterations
  protocol.png         (runs that log format errors, e.g. think_action) success,
                       format-error and invalid-action rates, tokens per response
                       and per episode vs iterations, rollouts and eval; report.md
                       then tabulates them per logged iteration, with the
                       seconds per iteration of each phase
  graph_*.png          the state graph of one task group, for every group with
                       a saved rollout batch (ROOT/MEMBER/batches/*.npz)

"Success at iteration i" is always the mean rollout success over the last
--window logged iterations up to i (one iteration's rollouts are only
num_tasks x group_size episodes). Environment steps per iteration are
rollout/episode_length x rollout.num_tasks x rollout.group_size.

A member is complete when it logged iteration `num_iterations` of its
config. Incomplete members are listed, drawn as far as they got, and count
only where they got far enough (a budget they reached; a threshold they
crossed); final numbers use complete members only.
"""

import collections
import dataclasses
import datetime
import functools
import glob
import json
import logging as std_logging
import math
import os
import re
import sys
import warnings

from absl import app
from absl import flags
from matplotlib import colormaps
from matplotlib import figure
import numpy as np

from g2po_jax import viz

_OUT = flags.DEFINE_string('out', None, 'Output directory (default ROOT/report, or the '
                           'batch file\'s directory with --graph).')
_THRESHOLD = flags.DEFINE_float('threshold', 0.5, 'Success rate for "iterations to reach".')
_BUDGETS = flags.DEFINE_list('budgets', None, 'Iteration budgets for "success at" columns '
                             '(default: a quarter, half and all of the longest run).')
_WINDOW = flags.DEFINE_integer('window', 5, 'Logged iterations averaged into one success value.')
_GRAPH = flags.DEFINE_string('graph', None, 'Only draw this saved batch (.npz) as a PNG.')
_GRAPH_GROUP = flags.DEFINE_integer('graph_group', None, 'Task group of the batch to draw '
                                    '(default: the one with mixed outcomes).')

SUCCESS = 'rollout/success'
EVAL_SUCCESS = 'eval/success'
LENGTH = 'rollout/episode_length'
TIMES = ('time/graph', 'time/credit', 'time/iteration')
GRAPH_STATS = (('graph/visits_per_node', 'visits / node', '{:.1f}'),
               ('graph/singleton_fraction', 'single-visit steps', '{:.1%}'),
               ('graph/nodes', 'nodes / iter', '{:.0f}'),
               # State matching (graph.matching) against the true states.
               ('matching/purity', 'purity', '{:.3f}'),
               ('matching/recall', 'recall', '{:.3f}'),
               ('matching/merged_nodes', 'merged nodes / iter', '{:.1f}'),
               ('matching/true_singleton_fraction', 'single-visit steps (true states)',
                '{:.1%}'),
               ('time/matching', 'matching s / batch', '{:.4f}'))
# The protocol's diagnostics (think_action runs log them): (tag, title, format).
PROTOCOL_STATS = (('success', 'success', '{:.3f}'),
                  ('format_error_rate', 'format errors / step', '{:.3f}'),
                  ('invalid_rate', 'invalid actions / step', '{:.3f}'),
                  ('response_length', 'tokens / response', '{:.1f}'),
                  ('tokens_per_episode', 'tokens / episode', '{:.0f}'))
PHASES = ('time/sampling', 'time/env', 'time/graph', 'time/batch', 'time/credit', 'time/update',
          'time/iteration', 'time/eval')
_SAFE = re.compile(r'[^A-Za-z0-9._=,+-]+')


class ReportError(ValueError):
  """The report cannot be made as asked; the message says why."""


@dataclasses.dataclass
class Member:
  """One run: its config and its logged scalars."""
  name: str
  workdir: str
  config: dict[str, object]                  # flattened config.json
  scalars: dict[str, tuple[np.ndarray, np.ndarray]]  # tag -> (steps [n] int, values [n])
  command: str = ''

  @property
  def num_iterations(self) -> int:
    return int(self.config['num_iterations'])

  @property
  def last_iteration(self) -> int:
    steps = self.scalars.get(SUCCESS, (np.zeros(0, int),))[0]
    return int(steps[-1]) if steps.size else 0

  @property
  def complete(self) -> bool:
    return self.last_iteration >= self.num_iterations

  @property
  def seed(self) -> object:
    return self.config.get('seed')


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------


def flatten(tree: dict, prefix: str = '') -> dict[str, object]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def read_scalars(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Every scalar tag of the TensorBoard event files directly in `workdir`.

  A resumed run logs the iterations after its last checkpoint again; the
  newest value of each step wins.

  Returns:
    tag -> (steps [n] int64 ascending, values [n] float64).
  Raises:
    ReportError: if the tensorboard package is missing.
  """
  try:
    # Imported here: drawing a batch (--graph) works without tensorboard.
    from tensorboard.backend.event_processing import event_accumulator
  except ImportError:
    raise ReportError('reading TensorBoard logs needs the tensorboard package (a test '
                      "extra): pip install -e '.[test]'.") from None
  acc = event_accumulator.EventAccumulator(
      workdir, size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=False)
  acc.Reload()
  out = {}
  for tag in acc.Tags()['scalars']:
    latest = {}
    for event in sorted(acc.Scalars(tag), key=lambda e: e.wall_time):
      latest[event.step] = event.value
    steps = np.array(sorted(latest), np.int64)
    out[tag] = (steps, np.array([latest[s] for s in steps], np.float64))
  return out


def _has_events(directory: str) -> bool:
  return bool(glob.glob(os.path.join(directory, 'events.out.tfevents.*')))


def load_members(root: str) -> tuple[list[Member], list[str]]:
  """The runs under `root`: its subdirectories that are workdirs, or root itself.

  Returns:
    (the runs with a config.json, the directories of runs that never wrote
    one: a sweep member that has not started yet).
  Raises:
    ReportError: if `root` holds no run.
  """
  if not os.path.isdir(root):
    raise ReportError(f'{root} is not a directory.')
  markers = ('config.json', 'sweep_member.json')
  is_run = lambda d: _has_events(d) or any(os.path.isfile(os.path.join(d, m)) for m in markers)
  if is_run(root):
    dirs = [root]
  else:
    dirs = sorted(d for d in glob.glob(os.path.join(root, '*')) if os.path.isdir(d) and is_run(d))
  if not dirs:
    raise ReportError(f'{root} holds no runs (no subdirectory with event files, config.json '
                      'or sweep_member.json).')
  members, unstarted = [], []
  for d in dirs:
    if not os.path.isfile(os.path.join(d, 'config.json')):
      unstarted.append(d)
      continue
    with open(os.path.join(d, 'config.json')) as f:
      config = flatten(json.load(f))
    command = ''
    if os.path.isfile(os.path.join(d, 'sweep_member.json')):
      with open(os.path.join(d, 'sweep_member.json')) as f:
        command = json.load(f).get('command', '')
    members.append(Member(os.path.basename(os.path.normpath(d)), d, config,
                          read_scalars(d) if _has_events(d) else {}, command))
  if not members:
    raise ReportError(f'no run under {root} has started (none wrote config.json).')
  return members, unstarted


def group_members(members: list[Member]) -> tuple[list[str], dict[str, list[Member]]]:
  """Groups members by the config values that differ between them, but the seed.

  Returns:
    (the varying keys, {label: members in seed order}); a label is the value
    when one key varies, 'key=value, ...' otherwise, and 'all' when none does.
  """
  keys = sorted({k for m in members for k in m.config})
  varying = [k for k in keys if k != 'seed' and
             len({json.dumps(m.config.get(k), sort_keys=True) for m in members}) > 1]

  def label(m: Member) -> str:
    if not varying:
      return 'all'
    if len(varying) == 1:
      return str(m.config.get(varying[0]))
    return ', '.join(f'{k}={m.config.get(k)}' for k in varying)

  groups = collections.defaultdict(list)
  for m in members:
    groups[label(m)].append(m)
  for group in groups.values():
    group.sort(key=lambda m: (not isinstance(m.seed, int), m.seed if isinstance(m.seed, int)
                              else 0, m.name))
  return varying, dict(groups)


# ----------------------------------------------------------------------------
# Per-member numbers
# ----------------------------------------------------------------------------


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
  """[n] mean of values[max(0, i - window + 1) : i + 1] for each i."""
  csum = np.concatenate([[0.0], np.cumsum(values)])
  i = np.arange(1, len(values) + 1)
  lo = np.maximum(i - window, 0)
  return (csum[i] - csum[lo]) / (i - lo)


def success_curve(m: Member, window: int) -> tuple[np.ndarray, np.ndarray]:
  """(iterations [n], windowed rollout success [n]) of a member."""
  steps, values = m.scalars.get(SUCCESS, (np.zeros(0, np.int64), np.zeros(0)))
  return steps, trailing_mean(values, window)


def env_steps(m: Member) -> np.ndarray | None:
  """[n] cumulative environment steps at each logged iteration, or None.

  A logged iteration stands for the iterations since the previous one (all
  of them when log_every is 1).
  """
  steps, _ = m.scalars.get(SUCCESS, (np.zeros(0, np.int64), None))
  per_episode = m.scalars.get(LENGTH)
  tasks, group = m.config.get('rollout.num_tasks'), m.config.get('rollout.group_size')
  if per_episode is None or tasks is None or group is None or not steps.size:
    return None
  length = np.interp(steps, *per_episode)
  gaps = np.diff(np.concatenate([[0], steps]))
  return np.cumsum(length * tasks * group * gaps)


def value_at(steps: np.ndarray, values: np.ndarray, iteration: int) -> float | None:
  """The value logged at the last step <= iteration, or None if none is."""
  k = np.searchsorted(steps, iteration, side='right') - 1
  return float(values[k]) if k >= 0 else None


def member_numbers(m: Member, window: int, threshold: float, budgets: list[int]) -> dict:
  """The table's numbers for one member; None where it has none.

  Keys: final, eval, budget:B (each budget), to_threshold (iterations, or
  inf if a complete run never got there), length, overhead, seconds, and the
  GRAPH_STATS tags.
  """
  out = {}
  steps, success = success_curve(m, window)
  out['final'] = float(success[-1]) if m.complete and steps.size else None
  eval_steps, eval_values = m.scalars.get(EVAL_SUCCESS, (np.zeros(0), np.zeros(0)))
  out['eval'] = float(eval_values[-1]) if m.complete and eval_steps.size else None
  for b in budgets:
    out[f'budget:{b}'] = value_at(steps, success, b) if m.last_iteration >= b else None
  reached = np.nonzero(success >= threshold)[0]
  out['to_threshold'] = (float(steps[reached[0]]) if reached.size else
                         math.inf if m.complete else None)
  if LENGTH in m.scalars and m.complete:
    out['length'] = float(m.scalars[LENGTH][1][-window:].mean())
  if all(t in m.scalars for t in TIMES):
    # Per-iteration shares, median: robust to the compilation in the first
    # iteration (and again after every resume).
    common = functools.reduce(np.intersect1d, [m.scalars[t][0] for t in TIMES])
    get = lambda t: np.interp(common, *m.scalars[t])
    if common.size:
      out['overhead'] = float(np.median((get('time/graph') + get('time/credit'))
                                        / np.maximum(get('time/iteration'), 1e-9)))
      out['seconds'] = float(np.median(get('time/iteration')))
  for tag, _, _ in GRAPH_STATS:
    if tag in m.scalars:
      out[tag] = float(m.scalars[tag][1].mean())
  return out


# ----------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------


def mean_std(values: list[float | None], fmt: str, total: int) -> str:
  """'mean ± std' over the non-None values, '(n=k)' if fewer than `total`."""
  xs = [v for v in values if v is not None]
  if not xs:
    return '–'
  text = fmt.format(np.mean(xs))
  if len(xs) > 1:
    text += ' ± ' + fmt.format(np.std(xs, ddof=1))
  if len(xs) < total:
    text += f' (n={len(xs)})'
  return text


def threshold_cell(values: list[float | None]) -> str:
  """Mean ± std of the iterations of the members that reached the threshold."""
  known = [v for v in values if v is not None]
  hit = [v for v in known if math.isfinite(v)]
  if not known:
    return '–'
  if not hit:
    return f'not reached (0/{len(known)})'
  text = mean_std(hit, '{:.0f}', len(hit))
  return text if len(hit) == len(known) else f'{text} ({len(hit)}/{len(known)} reached)'


def _row(cells: list[str]) -> str:
  return '| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |'


def group_table(groups: dict[str, list[Member]], numbers: dict[str, dict], varying: list[str],
                threshold: float, budgets: list[int], window: int) -> str:
  """The markdown table: one row per group, mean ± std over its members."""
  has_eval = any(numbers[m.name].get('eval') is not None for g in groups.values() for m in g)
  head = [varying[0] if len(varying) == 1 else 'group', 'seeds (complete)',
          f'final success (last {window})']
  head += ['final eval success'] * has_eval
  head += [f'success @ {b} it' for b in budgets]
  head += [f'iters to success ≥ {threshold:g}', f'episode length (last {window})',
           'graph+credit / iteration', 's / iteration']
  # Only the statistics some member logged (matching ones need graph.matching's metrics).
  stats = [s for s in GRAPH_STATS
           if any(numbers[m.name].get(s[0]) is not None for g in groups.values() for m in g)]
  head += [title for _, title, _ in stats]
  lines = [_row(head), _row(['---'] * len(head))]
  for label, group in groups.items():
    nums = [numbers[m.name] for m in group]
    col = lambda key, fmt: mean_std([n.get(key) for n in nums], fmt, len(group))
    complete = sum(m.complete for m in group)
    cells = [label, f'{len(group)} ({complete})', col('final', '{:.3f}')]
    cells += [col('eval', '{:.3f}')] * has_eval
    cells += [col(f'budget:{b}', '{:.3f}') for b in budgets]
    cells += [threshold_cell([n.get('to_threshold') for n in nums]),
              col('length', '{:.1f}'), col('overhead', '{:.1%}'), col('seconds', '{:.1f}')]
    cells += [col(tag, fmt) for tag, _, fmt in stats]
    lines.append(_row(cells))
  return '\n'.join(lines)


def member_table(groups: dict[str, list[Member]], numbers: dict[str, dict]) -> str:
  """One row per member: where it got and its own final numbers."""
  lines = [_row(['member', 'group', 'seed', 'iterations', 'final success', 'final eval',
                 'graph+credit / iteration']), _row(['---'] * 7)]
  fmt = lambda v, f: '–' if v is None else f.format(v)
  for label, group in groups.items():
    for m in group:
      n = numbers[m.name]
      lines.append(_row([
          m.name, label, str(m.seed), f'{m.last_iteration}/{m.num_iterations}',
          fmt(n.get('final'), '{:.3f}'), fmt(n.get('eval'), '{:.3f}'),
          fmt(n.get('overhead'), '{:.1%}')]))
  return '\n'.join(lines)


def protocol_table(groups: dict[str, list[Member]], prefix: str) -> str:
  """Mean ± std over seeds of PROTOCOL_STATS (`prefix`/...) at every logged
  iteration of the group's first member that its seeds share."""
  lines = [_row(['group', 'iteration'] + [t for _, t, _ in PROTOCOL_STATS]),
           _row(['---'] * (2 + len(PROTOCOL_STATS)))]
  for label, group in groups.items():
    first = group[0].scalars.get(f'{prefix}/success', (np.zeros(0, int),))[0]
    for step in first:
      cells = [label, str(step)]
      for tag, _, fmt in PROTOCOL_STATS:
        values = [value_at(*m.scalars[f'{prefix}/{tag}'], int(step)) if f'{prefix}/{tag}'
                  in m.scalars else None for m in group]
        cells.append(mean_std(values, fmt, len(group)))
      lines.append(_row(cells))
  return '\n'.join(lines)


def phase_table(groups: dict[str, list[Member]]) -> str:
  """Seconds per iteration by phase: the median over iterations, mean ± std
  over seeds (time/eval: per evaluation)."""
  logged = [t for t in PHASES if any(t in m.scalars for g in groups.values() for m in g)]
  lines = [_row(['group'] + [t.split('/')[1] for t in logged]), _row(['---'] * (1 + len(logged)))]
  for label, group in groups.items():
    cells = [label]
    for tag in logged:
      cells.append(mean_std([float(np.median(m.scalars[tag][1])) if tag in m.scalars else None
                             for m in group], '{:.1f}', len(group)))
    lines.append(_row(cells))
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------


def _band(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Mean, min and max over curves at each grid point each curve covers."""
  stacked = np.full((len(curves), len(grid)), np.nan)
  for i, (x, y) in enumerate(curves):
    if x.size:
      inside = (grid >= x[0]) & (grid <= x[-1])
      stacked[i, inside] = np.interp(grid[inside], x, y)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)   # grid points no curve covers
    return np.nanmean(stacked, 0), np.nanmin(stacked, 0), np.nanmax(stacked, 0)


def _panel(ax, groups: dict[str, list[Member]], curve_of, xlabel: str, ylabel: str,
           colors: dict[str, str], points: int | None = None) -> bool:
  """One panel of mean lines and min-max bands; False if nothing to draw."""
  drawn = False
  for label, group in groups.items():
    pairs = [(m, c) for m, c in ((m, curve_of(m)) for m in group)
             if c is not None and c[0].size]
    if not pairs:
      continue
    curves = [c for _, c in pairs]
    if points:
      # Up to where every complete member still has data, so the line's end
      # is not one seed's alone; incomplete members count while they last.
      ends = [c[0][-1] for m, c in pairs if m.complete] or [c[0][-1] for c in curves]
      grid = np.linspace(min(c[0][0] for c in curves), min(ends), points)
    else:
      grid = np.unique(np.concatenate([c[0] for c in curves]))
    mean, lo, hi = _band(curves, grid.astype(np.float64))
    ax.plot(grid, mean, color=colors[label], label=f'{label} (n={len(curves)})', lw=1.8)
    if len(curves) > 1:
      ax.fill_between(grid, lo, hi, color=colors[label], alpha=0.18, lw=0)
    drawn = True
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  return drawn


def plot_learning_curves(groups: dict[str, list[Member]], window: int, path: str) -> None:
  """Success vs iterations, vs environment steps, and eval success (if logged)."""
  colors = _colors(groups)
  has_eval = any(EVAL_SUCCESS in m.scalars for g in groups.values() for m in g)
  fig = figure.Figure(figsize=(6.0 * (2 + has_eval), 4.8), layout='constrained')
  axes = fig.subplots(1, 2 + has_eval, squeeze=False)[0]
  _panel(axes[0], groups, lambda m: success_curve(m, window), 'iteration',
         f'rollout success (mean of last {window} iterations)', colors)
  env_curve = lambda m: (None if env_steps(m) is None else
                         (env_steps(m), success_curve(m, window)[1]))
  if not _panel(axes[1], groups, env_curve, 'environment steps', 'rollout success', colors,
                points=200):
    axes[1].set_title('no episode lengths logged')
  if has_eval:
    _panel(axes[2], groups, lambda m: m.scalars.get(EVAL_SUCCESS), 'iteration',
           'eval success (unseen tasks)', colors)
  for ax in axes:
    ax.set_ylim(-0.02, 1.02)
  _legend(axes)
  fig.suptitle('line: mean over seeds; band: min to max')
  fig.savefig(path, dpi=110)


def plot_diagnostics(groups: dict[str, list[Member]], path: str) -> None:
  """Episode length, graph+credit share and graph statistics vs iterations."""
  colors = _colors(groups)

  def tag_curve(tag):
    return lambda m: m.scalars.get(tag)

  def share(m):
    if not all(t in m.scalars for t in TIMES):
      return None
    steps = m.scalars['time/iteration'][0]
    get = lambda t: np.interp(steps, *m.scalars[t])
    return steps, (get('time/graph') + get('time/credit')) / np.maximum(get('time/iteration'),
                                                                        1e-9)

  panels = [(tag_curve(LENGTH), 'rollout episode length'),
            (share, 'graph+credit share of iteration time'),
            (tag_curve('graph/visits_per_node'), 'visits per node'),
            (tag_curve('graph/singleton_fraction'), 'share of steps in single-visit nodes')]
  fig = figure.Figure(figsize=(12, 8), layout='constrained')
  axes = fig.subplots(2, 2).ravel()
  for ax, (curve, ylabel) in zip(axes, panels):
    if not _panel(ax, groups, curve, 'iteration', ylabel, colors):
      ax.set_title('not logged')
  _legend(axes)
  fig.suptitle('diagnostics (line: mean over seeds; band: min to max)')
  fig.savefig(path, dpi=110)


def _legend(axes) -> None:
  """A legend in the first panel that drew something (groups share colours)."""
  for ax in axes:
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8, loc='best')
      return


def _colors(groups: dict) -> dict[str, str]:
  cmap = colormaps['tab10' if len(groups) <= 10 else 'tab20']
  return {label: cmap(i % cmap.N) for i, label in enumerate(groups)}


# ----------------------------------------------------------------------------
# Graph pictures
# ----------------------------------------------------------------------------


def latest_batch(workdir: str) -> str | None:
  """The newest batch file the trainer saved in `workdir`, or None."""
  paths = sorted(glob.glob(os.path.join(workdir, viz.BATCH_DIR, '*.npz')))
  return paths[-1] if paths else None


def draw_batch(path: str, out_path: str, index: int | None) -> str:
  """Writes the PNG of one task group of the batch at `path`; returns out_path.

  Raises:
    ReportError: if the file cannot be read or drawn (says why).
  """
  try:
    png = viz.render_batch(viz.load_batch(path), index)
  except (OSError, ValueError) as e:
    raise ReportError(f'cannot draw {path}: {e}') from None
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with open(out_path, 'wb') as f:
    f.write(png)
  return out_path


# ----------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------


def default_budgets(members: list[Member]) -> list[int]:
  """A quarter, half and all of the longest run's iterations (distinct, > 0)."""
  longest = max(m.num_iterations for m in members)
  return sorted({b for b in (longest // 4, longest // 2, longest) if b > 0})


def plot_protocol(groups: dict[str, list[Member]], path: str) -> None:
  """PROTOCOL_STATS vs iterations: the rollouts' (every iteration) and eval's."""
  colors = _colors(groups)
  fig = figure.Figure(figsize=(4.0 * len(PROTOCOL_STATS), 7.2), layout='constrained')
  axes = fig.subplots(2, len(PROTOCOL_STATS))
  for row, prefix in enumerate(('rollout', 'eval')):
    for ax, (tag, title, _) in zip(axes[row], PROTOCOL_STATS):
      if not _panel(ax, groups, lambda m, t=f'{prefix}/{tag}': m.scalars.get(t), 'iteration',
                    f'{prefix}: {title}', colors):
        ax.set_title('not logged')
  _legend(axes.ravel())
  fig.suptitle('the protocol over training (line: mean over seeds; band: min to max)')
  fig.savefig(path, dpi=110)


def write_report(root: str, out: str, threshold: float, budgets: list[int] | None,
                 window: int) -> str:
  """Reads every member under `root`, writes report.md and PNGs to `out`.

  Returns:
    The path of report.md.
  Raises:
    ReportError: if `root` holds no runs or an argument is invalid.
  """
  if window < 1:
    raise ReportError(f'--window must be at least 1; got {window}.')
  members, unstarted = load_members(root)
  budgets = default_budgets(members) if budgets is None else budgets
  if any(b < 1 for b in budgets):
    raise ReportError(f'--budgets must be positive iteration counts; got {budgets}.')
  varying, groups = group_members(members)
  numbers = {m.name: member_numbers(m, window, threshold, budgets) for m in members}
  os.makedirs(out, exist_ok=True)
  plot_learning_curves(groups, window, os.path.join(out, 'learning_curves.png'))
  plot_diagnostics(groups, os.path.join(out, 'diagnostics.png'))

  pictures = []                           # (group, member, batch file, PNG or error)
  for label, group in groups.items():
    for m in group:
      path = latest_batch(m.workdir)
      if path:
        name = f'graph_{_SAFE.sub("_", label)}.png'
        try:
          draw_batch(path, os.path.join(out, name), None)
        except ReportError as e:             # one bad file should not cost the report
          name = str(e)
        pictures.append((label, m.name, os.path.relpath(path, root), name))
        break

  incomplete = [m for m in members if not m.complete]
  text = [f'# Report: {os.path.abspath(root)}', '',
          f'{len(members)} runs in {len(groups)} groups, written '
          f'{datetime.datetime.now():%Y-%m-%d %H:%M}. Groups differ in: '
          f'{", ".join(varying) or "nothing (one group)"}; the seeds of a group are its runs.',
          '',
          f'Success values are rollout success averaged over the last {window} logged '
          f'iterations (at the end, or up to the budget); mean ± std (ddof=1) over seeds. '
          f'"graph+credit / iteration" is the median over iterations of (time/graph + '
          f'time/credit) / time/iteration. Final columns use complete runs only; "(n=k)" '
          f'marks cells with fewer runs than the group.', '',
          group_table(groups, numbers, varying, threshold, budgets, window), '',
          '![learning curves](learning_curves.png)', '',
          '![diagnostics](diagnostics.png)', '']
  if any('rollout/format_error_rate' in m.scalars for m in members):
    plot_protocol(groups, os.path.join(out, 'protocol.png'))
    text += ['## The protocol', '',
             'Per step: format errors (no well-formed <action> block) and invalid actions '
             '(well-formed, not admissible); tokens per response and per episode. Mean ± std '
             'over seeds.', '', '### Evaluation (unseen tasks)', '',
             protocol_table(groups, 'eval'), '', '### Rollouts', '',
             protocol_table(groups, 'rollout'), '',
             '### Seconds per iteration by phase (median over iterations)', '',
             phase_table(groups), '', '![protocol](protocol.png)', '']
  if incomplete or unstarted:
    text += ['## Incomplete runs', '']
    text += [f'- {m.name}: iteration {m.last_iteration} of {m.num_iterations}'
             for m in incomplete]
    text += [f'- {os.path.basename(d)}: not started (no config.json)' for d in unstarted]
    text.append('')
  if pictures:
    text += ['## State graphs', '']
    for label, member, source, name in pictures:
      shown = name if name.startswith('cannot draw') else f'![{label}]({name})'
      text += [f'{label}: {member}, `{source}`', '', shown, '']
  text += ['## Runs', '', member_table(groups, numbers), '']
  commands = [m.command for g in groups.values() for m in g if m.command]
  if commands:
    text += ['## Commands', '', '```', *commands, '```', '']
  path = os.path.join(out, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(text))
  return path


def main(argv):
  # TensorBoard's reader narrates every event file it opens at INFO.
  std_logging.getLogger('tensorboard').setLevel(std_logging.WARNING)
  if _GRAPH.value:
    if len(argv) > 1:
      raise app.UsageError('--graph draws one batch file; give no ROOT with it.')
    stem = os.path.splitext(os.path.basename(_GRAPH.value))[0]
    out = _OUT.value or os.path.dirname(os.path.abspath(_GRAPH.value))
    suffix = '' if _GRAPH_GROUP.value is None else f'_group{_GRAPH_GROUP.value}'
    print(draw_batch(_GRAPH.value, os.path.join(out, f'{stem}{suffix}.png'), _GRAPH_GROUP.value))
    return
  if len(argv) != 2:
    raise app.UsageError('usage: python -m experiments.report ROOT [--out=DIR] (or --graph=FILE)')
  root = argv[1]
  try:
    budgets = None if _BUDGETS.value is None else [int(b) for b in _BUDGETS.value]
  except ValueError:
    raise ReportError(f'--budgets must be integers; got {_BUDGETS.value}.') from None
  print(write_report(root, _OUT.value or os.path.join(root, 'report'), _THRESHOLD.value,
                     budgets, _WINDOW.value))


def run():
  """app.run, with one-line messages for bad input."""
  try:
    app.run(main)
  except ReportError as e:
    sys.exit(f'report error: {e}')


if __name__ == '__main__':
  run()
