"""Shoot-out bookkeeping: learning-rate selection and summaries. Host only (numpy).

A shoot-out runs every estimator over a grid of seeds x learning rates. The
rate is chosen per estimator on held-out seeds (by area under the success
curve) and everything reported comes from the other seeds at that rate, so
the choice never sees the numbers it is judged by.
"""

import numpy as np

THRESHOLDS = (0.5, 0.8)


def iterations_to(success: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
  """First evaluation at which success reaches `threshold`.

  Args:
    success: [..., I+1] success after 0, 1, ..., I updates.
    threshold: in (0, 1].
  Returns:
    (iterations [...] int, reached [...] bool). A run that never reaches the
    threshold is censored at I+1 (reached False): "more than I".
  """
  hit = success >= threshold
  reached = hit.any(-1)
  return np.where(reached, hit.argmax(-1), success.shape[-1]), reached


def area_under_curve(success: np.ndarray) -> np.ndarray:
  """[...] mean success over the I+1 evaluations (1 = solved from the start)."""
  return success.mean(-1)


def select_lr(success: np.ndarray, heldout: int) -> tuple[int, np.ndarray]:
  """Index of the rate with the best mean area on the first `heldout` seeds.

  Args:
    success: [R, L, I+1] success per seed and rate.
    heldout: number of leading seeds used for the choice (1 <= heldout < R).
  Returns:
    (best index, [L] held-out mean area per rate).
  """
  if not 1 <= heldout < success.shape[0]:
    raise ValueError(f'heldout must be in [1, {success.shape[0] - 1}] (some seeds must '
                     f'remain for the report); got {heldout}.')
  auc = area_under_curve(success[:heldout]).mean(0)
  return int(np.argmax(auc)), auc


def mean_std(x: np.ndarray) -> dict[str, float]:
  x = np.asarray(x, np.float64)
  return {'mean': float(x.mean()), 'std': float(x.std(ddof=1)) if x.size > 1 else 0.0}


def summarize(metrics: dict[str, np.ndarray], lrs: np.ndarray, heldout: int) -> dict:
  """Selection on held-out seeds and the report on the others, for one estimator.

  Args:
    metrics: from `learner.make_sweep`, reshaped to [R, L, ...]: 'success'
      [R, L, I+1], 'max_abs_advantage', 'shared_fraction', 'visits_per_node'
      [R, L, I].
    lrs: [L] the estimator's rates.
    heldout: leading seeds used to choose the rate.
  Returns:
    A JSON-able dict: the chosen rate, held-out and test areas per rate, and
    on the test seeds at that rate: iterations to each threshold (per seed,
    censored as in `iterations_to`), final success, area, the success curve's
    mean and std, advantage magnitudes and graph statistics.
  """
  best, heldout_auc = select_lr(metrics['success'], heldout)
  test = {k: np.asarray(v[heldout:, best]) for k, v in metrics.items()}
  success = test['success']                                          # [R', I+1]
  out = {
      'lr': float(lrs[best]),
      'lr_index': best,
      'lr_at_grid_edge': best in (0, len(lrs) - 1),
      'lrs': [float(x) for x in lrs],
      'heldout_auc_per_lr': heldout_auc.tolist(),
      'test_auc_per_lr': area_under_curve(metrics['success'][heldout:]).mean(0).tolist(),
      'num_test_seeds': int(success.shape[0]),
      'final_success': mean_std(success[:, -1]),
      'auc': mean_std(area_under_curve(success)),
      'curve_mean': success.mean(0).tolist(),
      'curve_std': success.std(0, ddof=1).tolist() if success.shape[0] > 1 else
                   np.zeros(success.shape[1]).tolist(),
      'max_abs_advantage': float(test['max_abs_advantage'].max()),
      'median_iteration_max_abs_advantage': float(np.median(test['max_abs_advantage'])),
      'shared_fraction_first': mean_std(test['shared_fraction'][:, 0]),
      'shared_fraction_mean': mean_std(test['shared_fraction'].mean(-1)),
      'visits_per_node_first': mean_std(test['visits_per_node'][:, 0]),
      'visits_per_node_mean': mean_std(test['visits_per_node'].mean(-1)),
  }
  for threshold in THRESHOLDS:
    its, reached = iterations_to(success, threshold)
    out[f'iters_to_{round(threshold * 100)}'] = {
        **mean_std(its), 'per_seed': its.tolist(), 'reached': int(reached.sum())}
  return out


def _its(entry: dict) -> str:
  """'12.3 ± 4.5', or '≥ 40.1 ± 30.2 (15/20)' when some seeds never got there."""
  text = f'{entry["mean"]:.1f} ± {entry["std"]:.1f}'
  total = len(entry['per_seed'])
  if entry['reached'] < total:
    text = f'≥ {text} ({entry["reached"]}/{total})'
  return text


def paired_difference(summaries: dict[str, dict], name: str, reference: str,
                      threshold: int = 80) -> dict[str, float]:
  """Per-seed difference in iterations to `threshold`% against `reference`.

  Seeds draw the same tasks and first batch for every estimator (common
  random numbers), so the paired difference has far less noise than the
  difference of the two means. Censored seeds count at I+1 on both sides.

  Returns:
    'mean' and 'sem' (standard error) of name - reference, and 'ratio' of the
    reference's mean to name's (> 1: name is faster).
  """
  key = f'iters_to_{threshold}'
  a = np.asarray(summaries[name][key]['per_seed'], np.float64)
  b = np.asarray(summaries[reference][key]['per_seed'], np.float64)
  diff = a - b
  sem = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
  return {'mean': float(diff.mean()), 'sem': sem, 'ratio': float(b.mean() / max(a.mean(), 1e-9))}


def markdown_tables(summaries: dict[str, dict], reference: str | None = 'grpo') -> str:
  """The results table and the graph/advantage table, as markdown.

  With `reference` among the estimators, a column gives each estimator's
  paired difference in iterations to 80% against it (`paired_difference`).
  """
  paired = reference in summaries
  head = '| estimator | lr | iters to 50% | iters to 80% | final success | AUC |'
  rule = '|---|---:|---:|---:|---:|---:|'
  if paired:
    head += f' iters to 80% minus {reference} (paired, ± s.e.) |'
    rule += '---:|'
  lines = [head, rule]
  for name, s in summaries.items():
    edge = ' (grid edge)' if s['lr_at_grid_edge'] else ''
    row = (f'| {name} | {s["lr"]:.4g}{edge} | {_its(s["iters_to_50"])} | '
           f'{_its(s["iters_to_80"])} | '
           f'{s["final_success"]["mean"]:.3f} ± {s["final_success"]["std"]:.3f} | '
           f'{s["auc"]["mean"]:.3f} ± {s["auc"]["std"]:.3f} |')
    if paired:
      d = paired_difference(summaries, name, reference)
      row += (' - |' if name == reference else
              f' {d["mean"]:+.1f} ± {d["sem"]:.1f} ({d["ratio"]:.2f}x) |')
    lines.append(row)
  lines += ['', '| estimator | max abs A (all iterations) | median of per-iteration max abs A | '
            'shared-state fraction (iter 0 / run mean) | visits per node (iter 0 / run mean) |',
            '|---|---:|---:|---:|---:|']
  for name, s in summaries.items():
    lines.append(
        f'| {name} | {s["max_abs_advantage"]:.2f} | '
        f'{s["median_iteration_max_abs_advantage"]:.2f} | '
        f'{s["shared_fraction_first"]["mean"]:.3f} / {s["shared_fraction_mean"]["mean"]:.3f} | '
        f'{s["visits_per_node_first"]["mean"]:.2f} / {s["visits_per_node_mean"]["mean"]:.2f} |')
  return '\n'.join(lines)
