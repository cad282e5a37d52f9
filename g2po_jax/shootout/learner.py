"""Tabular policy-gradient learner: one jitted function per estimator.

`make_train(config)` returns `train(rng, lr) -> metrics`, the whole run
(PureJaxRL style: `lax.scan` over iterations). `make_sweep(config)` vmaps it
over seeds and learning rates under a single `jax.jit`, so one compilation
covers a whole learning-rate grid and every seed.

Each seed draws a fixed set of `num_tasks` tasks (MDPs) with their own
tabular logits [S, A]. Every iteration samples `group_size` attempts at each
task, builds the group graph on the device from the integer state ids,
computes advantages with the chosen `g2po_jax.credit` estimator (the same
pure function the LLM trainer uses) and takes one policy-gradient step on

  loss = -mean over real steps of stop_gradient(A) * log pi(a | s).

Success is the exact probability of reaching the goal (`mdp.success_probability`),
averaged over the seed's tasks.
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

PRESETS = {
    # Short paths, few dead ends: every estimator learns.
    'easy': mdp_lib.MDPConfig(num_states=24, num_actions=4, depth=4, horizon=12,
                              trap_fraction=0.3, invalid_fraction=0.2, start_bias=1.0),
    # Long paths in a maze of dead ends: credit for the right turn matters.
    'hard': mdp_lib.MDPConfig(num_states=48, num_actions=6, depth=10, horizon=30,
                              trap_fraction=0.6, invalid_fraction=0.2, start_bias=2.5),
    # Many states and actions: attempts rarely revisit each other's states.
    'wide': mdp_lib.MDPConfig(num_states=192, num_actions=12, depth=6, horizon=18,
                              trap_fraction=0.3, invalid_fraction=0.1, start_bias=2.5),
    # For tests: tiny and quick.
    'tiny': mdp_lib.MDPConfig(num_states=8, num_actions=3, depth=3, horizon=6,
                              trap_fraction=0.5, invalid_fraction=0.2, start_bias=0.5),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A shoot-out run; validated on construction.

  Attributes:
    mdp: the task family.
    estimator: a name in `credit.ESTIMATORS`.
    options: estimator options (defaults: `credit.estimator_options`).
    num_tasks: tasks per seed, each sampled every iteration.
    group_size: G, attempts per task and iteration (the estimator's group).
    num_iters: policy-gradient steps.
    optimizer: 'adam' or 'sgd'.
  """
  mdp: mdp_lib.MDPConfig
  estimator: str = 'g2po'
  options: Mapping[str, object] = dataclasses.field(default_factory=dict)
  num_tasks: int = 8
  group_size: int = 8
  num_iters: int = 100
  optimizer: str = 'adam'

  def __post_init__(self):
    if not isinstance(self.mdp, mdp_lib.MDPConfig):
      raise ValueError(f'mdp must be an MDPConfig; got {type(self.mdp).__name__}.')
    credit.check_options(self.estimator, dict(self.options))
    for name, low in (('num_tasks', 1), ('group_size', 2), ('num_iters', 1)):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f'{name} must be an int >= {low}; got {value!r}.')
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f'optimizer must be one of {sorted(OPTIMIZERS)}; got {self.optimizer!r}.')


# --- The group graph, built on the device -----------------------------------


def _dense_ids(*columns: Array) -> Array:
  """[n] int32 dense ids of the distinct rows of stacked [n] int columns."""
  order = jnp.lexsort(columns[::-1])                      # first column primary
  change = jnp.zeros(order.shape, bool)
  for c in columns:
    s = c[order]
    change = change.at[1:].set(change[1:] | (s[1:] != s[:-1]))
  return jnp.zeros_like(order).at[order].set(jnp.cumsum(change, dtype=order.dtype))


def _window_ids(task: Array, state: Array, size: int) -> Array:
  """[B, T] int32 ids of (task, depth, last `size` states) windows.

  Depth (steps seen so far, capped at `size`) tells the filler of steps before
  the episode start apart from real states, as in `graph.build_graph`.
  """
  b, t = state.shape
  depth = jnp.broadcast_to(jnp.minimum(jnp.arange(t) + 1, size), (b, t))
  columns = [jnp.broadcast_to(task[:, None], (b, t)), depth]
  for lag in range(size):
    columns.append(jnp.pad(state, ((0, 0), (lag, 0)))[:, :t])
  return _dense_ids(*(c.reshape(-1) for c in columns)).reshape(b, t)


def episode_graph(task: Array, state: Array, next_state: Array, *, num_tasks: int,
                  num_states: int, history: int | None = None) -> Graph:
  """The padded `Graph` of a batch of attempts, from integer state ids.

  Node n = task * num_states + state, so each task owns a block of
  `num_states` nodes (nodes never visited simply stay empty). Equivalent, for
  every estimator, to `graph.build_graph` on the host with group = task.

  Args:
    task: [B] int32 task of each attempt, in [0, num_tasks) (its group).
    state: [B, T] int32 state ids in [0, num_states).
    next_state: [B, T] int32 ids of the states reached.
    num_tasks: static number of tasks (<= B).
    num_states: static states per task.
    history: HGPO's K; builds K+1 context levels when given.
  Returns:
    `Graph` with N = num_tasks * num_states node slots.
  """
  chex.assert_equal_shape([state, next_state])
  offset = (task * num_states)[:, None]
  context = None
  if history is not None:
    context = jnp.stack([_window_ids(task, state, k + 1) for k in range(history + 1)])
  return Graph(group=task, node=offset + state, next_node=offset + next_state,
               node_group=jnp.arange(num_tasks * num_states, dtype=jnp.int32) // num_states,
               context=context)


def graph_statistics(graph: Graph, mask: Array) -> dict[str, Array]:
  """Overlap of the attempts, as in `graph.graph_stats` (nodes = states acted in).

  Args:
    graph: from `episode_graph`; `node` [B, T], N node slots.
    mask: [B, T] bool real steps.
  Returns:
    'shared_fraction': [] share of real steps whose node is visited by two or
      more attempts; 'visits_per_node': [] real steps per distinct node.
  """
  b = mask.shape[0]
  num_nodes = graph.node_group.shape[0]
  rows = jnp.broadcast_to(jnp.arange(b)[:, None], mask.shape)
  visited = jnp.zeros((b, num_nodes), bool).at[rows, graph.node].max(mask)   # [B, N]
  attempts = visited.sum(0)                                                  # [N]
  steps = jnp.maximum(mask.sum(), 1)
  nodes = jnp.maximum(visited.any(0).sum(), 1)
  shared = jnp.where(mask, attempts[graph.node] >= 2, False).sum()
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
  logp = jax.nn.log_softmax(logits[task[:, None], episodes.state], axis=-1)   # [B, T, A]
  logp = jnp.take_along_axis(logp, episodes.action[..., None], axis=-1)[..., 0]
  adv = jax.lax.stop_gradient(advantages)
  steps = jnp.maximum(episodes.mask.sum(), 1)
  return -jnp.where(episodes.mask, adv * logp, 0.0).sum() / steps


def make_train(config: TrainConfig) -> Callable[[chex.PRNGKey, Array], dict[str, Array]]:
  """Returns train(rng, lr) -> metrics, pure and jit/vmap-able.

  Metrics (I = num_iters):
    'success': [I+1] mean exact success over the seed's tasks, before each
      update and after the last one.
    'max_abs_advantage': [I] largest |A| of each iteration's batch.
    'shared_fraction', 'visits_per_node': [I] `graph_statistics` per batch.
  """
  m = config.mdp
  n, g = config.num_tasks, config.group_size
  options = credit.check_options(config.estimator, dict(config.options))
  estimator = lambda *args: credit.ESTIMATORS[config.estimator](*args, **options)
  history = options.get('history')
  task = jnp.repeat(jnp.arange(n, dtype=jnp.int32), g)                       # [B]
  success = jax.vmap(lambda mdp, logits: mdp_lib.success_probability(
      mdp, logits, goal=m.goal, horizon=m.horizon))
  sample = jax.vmap(lambda key, mdp, logits: mdp_lib.sample_episodes(
      key, mdp, logits, num_episodes=g, goal=m.goal, horizon=m.horizon))

  def train(rng, lr):
    rng, rng_tasks = jax.random.split(rng)
    mdps = jax.vmap(mdp_lib.generate, in_axes=(0, None))(jax.random.split(rng_tasks, n), m)
    logits = jax.vmap(mdp_lib.initial_logits, in_axes=(0, None))(mdps, m.start_bias)
    tx = OPTIMIZERS[config.optimizer](lr)

    def update(carry, rng):
      logits, opt_state = carry
      episodes = sample(jax.random.split(rng, n), mdps, logits)              # [N, G, H]
      episodes = jax.tree.map(lambda x: x.reshape(n * g, -1), episodes)       # [B, H]
      graph = episode_graph(task, episodes.state, episodes.next_state, num_tasks=n,
                            num_states=m.num_states, history=history)
      adv = estimator(episodes.reward, episodes.valid, episodes.mask, graph)
      grads = jax.grad(pg_loss)(logits, task, episodes, adv)
      updates, opt_state = tx.update(grads, opt_state, logits)
      metrics = {'success': success(mdps, logits).mean(),
                 'max_abs_advantage': jnp.abs(adv).max(),
                 **graph_statistics(graph, episodes.mask)}
      return (optax.apply_updates(logits, updates), opt_state), metrics

    (logits, _), metrics = jax.lax.scan(update, (logits, tx.init(logits)),
                                        jax.random.split(rng, config.num_iters))
    final = success(mdps, logits).mean()
    return {**metrics, 'success': jnp.append(metrics['success'], final)}

  return train


def make_sweep(config: TrainConfig) -> Callable[[Array, Array], dict[str, Array]]:
  """Returns a jitted sweep(seeds [R] int, lrs [L] float) -> metrics [R, L, ...].

  Seed r gives the same tasks and the same first batch to every learning rate
  and every estimator (common random numbers), so differences between
  estimators are not differences between task draws.
  """
  train = make_train(config)
  over_lrs = jax.vmap(train, in_axes=(None, 0))
  return jax.jit(jax.vmap(lambda seed, lrs: over_lrs(jax.random.key(seed), lrs),
                          in_axes=(0, None)))
