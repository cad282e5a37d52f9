"""Pictures of a task group's state-transition graph (host: numpy, matplotlib).

One picture shows one task group: the G attempts at the same task merged into
the graph G2PO assigns credit on (spec ALGORITHMS.md section 5).

  node   a distinct state key; area ~ visits (steps taken in it), colour =
         V(node), G2PO's node value; states only ever reached (the end of a
         failed attempt) are grey
  edge   the steps from one state to the next, merged per (state, next state,
         outcome); width ~ number of steps, colour = their mean advantage,
         solid for successful attempts, dashed for failed ones
  SUCCESS  where the last step of every successful attempt leads, as in the
         estimators (V+ = success_reward there)

Nodes are laid out in columns by the first step at which any attempt reaches
them (networkx's multipartite layout), so time runs left to right.

A rollout batch can be saved with `save_batch` (by the trainer, every N
iterations) and drawn later with `render_batch` (`experiments/report.py
--graph=...`). matplotlib and networkx are imported on first use, so importing
this module stays cheap.
"""

import io
import os
from typing import NamedTuple

import numpy as np

SUCCESS = 'SUCCESS'
BATCH_DIR = 'batches'          # under a run's workdir

_VALUE_CMAP = 'viridis'
_ADVANTAGE_CMAP = 'coolwarm_r'   # red: negative advantage, blue: positive
_UNVALUED_COLOR = '#bbbbbb'
_SUCCESS_COLOR = 'gold'


class Batch(NamedTuple):
  """The arrays of one iteration's B trajectories that a picture needs.

  Rows with equal `group` are the attempts at one task (a task group).
  """
  group: np.ndarray        # [B] int, task group (the task seed) of each row
  state_key: np.ndarray    # [B, T] uint64 key of the state each step acts in
  next_key: np.ndarray     # [B, T] uint64 key of the state the step reaches
  reward: np.ndarray       # [B, T] float32, a win scaled to success_reward
  valid: np.ndarray        # [B, T] bool, the action was admissible
  mask: np.ndarray         # [B, T] bool, real steps (a prefix per row)
  advantages: np.ndarray   # [B, T] float32, the estimator's advantages
  success_reward: float    # the return of a successful episode
  gamma: float = 0.95      # discount of G2PO's visit values (credit.gamma)
  estimator: str = ''      # credit.name, for titles
  iteration: int = 0       # the training iteration (1-based), for titles


def batch_path(workdir: str, iteration: int) -> str:
  """Where the trainer saves iteration `iteration`'s batch in `workdir`."""
  return os.path.join(workdir, BATCH_DIR, f'batch_{iteration:06d}.npz')


def check_batch(batch: Batch) -> None:
  """Raises ValueError naming the first malformed field of `batch`."""
  b = np.shape(batch.group)
  if len(b) != 1:
    raise ValueError(f'group must be [B]; got shape {b}.')
  for field in ('state_key', 'next_key', 'reward', 'valid', 'mask', 'advantages'):
    shape = np.shape(getattr(batch, field))
    if len(shape) != 2 or shape[0] != b[0] or shape != np.shape(batch.mask):
      raise ValueError(f'{field} must be [B, T] = [{b[0]}, T] like mask '
                       f'{np.shape(batch.mask)}; got shape {shape}.')
  mask = np.asarray(batch.mask)
  if mask.dtype != bool:
    raise ValueError(f'mask must be bool; got dtype {mask.dtype}.')
  if (mask[:, 1:] & ~mask[:, :-1]).any():
    raise ValueError('mask must be a prefix per row (True steps, then False padding).')
  for field in ('reward', 'advantages'):
    x = np.asarray(getattr(batch, field))
    if not np.isfinite(x[mask]).all():
      raise ValueError(f'{field} is NaN/inf at real steps [b, t] = '
                       f'{np.argwhere(~np.isfinite(x) & mask)[:3].tolist()}.')
  if not (np.isfinite(batch.success_reward) and batch.success_reward > 0):
    raise ValueError(f'success_reward must be a finite number > 0; got {batch.success_reward}.')
  if not 0 < batch.gamma <= 1:
    raise ValueError(f'gamma must lie in (0, 1]; got {batch.gamma}.')


def save_batch(path: str, batch: Batch) -> None:
  """Writes `batch` to `path` (.npz, parent directories created).

  Raises:
    ValueError: from `check_batch`.
  """
  check_batch(batch)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  arrays = {k: np.asarray(v) for k, v in batch._asdict().items()}
  arrays['estimator'] = np.asarray(str(batch.estimator))   # a str array: no pickle
  # Write then rename, so a reader never sees half a file.
  tmp = path + '.tmp.npz'
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def load_batch(path: str) -> Batch:
  """Reads a file written by `save_batch`.

  Raises:
    ValueError: if a field is missing or malformed.
  """
  with np.load(path, allow_pickle=False) as f:
    missing = sorted(set(Batch._fields) - set(f.files))
    if missing:
      raise ValueError(f'{path} is not a saved batch: missing {", ".join(missing)}.')
    batch = Batch(
        group=f['group'], state_key=f['state_key'], next_key=f['next_key'],
        reward=f['reward'], valid=f['valid'], mask=f['mask'], advantages=f['advantages'],
        success_reward=float(f['success_reward']), gamma=float(f['gamma']),
        estimator=str(f['estimator']), iteration=int(f['iteration']))
  check_batch(batch)
  return batch


def groups(group: np.ndarray) -> np.ndarray:
  """[K] distinct task groups of `group` [B], in order of first appearance."""
  _, first = np.unique(group, return_index=True)
  return np.asarray(group)[np.sort(first)]


def success(reward: np.ndarray, mask: np.ndarray, success_reward: float) -> np.ndarray:
  """[B] bool: the episode return equals `success_reward` (the estimators' rule).

  Args:
    reward: [B, T] float per-step rewards.
    mask: [B, T] bool prefix mask.
    success_reward: the return of a successful episode.
  """
  returns = np.where(mask, reward, 0.0).sum(1)
  return np.abs(returns - success_reward) <= 1e-5 * max(abs(success_reward), 1.0)


def visit_values(reward: np.ndarray, mask: np.ndarray, gamma: float) -> np.ndarray:
  """[B, T] value gamma^(T_b - t) * R_b of each step (spec 5.1); 0 on padding.

  T_b is row b's number of real steps and R_b its episode return, so the last
  step gets gamma * R_b. The mean over a node's visits is V(node) (spec 5.2),
  as `g2po_jax.credit.node_values` computes it on the device.
  """
  returns = np.where(mask, reward, 0.0).sum(1)
  to_go = mask.sum(1)[:, None] - np.arange(mask.shape[1])[None, :]
  return np.where(mask, gamma ** np.maximum(to_go, 0) * returns[:, None], 0.0)


def group_graph(state_key: np.ndarray, next_key: np.ndarray, reward: np.ndarray,
                valid: np.ndarray, mask: np.ndarray, advantages: np.ndarray, *,
                success_reward: float, gamma: float = 0.95) -> 'networkx.MultiDiGraph':
  """One task group's graph as a networkx MultiDiGraph (what the picture shows).

  Args:
    state_key: [G, T] integer key of the state each step acts in.
    next_key: [G, T] integer key of the state each step reaches.
    reward: [G, T] float per-step rewards (a win = success_reward).
    valid: [G, T] bool, the action was admissible.
    mask: [G, T] bool prefix mask of real steps.
    advantages: [G, T] float advantage of each step.
    success_reward: the return of a successful episode.
    gamma: discount of the visit values.
  Returns:
    A MultiDiGraph. Nodes are state keys (int) plus `SUCCESS`, with
    attributes `visits` (steps taken in the node; for SUCCESS, the successful
    attempts), `value` (V(node); NaN where no step was taken; success_reward
    for SUCCESS), `layer` (first step index reaching it) and `kind` ('state'
    or 'success'). Edges are keyed 'success' or 'fail' (the
    outcome of the attempts that took them), with attributes `steps`,
    `invalid` (how many of them were invalid actions) and `advantage` (their
    mean advantage).

  Raises:
    ValueError: on mismatched shapes or a group without real steps.
  """
  import networkx as nx
  g_rows = np.shape(mask)[0]
  check_batch(Batch(np.zeros(g_rows, np.int64), state_key, next_key, reward, valid,
                    np.asarray(mask), advantages, success_reward, gamma))
  mask = np.asarray(mask)
  if not mask.any():
    raise ValueError('the group has no real steps (mask is all False).')
  won = success(reward, mask, success_reward)
  visit = visit_values(np.asarray(reward, np.float64), mask, gamma)
  length = mask.sum(1)
  graph = nx.MultiDiGraph()
  value_sum = {}

  def add_node(key, layer):
    if key not in graph:
      graph.add_node(key, visits=0, value=np.nan, layer=layer, kind='state')
    graph.nodes[key]['layer'] = min(graph.nodes[key]['layer'], layer)

  # Row-major (attempt, step) order: nodes are inserted in order of first
  # visit, which is the vertical order inside a layout column.
  for b, t in zip(*np.nonzero(mask)):
    src = int(state_key[b, t])
    add_node(src, int(t))
    graph.nodes[src]['visits'] += 1
    value_sum[src] = value_sum.get(src, 0.0) + visit[b, t]
    if won[b] and t == length[b] - 1:
      dst = SUCCESS
    else:
      dst = int(next_key[b, t])
      add_node(dst, int(t) + 1)
    outcome = 'success' if won[b] else 'fail'
    if not graph.has_edge(src, dst, outcome):
      graph.add_edge(src, dst, outcome, steps=0, invalid=0, advantage_sum=0.0)
    edge = graph.edges[src, dst, outcome]
    edge['steps'] += 1
    edge['invalid'] += int(not valid[b, t])
    edge['advantage_sum'] += float(advantages[b, t])
  for key, total in value_sum.items():
    graph.nodes[key]['value'] = total / graph.nodes[key]['visits']
  last = max(layer for n, layer in graph.nodes(data='layer') if n != SUCCESS)
  # Always present (a group where every attempt failed shows it unreached),
  # one column right of the last state.
  graph.add_node(SUCCESS, visits=int(won.sum()), value=float(success_reward),
                 layer=last + 1, kind='success')
  for _, _, data in graph.edges(data=True):
    data['advantage'] = data.pop('advantage_sum') / data['steps']
  return graph


def render_group_graph(state_key: np.ndarray, next_key: np.ndarray, reward: np.ndarray,
                       valid: np.ndarray, mask: np.ndarray, advantages: np.ndarray, *,
                       success_reward: float, gamma: float = 0.95, title: str = '',
                       dpi: int = 100) -> bytes:
  """Draws one task group's state-transition graph; returns PNG bytes.

  See the module docstring for what the marks mean. Inputs are the G
  attempts of one task (e.g. the rows of a batch with one task seed).

  Args:
    state_key: [G, T] integer key of the state each step acts in.
    next_key: [G, T] integer key of the state each step reaches.
    reward: [G, T] float per-step rewards (a win = success_reward).
    valid: [G, T] bool, the action was admissible.
    mask: [G, T] bool prefix mask of real steps.
    advantages: [G, T] float advantage of each step (any estimator's).
    success_reward: the return of a successful episode.
    gamma: discount of G2PO's visit values (node colours).
    title: first line of the title; group statistics are appended.
    dpi: resolution of the PNG.
  Returns:
    The PNG file's bytes.

  Raises:
    ValueError: on mismatched shapes, non-finite values, or a group without
      real steps.
  """
  # A bare Figure renders with Agg and leaves pyplot's backend alone.
  import matplotlib
  from matplotlib import cm
  from matplotlib import colors
  from matplotlib import figure
  from matplotlib import lines
  import networkx as nx

  graph = group_graph(state_key, next_key, reward, valid, mask, advantages,
                      success_reward=success_reward, gamma=gamma)
  pos = nx.multipartite_layout(graph, subset_key='layer')
  layers = np.bincount([layer for _, layer in graph.nodes(data='layer')])
  width = min(max(8.0, 0.9 * len(layers) + 4.0), 20.0)
  height = min(max(5.0, 0.7 * layers.max() + 2.5, width / 2.2), 14.0)
  # Constrained layout makes room for both colour bars and the legend below.
  fig = figure.Figure(figsize=(width, height), dpi=dpi, layout='constrained')
  ax = fig.add_subplot()

  nodes = list(graph.nodes)
  max_visits = max(v for n, v in graph.nodes(data='visits') if n != SUCCESS)
  size_of = lambda visits: 150.0 + 1350.0 * np.sqrt(visits / max_visits)
  size = {n: 900.0 if n == SUCCESS else size_of(graph.nodes[n]['visits']) for n in nodes}
  values = np.array([graph.nodes[n]['value'] for n in nodes if n != SUCCESS])
  known = values[np.isfinite(values)]
  value_norm = colors.Normalize(min(0.0, known.min(initial=0.0)),
                                max(success_reward, known.max(initial=0.0)))
  valued = [n for n in nodes if n != SUCCESS and np.isfinite(graph.nodes[n]['value'])]
  unvalued = [n for n in nodes if n != SUCCESS and not np.isfinite(graph.nodes[n]['value'])]
  draw_nodes = lambda nodelist, **kw: nx.draw_networkx_nodes(
      graph, pos, nodelist=nodelist, ax=ax, edgecolors='black', linewidths=0.8,
      node_size=[size[n] for n in nodelist], **kw)
  draw_nodes(valued, node_color=[graph.nodes[n]['value'] for n in valued], cmap=_VALUE_CMAP,
             vmin=value_norm.vmin, vmax=value_norm.vmax)
  if unvalued:
    draw_nodes(unvalued, node_color=_UNVALUED_COLOR)
  draw_nodes([SUCCESS], node_color=_SUCCESS_COLOR, node_shape='*')
  x, y = pos[SUCCESS]
  ax.annotate(SUCCESS, (x, y), xytext=(0, -24), textcoords='offset points', ha='center',
              fontsize=9, fontweight='bold')

  # Limits from the layout, not from autoscaling, which self-loops distort.
  xy = np.array(list(pos.values()))
  pad = 0.25 * max(np.ptp(xy[:, 0]) / max(len(layers) - 1, 1), np.ptp(xy[:, 1]), 0.2)
  ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
  ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
  loop_height = 0.4 * pad
  radius = {n: np.sqrt(s) / 2 for n, s in size.items()}   # points, as networkx measures

  real = np.asarray(mask, bool)
  bound = float(np.abs(np.asarray(advantages)[real]).max(initial=0.0)) or 1.0
  for outcome, style, rad in (('success', 'solid', 0.15), ('fail', 'dashed', -0.15)):
    edges = [(u, v, k) for u, v, k in graph.edges(keys=True) if k == outcome]
    if not edges:
      continue
    data = [graph.edges[e] for e in edges]
    # networkx makes self-loops 0.1 x the height spanned by the edges drawn
    # together or, when they all lie on one row, 0.0005 x max(node_size).
    # In that case node_size only sets the loops' height, and the margins
    # that keep arrows off the nodes are given in points instead.
    flat = np.ptp([pos[n][1] for e in edges for n in e[:2]]) == 0
    # Opposite bends: a success and a fail edge between the same two states
    # stay apart, and so do A->B and B->A.
    nx.draw_networkx_edges(
        graph, pos, edgelist=edges, ax=ax, style=style, arrows=True, arrowsize=12,
        width=[min(1.0 + 0.6 * d['steps'], 8.0) for d in data],
        edge_color=[d['advantage'] for d in data], edge_cmap=matplotlib.colormaps[_ADVANTAGE_CMAP],
        edge_vmin=-bound, edge_vmax=bound, connectionstyle=f'arc3,rad={rad}',
        nodelist=nodes,
        node_size=[loop_height / 5e-4] * len(nodes) if flat else [size[n] for n in nodes],
        min_source_margin=[radius[u] for u, _, _ in edges],
        min_target_margin=[radius[v] for _, v, _ in edges])

  bar = dict(ax=ax, fraction=0.2 / width, pad=0.1 / width, aspect=30)  # fixed inches
  fig.colorbar(cm.ScalarMappable(value_norm, _VALUE_CMAP), label='node value V (G2PO)', **bar)
  fig.colorbar(cm.ScalarMappable(colors.Normalize(-bound, bound), _ADVANTAGE_CMAP),
               label='mean advantage of the edge', **bar)
  handles = [
      lines.Line2D([], [], color='black', ls='solid', label='successful attempts'),
      lines.Line2D([], [], color='black', ls='dashed', label='failed attempts'),
      lines.Line2D([], [], ls='', marker='o', ms=10, mfc='white', mec='black',
                   label=f'node area ~ visits (largest: {max_visits})'),
      lines.Line2D([], [], ls='', marker='o', ms=8, mfc=_UNVALUED_COLOR, mec='black',
                   label='reached only (no step taken)'),
      lines.Line2D([], [], ls='', marker='*', ms=12, mfc=_SUCCESS_COLOR, mec='black',
                   label=f'{SUCCESS} (V+ = {success_reward:g})'),
  ]
  fig.legend(handles=handles, loc='outside lower center', ncol=len(handles), fontsize=8,
             frameon=False)

  won = success(reward, real, success_reward)
  steps = int(real.sum())
  states = graph.number_of_nodes() - 1 - len(unvalued)
  visits = np.array([graph.nodes[n]['visits'] for n in valued])
  singles = int(visits[visits == 1].sum())
  stats = (f'{int(won.sum())}/{len(won)} attempts succeeded | {states} states, {steps} steps, '
           f'{steps / max(states, 1):.1f} visits per state, {singles / steps:.0%} of steps '
           f'in single-visit states | {int((~np.asarray(valid, bool)[real]).sum())} invalid '
           f'actions')
  ax.set_title(f'{title}\n{stats}' if title else stats, fontsize=10)
  ax.set_xlabel('first step at which a state is reached  →')
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', bbox_inches='tight')
  return buffer.getvalue()


def interesting_group(batch: Batch) -> int:
  """Index (into `groups(batch.group)`) of the group most worth a picture.

  The group whose success rate is closest to one half: mixed outcomes are
  where credit assignment has something to tell apart. Ties go to the first.
  """
  won = success(batch.reward, batch.mask, batch.success_reward)
  rates = [won[batch.group == g].mean() for g in groups(batch.group)]
  return int(np.argmin(np.abs(np.asarray(rates) - 0.5)))


def render_batch(batch: Batch, index: int | None = None, dpi: int = 100) -> bytes:
  """PNG of one task group of a saved batch.

  Args:
    batch: e.g. from `load_batch`.
    index: which group, in order of first appearance; None picks
      `interesting_group(batch)`.
    dpi: resolution of the PNG.
  Raises:
    ValueError: on a malformed batch or an index out of range.
  """
  check_batch(batch)
  keys = groups(batch.group)
  if index is None:
    index = interesting_group(batch)
  if not 0 <= index < len(keys):
    raise ValueError(f'group index must lie in [0, {len(keys)}) for this batch of '
                     f'{len(keys)} task groups; got {index}.')
  rows = batch.group == keys[index]
  title = ' | '.join(filter(None, [
      batch.estimator, f'iteration {batch.iteration}' if batch.iteration else '',
      f'task {keys[index]} (group {index + 1} of {len(keys)})']))
  return render_group_graph(
      batch.state_key[rows], batch.next_key[rows], batch.reward[rows], batch.valid[rows],
      batch.mask[rows], batch.advantages[rows], success_reward=batch.success_reward,
      gamma=batch.gamma, title=title, dpi=dpi)
