"""A deliberately simple dict-and-loop reference of every estimator (float64).

Written from the spec (ALGORITHMS.md) without looking at the jitted code:
plain Python loops over trajectories and steps, dicts keyed by
(group, state key). Slow on purpose; it is the oracle the property tests
compare the jitted estimators with, and the baseline of bench_credit.

Conventions shared with the library (documented there): a set of values that
agree to a relative 1e-5 (of their largest magnitude) normalizes to 0; a success is a return equal to
success_reward (to a relative 1e-5); GAGPO's and G2PO's value after a
trajectory's last step is the terminal value of the spec.
"""

import collections
import math

EPS = 1e-6
TIE = 1e-5
SUCCESS = ('SUCCESS',)


def _norm(values, mode, ddof=1, singleton='zero'):
  n = len(values)
  if n == 1:
    return [0.0] if singleton == 'zero' else [values[0]]
  hi, lo = max(values), min(values)
  if hi - lo <= TIE * max(abs(hi), abs(lo)):
    return [0.0] * n
  mean = sum(values) / n
  out = [v - mean for v in values]
  if mode == 'mean_std_norm':
    std = math.sqrt(sum(o * o for o in out) / max(n - ddof, 1))
    out = [o / (std + EPS) for o in out]
  return out


def _norm_sets(rows, key_of, value_of, mode, ddof=1, singleton='zero'):
  """Normalizes value_of(row) within the sets of rows sharing key_of(row)."""
  sets = collections.defaultdict(list)
  for r in rows:
    sets[key_of(r)].append(r)
  out = {}
  for members in sets.values():
    for r, a in zip(members, _norm([value_of(r) for r in members], mode, ddof, singleton)):
      out[r] = a
  return out


class Batch:
  """The rows of a batch as python objects."""

  def __init__(self, group, state, next_state, reward, valid, mask):
    self.num_rows, self.num_steps = len(mask), len(mask[0]) if len(mask) else 0
    self.length = [int(sum(bool(m) for m in row)) for row in mask]
    self.group = [int(g) for g in group]
    self.state = [[int(s) for s in row] for row in state]
    self.next_state = [[int(s) for s in row] for row in next_state]
    self.reward = [[float(r) for r in row] for row in reward]
    self.valid = [[bool(v) for v in row] for row in valid]
    self.rows = [(b, t) for b in range(self.num_rows) for t in range(self.length[b])]
    self.ret = [sum(self.reward[b][:self.length[b]]) for b in range(self.num_rows)]

  def inv(self, b, t):
    return 0.0 if self.valid[b][t] else 1.0

  def success(self, b, success_reward):
    return abs(self.ret[b] - success_reward) <= TIE * max(abs(success_reward), 1.0)

  def discounted(self, b, t, gamma):
    return sum(gamma ** (k - t) * self.reward[b][k] for k in range(t, self.length[b]))

  def output(self, values):
    out = [[0.0] * self.num_steps for _ in range(self.num_rows)]
    for (b, t), v in values.items():
      out[b][t] = v
    return out


def episode_term(x: Batch, norm, penalty):
  return _norm_sets(x.rows, lambda r: x.group[r[0]],
                    lambda r: x.ret[r[0]] - penalty * x.inv(*r), norm, singleton='keep')


def grpo(x: Batch, norm='mean_std_norm', penalty=0.1, level='step'):
  if level == 'step':
    return x.output(episode_term(x, norm, penalty))
  trajs = [b for b in range(x.num_rows) if x.length[b] > 0]
  score = {b: x.ret[b] - penalty * sum(x.inv(b, t) for t in range(x.length[b])) for b in trajs}
  adv = _norm_sets(trajs, lambda b: x.group[b], score.get, norm, singleton='keep')
  return x.output({(b, t): adv[b] for (b, t) in x.rows})


def rloo(x: Batch):
  trajs = [b for b in range(x.num_rows) if x.length[b] > 0]
  out = {}
  for (b, t) in x.rows:
    others = [x.ret[j] for j in trajs if j != b and x.group[j] == x.group[b]]
    out[(b, t)] = x.ret[b] - (sum(others) / len(others) if others else 0.0)
  return x.output(out)


def _step_returns(x, gamma, penalty):
  return {(b, t): x.discounted(b, t, gamma) - penalty * x.inv(b, t) for (b, t) in x.rows}


def gigpo(x: Batch, norm='mean_std_norm', gamma=0.95, penalty=0.1, step_weight=1.0):
  ep = episode_term(x, norm, penalty)
  g = _step_returns(x, gamma, penalty)
  step = _norm_sets(x.rows, lambda r: (x.group[r[0]], x.state[r[0]][r[1]]), g.get, norm)
  return x.output({r: ep[r] + step_weight * step[r] for r in x.rows})


def g2po(x: Batch, norm='mean_std_norm', gamma=0.95, penalty=0.1, success_reward=10.0,
         episode_weight=1.0, node_weight=1.0, edge_weight=1.0, td_form='code',
         td_gamma=0.95):
  node = lambda b, t: (x.group[b], x.state[b][t])
  visits = collections.defaultdict(list)
  for (b, t) in x.rows:
    visits[node(b, t)].append(gamma ** (x.length[b] - t) * x.ret[b])
  value = {k: sum(v) / len(v) for k, v in visits.items()}
  v_plus = {}
  for (b, t) in x.rows:
    if t == x.length[b] - 1:
      v_plus[(b, t)] = success_reward if x.success(b, success_reward) else 0.0
    else:
      v_plus[(b, t)] = value[node(b, t + 1)]
  a_nc = _norm_sets(x.rows, lambda r: node(*r), lambda r: v_plus[r] - penalty * x.inv(*r), norm)
  if td_form == 'code':
    delta = {r: v_plus[r] - value[node(*r)] for r in x.rows}
  else:
    delta = {r: x.reward[r[0]][r[1]] + td_gamma * v_plus[r] - value[node(*r)] for r in x.rows}
  a_ec = _norm_sets(x.rows, lambda r: x.group[r[0]], delta.get, norm)
  ep = episode_term(x, norm, penalty)
  return x.output({r: episode_weight * ep[r] + node_weight * a_nc[r] + edge_weight * a_ec[r]
                   for r in x.rows})


def _distances(x: Batch, success_reward):
  """{(group, key or SUCCESS): hops to SUCCESS} by BFS per group."""
  parents = collections.defaultdict(set)   # reversed edges
  nodes = collections.defaultdict(set)
  for (b, t) in x.rows:
    g = x.group[b]
    src = x.state[b][t]
    if t == x.length[b] - 1 and x.success(b, success_reward):
      dst = SUCCESS
    else:
      dst = x.next_state[b][t]
    parents[(g, dst)].add(src)
    nodes[g].update([src] if dst == SUCCESS else [src, dst])
  dist = {}
  for g, members in nodes.items():
    d = {SUCCESS: 0}
    queue = collections.deque([SUCCESS])
    while queue:
      cur = queue.popleft()
      for p in parents.get((g, cur), ()):
        if p not in d:
          d[p] = d[cur] + 1
          queue.append(p)
    solved = any(x.success(b, success_reward) for b in range(x.num_rows)
                 if x.group[b] == g and x.length[b] > 0)
    finite = [d[k] for k in members if k in d]
    far = max(finite) + 1 if finite else 1
    for k in members:
      dist[(g, k)] = (d.get(k, far)) if solved else 1
    dist[(g, SUCCESS)] = 0
  return dist


def graphgpo(x: Batch, norm='mean_std_norm', penalty=0.1, success_reward=10.0, omega=0.1,
             distance_form='next'):
  dist = _distances(x, success_reward)
  g = {}
  for (b, t) in x.rows:
    grp = x.group[b]
    last_success = t == x.length[b] - 1 and x.success(b, success_reward)
    d_next = 0 if last_success else dist[(grp, x.next_state[b][t])]
    hops = d_next if distance_form == 'next' else d_next - dist[(grp, x.state[b][t])] + 1
    g[(b, t)] = success_reward * omega ** hops - penalty * x.inv(b, t)
  a_g = _norm_sets(x.rows, lambda r: (x.group[r[0]], x.state[r[0]][r[1]]), g.get, norm)
  ep = episode_term(x, norm, penalty)
  return x.output({r: a_g[r] + ep[r] for r in x.rows})


def hgpo(x: Batch, norm='mean_std_norm', gamma=0.95, penalty=0.1, history=2, alpha=1.0,
         episode_weight=0.0):
  g = _step_returns(x, gamma, penalty)
  total = collections.defaultdict(float)
  weight = collections.defaultdict(float)
  for k in range(1, history + 2):
    def key(r, k=k):
      b, t = r
      return (x.group[b], tuple(x.state[b][t - k + 1:t + 1]))
    # Level k only for steps t >= k - 1: a window never reaches before the start.
    adv = _norm_sets([r for r in x.rows if r[1] >= k - 1], key, g.get, norm, ddof=0)
    for r, a in adv.items():
      if a != 0:
        total[r] += (k + 1) ** alpha * a
        weight[r] += (k + 1) ** alpha
  ep = episode_term(x, norm, penalty)
  return x.output({r: (total[r] / weight[r] if weight[r] else 0.0) + episode_weight * ep[r]
                   for r in x.rows})


def gagpo(x: Batch, norm='mean_std_norm', gamma=0.95, lam=0.95):
  returns = collections.defaultdict(list)
  for (b, t) in x.rows:
    returns[(x.group[b], x.state[b][t])].append(x.discounted(b, t, gamma))
  value = {k: sum(v) / len(v) for k, v in returns.items()}
  v = lambda b, t: value[(x.group[b], x.state[b][t])]
  adv = {}
  for b in range(x.num_rows):
    running = 0.0
    for t in reversed(range(x.length[b])):
      v_next = v(b, t + 1) if t + 1 < x.length[b] else 0.0
      delta = x.reward[b][t] + gamma * v_next - v(b, t)
      running = delta + gamma * lam * running
      adv[(b, t)] = running
  return x.output(_norm_sets(x.rows, lambda r: x.group[r[0]], adv.get, norm, singleton='keep'))


REFERENCES = {'grpo': grpo, 'rloo': rloo, 'gigpo': gigpo, 'g2po': g2po,
              'graphgpo': graphgpo, 'hgpo': hgpo, 'gagpo': gagpo}


def estimate(name, *, group, state, next_state, reward, valid, mask, **options):
  """Same call as g2po_jax.credit.estimate; returns a [B][T] list of floats."""
  return REFERENCES[name](Batch(group, state, next_state, reward, valid, mask), **options)
