"""Tabular policy-gradient learner: one jitted program for a whole shoot-out.

`make_train(config)` returns `train(rng, lr, which) -> metrics`, a whole run
(PureJaxRL style: `lax.scan` over iterations) with estimator
`config.estimators[which]`. `which` picks a branch of a `lax.switch`, so every
estimator shares one compiled program: the sampler, the exact evaluation and
the update are compiled once, not once per estimator. `make_sweep(config)`
vmaps `train` over a flat batch of (seed, learning rate) runs under one
`jax.jit`.

Each seed draws a fixed set of `num_tasks` tasks (MDPs) with their own
tabular logits [S, A]. Every iteration samples `group_size` attempts at each
task, builds the group graph on the device from the integer state ids,
computes advantages with the chosen `g2po_jax.credit` estimator (the same
pure function the LLM trainer uses) and takes one policy-gradient step on

  loss = -mean over real steps of stop_gradient(A) * log pi(a | s).

Success is the exact probability of reaching the goal
(`mdp.family_success_probability`), averaged over the seed's tasks.
"""

import dataclasses
from collections.abc import Callable, Mapping

import chex
import jax
import jax.numpy as jnp
import optax

from g2po_jax import credit
from g2po_jax.graph import Graph
from g2po_jax.shootout import mdp as mdp_lib

Array = chex.Array

OPTIMIZERS = {'adam': optax.adam, 'sgd': optax.sgd}
# Philox instead of the default threefry: same guarantees (counter-based,
# exact under vmap), and on CPU the shoot-out program compiles about 30%
# faster. (In jax 0.10 philox cannot be lowered in a multi-device program;
# the shoot-out runs on one device.)
PRNG_IMPL = 'philox4x32'

PRESETS = {
    # Short paths, few dead ends: every estimator learns.
    'easy': mdp_lib.MDPConfig(num_states=24, num_actions=4, depth=4, horizon=12,
                              trap_fraction=0.3, invalid_fraction=0.2, start_bias=1.0),
    # A long path among many dead ends: 12 correct steps in a row out of 6
    # actions, 80% of off-path states are traps, horizon 32 (room for a few
    # detours). About 1.5% of first attempts succeed.
    'hard': mdp_lib.MDPConfig(num_states=48, num_actions=6, depth=12, horizon=32,
                              trap_fraction=0.8, invalid_fraction=0.3, start_bias=2.0),
    # Many states and actions: attempts share fewer states (about 0.8 of the
    # first batch's steps, against 0.95 in `easy` and `hard`). Sized so its
    # exact evaluation (states x actions x horizon per task and iteration)
    # keeps a shoot-out under a minute.
    'wide': mdp_lib.MDPConfig(num_states=128, num_actions=8, depth=6, horizon=16,
                              trap_fraction=0.3, invalid_fraction=0.1, start_bias=2.0),
    # For tests: tiny and quick.
    'tiny': mdp_lib.MDPConfig(num_states=8, num_actions=3, depth=3, horizon=6,
                              trap_fraction=0.5, invalid_fraction=0.2, start_bias=0.5),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A shoot-out: task family, estimators and training knobs; validated on construction.

  Attributes:
    mdp: the task family.
    estimators: names in `credit.ESTIMATORS`; `train`'s `which` indexes it.
    options: per-estimator options, {name: {option: value}} (defaults:
      `credit.estimator_options`).
    num_tasks: tasks per seed, each sampled every iteration.
    group_size: G, attempts per task and iteration (the estimator's group).
    num_iters: policy-gradient steps.
    optimizer: 'sgd' or 'adam'. Adam rescales every tabular logit's step to
      about lr, which hides how much credit each step gets.
  """
  mdp: mdp_lib.MDPConfig
  estimators: tuple[str, ...] = ('g2po',)
  options: Mapping[str, Mapping[str, object]] = dataclasses.field(default_factory=dict)
  num_tasks: int = 8
  group_size: int = 8
  num_iters: int = 100
  optimizer: str = 'sgd'

  def __post_init__(self):
    if not isinstance(self.mdp, mdp_lib.MDPConfig):
      raise ValueError(f'mdp must be an MDPConfig; got {type(self.mdp).__name__}.')
    if (isinstance(self.estimators, str) or not isinstance(self.estimators, (tuple, list))
        or not self.estimators):
      raise ValueError(f'estimators must be a non-empty tuple of names; got {self.estimators!r}.')
    if len(set(self.estimators)) != len(self.estimators):
      raise ValueError(f'estimators must not repeat; got {self.estimators!r}.')
    if not isinstance(self.options, Mapping):
      raise ValueError(f'options must be a mapping {{estimator: {{option: value}}}}; '
                       f'got {type(self.options).__name__}.')
    for name in self.options:
      if name not in self.estimators:
        raise ValueError(f'options given for {name!r}, which is not among the estimators '
                         f'{self.estimators}.')
    for name in self.estimators:
      opts = self.options.get(name, {})
      if not isinstance(opts, Mapping):
        raise ValueError(f'options[{name!r}] must be a mapping; got {type(opts).__name__}.')
      credit.check_options(name, dict(opts))
    for name, low in (('num_tasks', 1), ('group_size', 2), ('num_iters', 1)):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f'{name} must be an int >= {low}; got {value!r}.')
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'optimizer must be one of {sorted(OPTIMIZERS)}; got {self.optimizer!r}.')

  def estimator_options(self, name: str) -> dict[str, object]:
    """The options estimator `name` runs with, defaults filled in."""
    return credit.check_options(name, dict(self.options.get(name, {})))


# --- The group graph, built on the device -----------------------------------

_INT32_LIMIT = 2**31


def _sorted_window_ranks(columns: list[Array], base: int, packed: bool) -> Array:
  """Dense ranks of the prefixes (c_0), (c_0, c_1), ... of rows of columns.

  Sorting the full tuples once orders every prefix too, so one sort serves
  all levels. When the tuple fits one int32 together with the position, the
  sort is a single-operand integer sort (several times faster on CPU than a
  multi-operand sort).

  Args:
    columns: K+1 arrays [..., M] int32 in [0, base).
    base: static bound of the column values.
    packed: use the packed single-operand sort (the caller checks it fits).
  Returns:
    [..., M, K+1] int32: at level k, ids in [0, M) equal iff (c_0 .. c_k) are.
  """
  m = columns[0].shape[-1]
  depth = len(columns)
  pos = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32), columns[0].shape)
  if packed:
    key = columns[0]
    for c in columns[1:]:
      key = key * base + c
    packed_key = jnp.sort(key * m + pos, axis=-1)
    order, key = packed_key % m, packed_key // m
    sorted_cols = [key // base**(depth - 1 - k) % base for k in range(depth)]
  else:
    *sorted_cols, order = jax.lax.sort((*columns, pos), dimension=pos.ndim - 1,
                                       num_keys=depth)
  changed = jnp.zeros(order.shape[:-1] + (m - 1,), bool)
  ranks = []
  for c in sorted_cols:
    changed = changed | (c[..., 1:] != c[..., :-1])
    r = jnp.cumsum(changed, axis=-1, dtype=jnp.int32)
    ranks.append(jnp.concatenate([jnp.zeros_like(r[..., :1]), r], axis=-1))
  ranks = jnp.stack(ranks, axis=-1)                               # [..., M, K+1] sorted order
  # Back to the original order: a scatter is cheaper than a second sort.
  order = jnp.broadcast_to(order[..., None], ranks.shape)
  return jnp.put_along_axis(jnp.zeros_like(ranks), order, ranks, axis=-2, inplace=False)


def window_ids(state: Array, *, num_tasks: int, num_states: int, history: int,
               packed: bool | None = None) -> Array:
  """HGPO's context ids: level k groups steps whose last k+1 states agree.

  Windows never mix tasks. Steps t < k have no window at level k (it would
  reach before the episode start); their ids there are arbitrary and HGPO
  skips them, as with `graph.build_graph`.

  Args:
    state: [B, T] int32 state ids in [0, num_states); rows are task-major
      (B = num_tasks * G, the G attempts of task i in rows i*G .. i*G+G-1).
    num_tasks: static number of tasks.
    num_states: static states per task.
    history: K; levels 0 .. K.
    packed: force (True) or forbid (False) the packed-integer sort; by
      default it is used whenever the keys fit an int32.
  Returns:
    [K+1, B, T] int32 ids in [0, B*T).
  """
  chex.assert_rank(state, 2)
  b, t = state.shape
  if b % num_tasks:
    raise ValueError(f'B = {b} rows must split evenly into num_tasks = {num_tasks} groups.')
  base = num_states
  m = b * t // num_tasks                                  # steps per task
  fits = base ** (history + 1) * m < _INT32_LIMIT
  if packed is None:
    packed = fits
  elif packed and not fits:
    raise ValueError(f'packed=True needs num_states**(history + 1) * steps per task '
                     f'< 2**31; got {base}**{history + 1} * {m}. Pass packed=False.')
  # Lags reaching before the start read state 0: those windows are skipped.
  columns = [jnp.pad(state, ((0, 0), (lag, 0)))[:, :t].reshape(num_tasks, m)
             for lag in range(history + 1)]
  ranks = _sorted_window_ranks(columns, base, packed)                 # [n, M, K+1]
  ranks = ranks + (jnp.arange(num_tasks, dtype=jnp.int32) * m)[:, None, None]
  return jnp.moveaxis(ranks, -1, 0).reshape(history + 1, b, t)


def episode_graph(task: Array, state: Array, next_state: Array, *, num_tasks: int,
                  num_states: int, history: int | None = None) -> Graph:
  """The padded `Graph` of a batch of attempts, from integer state ids.

  Node n = task * num_states + state, so each task owns a block of
  `num_states` nodes (nodes never visited simply stay empty). Equivalent, for
  every estimator, to `graph.build_graph` on the host with group = task.

  Args:
    task: [B] int32 task of each attempt, in [0, num_tasks) (its group);
      task-major: row b belongs to task b // G.
    state: [B, T] int32 state ids in [0, num_states).
    next_state: [B, T] int32 ids of the states reached.
    num_tasks: static number of tasks.
    num_states: static states per task.
    history: HGPO's K; builds K+1 context levels when given.
  Returns:
    `Graph` with N = num_tasks * num_states node slots.
  """
  chex.assert_rank([task, state, next_state], [1, 2, 2])
  chex.assert_equal_shape([state, next_state])
  if state.shape[0] % num_tasks:
    raise ValueError(f'B = {state.shape[0]} rows must split evenly into num_tasks = '
                     f'{num_tasks} groups.')
  offset = (task * num_states)[:, None]
  context = None
  if history is not None:
    context = window_ids(state, num_tasks=num_tasks, num_states=num_states, history=history)
  return Graph(group=task, node=offset + state, next_node=offset + next_state,
               node_group=jnp.arange(num_tasks * num_states, dtype=jnp.int32) // num_states,
               context=context)


def graph_statistics(state: Array, mask: Array, *, num_tasks: int,
                     num_states: int) -> dict[str, Array]:
  """Overlap of the attempts, as in `graph.graph_stats` (nodes = states acted in).

  Args:
    state: [B, T] int32 state ids, task-major rows (see `window_ids`).
    mask: [B, T] bool real steps.
    num_tasks: static number of tasks.
    num_states: static states per task.
  Returns:
    'shared_fraction': [] share of real steps whose node (task, state) is
      visited by two or more attempts; 'visits_per_node': [] real steps per
      distinct node.
  """
  b = state.shape[0]
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], state.shape)
  visited = jnp.zeros((b, num_states), bool).at[rows, state].max(mask)   # [B, S]
  attempts = visited.reshape(num_tasks, -1, num_states).sum(1)            # [n, S]
  task = rows // (b // num_tasks)
  steps = jnp.maximum(mask.sum(), 1)
  nodes = jnp.maximum((attempts > 0).sum(), 1)
  shared = jnp.where(mask, attempts[task, state] >= 2, False).sum()
  return {'shared_fraction': shared / steps, 'visits_per_node': mask.sum() / nodes}


# --- Training ---------------------------------------------------------------


def pg_loss(logits: Array, task: Array, episodes: mdp_lib.Episodes, advantages: Array) -> Array:
  """-mean over real steps of A * log pi(a|s); A is treated as a constant.

  Args:
    logits: [num_tasks, S, A] policy logits.
    task: [B] int32 task of each attempt.
    episodes: `Episodes` with [B, T] arrays.
    advantages: [B, T] float.
  Returns:
    [] float loss.
  """
  # log_softmax over the small table, then one gather per step: cheaper than
  # gathering [B, T, A] logits, and the gradient is a single scatter-add.
  logp = jax.nn.log_softmax(logits, axis=-1)[task[:, None], episodes.state, episodes.action]
  adv = jax.lax.stop_gradient(advantages)
  steps = jnp.maximum(episodes.mask.sum(), 1)
  return -jnp.where(episodes.mask, adv * logp, 0.0).sum() / steps


def _advantage_branches(config: TrainConfig, task: Array) -> list[Callable]:
  """One `episodes -> [B, T] advantages` function per estimator."""
  m = config.mdp

  def branch(name):
    options = config.estimator_options(name)
    fn = credit.ESTIMATORS[name]

    def advantages(episodes):
      # Only HGPO reads the context levels, so only its branch sorts windows.
      graph = episode_graph(task, episodes.state, episodes.next_state,
                            num_tasks=config.num_tasks, num_states=m.num_states,
                            history=options.get('history'))
      adv = fn(episodes.reward, episodes.valid, episodes.mask, graph, **options)
      return adv.astype(jnp.float32)

    return advantages

  return [branch(name) for name in config.estimators]


def make_train(config: TrainConfig) -> Callable[[chex.PRNGKey, Array, Array], dict[str, Array]]:
  """Returns train(rng, lr, which) -> metrics, pure and jit/vmap-able.

  `which` is an int32 index into `config.estimators`; keep it un-batched
  under vmap so the switch stays a branch (a batched index would run every
  estimator).

  Metrics (I = num_iters):
    'success': [I+1] mean exact success over the seed's tasks, before each
      update and after the last one.
    'max_abs_advantage': [I] largest |A| of each iteration's batch.
    'shared_fraction', 'visits_per_node': [I] `graph_statistics` per batch.
  """
  m = config.mdp
  n, g = config.num_tasks, config.group_size
  task = jnp.repeat(jnp.arange(n, dtype=jnp.int32), g)                       # [B]
  branches = _advantage_branches(config, task)
  success = jax.vmap(lambda mdp, logits: mdp_lib.family_success_probability(mdp, logits, m))
  sample = jax.vmap(lambda u, mdp, logits: mdp_lib.rollout(u, mdp, logits, goal=m.goal))

  def train(rng, lr, which):
    rng, rng_tasks = jax.random.split(rng)
    mdps = jax.vmap(mdp_lib.generate, in_axes=(0, None))(jax.random.split(rng_tasks, n), m)
    logits = jax.vmap(mdp_lib.initial_logits, in_axes=(0, None))(mdps, m.start_bias)
    tx = OPTIMIZERS[config.optimizer](lr)

    def update(carry, rng):
      logits, opt_state = carry
      uniform = jax.random.uniform(rng, (n, m.horizon, g))                    # one draw
      episodes = sample(uniform, mdps, logits)                                # [n, G, H]
      episodes = jax.tree.map(lambda x: x.reshape(n * g, -1), episodes)       # [B, H]
      adv = jax.lax.switch(which, branches, episodes)
      grads = jax.grad(pg_loss)(logits, task, episodes, adv)
      updates, opt_state = tx.update(grads, opt_state, logits)
      metrics = {'success': success(mdps, logits).mean(),
                 'max_abs_advantage': jnp.abs(adv).max(),
                 **graph_statistics(episodes.state, episodes.mask, num_tasks=n,
                                    num_states=m.num_states)}
      return (optax.apply_updates(logits, updates), opt_state), metrics

    (logits, _), metrics = jax.lax.scan(update, (logits, tx.init(logits)),
                                        jax.random.split(rng, config.num_iters))
    final = success(mdps, logits).mean()
    return {**metrics, 'success': jnp.append(metrics['success'], final)}

  return train


def make_sweep(config: TrainConfig) -> Callable[[Array, Array, Array], dict[str, Array]]:
  """Returns a jitted sweep(which [] int32, seeds [P] int32, lrs [P] float32).

  Run p trains `config.estimators[which]` from seed `seeds[p]` with learning
  rate `lrs[p]`; metrics come back with a leading [P] axis. A seed gives the
  same tasks and the same first batch to every learning rate and every
  estimator (common random numbers), so differences between estimators are
  not differences between task draws. One compilation serves every
  estimator, seed and rate (for a fixed P).
  """
  train = make_train(config)

  def sweep(which, seeds, lrs):
    keys = jax.vmap(lambda s: jax.random.key(s, impl=PRNG_IMPL))(seeds)
    return jax.vmap(train, in_axes=(0, 0, None))(keys, lrs, which)

  return jax.jit(sweep)
