"""Procedural sparse-reward graph MDPs, episode sampling and exact success.

Device code: pure jnp, one task per call (vmap over tasks and seeds).

A task has `num_states` states laid out by role (ids are mere labels to a
tabular policy, so the layout is not shuffled):

  0 .. D-1          the path; state 0 is the start. Each path state has one
                    correct action, leading to the next path state.
  D                 the goal (absorbing; reaching it ends the episode with
                    reward `SUCCESS_REWARD`).
  D+1 .. D+traps    trap states: every action stays in the trap region, so
                    the goal is unreachable from there.
  the rest          wander states: their correct action loops back to the
                    start; the others lead to a random off-path state.

A wrong action, on the path or in a wander state, leads to a uniformly random
off-path state: a trap with probability about `trap_fraction` (the share of
traps among off-path states). With probability `invalid_fraction` a wrong
action (in any state but the goal) is instead an invalid self-loop (`valid`
False). Episodes end at the goal or after `horizon` steps (truncation counts
as failure).

The only way onto path state i > 0 is the correct action of path state i-1,
and the only way back from a wander state is the start. So the shortest route
to the goal is exactly the D correct path steps, and every slip costs at least
a return to the start (or, in a trap, the episode).
"""

import dataclasses
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

Array = chex.Array

START = 0
SUCCESS_REWARD = 10.0


@dataclasses.dataclass(frozen=True)
class MDPConfig:
  """Knobs of the task family; validated on construction.

  Attributes:
    num_states: S, states per task (path + goal + off-path states).
    num_actions: A, actions per state.
    depth: D, correct steps from the start to the goal (the shortest route).
    horizon: H, maximum steps per episode.
    trap_fraction: share of off-path states that are traps.
    invalid_fraction: probability that a wrong action is an invalid self-loop.
    start_bias: initial logit of the correct action over the others (the
      pretrained prior); 0 is a uniform policy.
  """
  num_states: int = 24
  num_actions: int = 4
  depth: int = 4
  horizon: int = 12
  trap_fraction: float = 0.3
  invalid_fraction: float = 0.2
  start_bias: float = 1.0

  def __post_init__(self):
    for name in ('num_states', 'num_actions', 'depth', 'horizon'):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'{name} must be a positive int; got {value!r}.')
    if self.num_states < self.depth + 2:
      raise ValueError(f'num_states must be >= depth + 2 = {self.depth + 2} (path, goal and '
                       f'at least one off-path state); got {self.num_states}.')
    if self.num_actions < 2:
      raise ValueError(f'num_actions must be >= 2; got {self.num_actions}.')
    if self.horizon < self.depth:
      raise ValueError(f'horizon must be >= depth = {self.depth} or the goal is '
                       f'unreachable; got {self.horizon}.')
    for name in ('trap_fraction', 'invalid_fraction'):
      value = getattr(self, name)
      if (not isinstance(value, (int, float)) or isinstance(value, bool)
          or not 0 <= value <= 1):
        raise ValueError(f'{name} must be a number in [0, 1]; got {value!r}.')
    if (not isinstance(self.start_bias, (int, float)) or isinstance(self.start_bias, bool)
        or not math.isfinite(self.start_bias)):
      raise ValueError(f'start_bias must be a finite number; got {self.start_bias!r}.')

  @property
  def goal(self) -> int:
    return self.depth

  @property
  def num_traps(self) -> int:
    return round(self.trap_fraction * (self.num_states - self.depth - 1))


class MDP(NamedTuple):
  """One task (leading axes added by vmap).

  Attributes:
    next_state: [S, A] int32 successor of each (state, action).
    valid: [S, A] bool, False for invalid actions (self-loops).
    correct: [S] int32 the correct action (path: forward; wander: back to the
      start); -1 in traps and at the goal.
  """
  next_state: Array
  valid: Array
  correct: Array


def generate(rng: chex.PRNGKey, config: MDPConfig) -> MDP:
  """Samples one task of the family (see the module docstring).

  Args:
    rng: key.
    config: the family's knobs (static).
  Returns:
    `MDP` with [S, A] arrays.
  """
  s, a, d = config.num_states, config.num_actions, config.depth
  first_wander = d + 1 + config.num_traps
  # One draw for every choice: each random call site adds a copy of the
  # PRNG's rounds to the compiled program, and compilation dominates a run.
  u = jax.random.uniform(rng, (4, s, a))
  pick = lambda x, low, high: low + jnp.minimum((x * (high - low)).astype(jnp.int32),
                                               high - low - 1)
  state = jnp.arange(s)[:, None]                                   # [S, 1]
  action = jnp.arange(a)[None, :]                                  # [1, A]
  is_path, is_goal = state < d, state == d
  is_trap = (state > d) & (state < first_wander)
  correct = pick(u[0, :, :1], 0, a)                                # [S, 1]
  is_correct = (action == correct) & ~is_trap & ~is_goal
  off_path = pick(u[1], d + 1, s)                                  # [S, A]
  # An empty trap region is never indexed; the max keeps the range non-empty.
  in_trap = pick(u[2], d + 1, max(first_wander, d + 2))
  forward = jnp.where(is_path, state + 1, START)                   # path: on; wander: back
  nxt = jnp.where(is_trap, in_trap, jnp.where(is_correct, forward, off_path))
  invalid = (u[3] < config.invalid_fraction) & ~is_correct & ~is_goal
  nxt = jnp.where(invalid | is_goal, state, nxt)
  correct = jnp.where(is_trap | is_goal, -1, correct)[:, 0]
  return MDP(next_state=nxt.astype(jnp.int32), valid=~invalid, correct=correct.astype(jnp.int32))


def initial_logits(mdp: MDP, start_bias: float) -> Array:
  """[S, A] float32 logits: `start_bias` on the correct action, 0 elsewhere."""
  num_actions = mdp.next_state.shape[-1]
  return start_bias * jax.nn.one_hot(mdp.correct, num_actions, dtype=jnp.float32)


def success_probability(mdp: MDP, logits: Array, *, goal: int, horizon: int) -> Array:
  """Exact probability of reaching the goal from the start within `horizon`.

  Dynamic programming over steps left: p_0 = [s == goal],
  p_{k+1}(s) = sum_a pi(a|s) p_k(next(s, a)) off the goal, 1 at the goal.
  Works for any MDP; `family_success_probability` is the faster form for
  tasks drawn by `generate`.

  Args:
    mdp: one task, arrays [S, A].
    logits: [S, A] policy logits.
    goal: static goal state.
    horizon: static number of steps.
  Returns:
    [] float32 success probability.
  """
  chex.assert_equal_shape([mdp.next_state, logits])
  pi = jax.nn.softmax(logits, axis=-1)
  at_goal = jnp.arange(logits.shape[0]) == goal
  step = lambda _, p: jnp.where(at_goal, 1.0, (pi * p[mdp.next_state]).sum(-1))
  return jax.lax.fori_loop(0, horizon, step, at_goal.astype(pi.dtype))[START]


def family_success_probability(mdp: MDP, logits: Array, config: MDPConfig) -> Array:
  """`success_probability` of a task drawn by `generate(_, config)`.

  Traps never reach the goal, so their value is 0 at every step: the DP runs
  over the other states only (all transitions into traps read one constant 0
  slot). The DP is most of a shoot-out's run time, and traps are up to half
  of the states.

  Args:
    mdp: one task of the family, arrays [S, A].
    logits: [S, A] policy logits.
    config: the family (static).
  Returns:
    [] float32 success probability, equal to `success_probability`'s.
  """
  chex.assert_equal_shape([mdp.next_state, logits])
  s, d = config.num_states, config.depth
  live = np.r_[0:d + 1, d + 1 + config.num_traps:s]             # static: path, goal, wander
  slot = np.full(s, live.size, np.int32)                        # traps -> the 0 slot
  slot[live] = np.arange(live.size)
  nxt = jnp.asarray(slot)[mdp.next_state[live]]                 # [L, A]
  pi = jax.nn.softmax(logits[live], axis=-1)
  at_goal = jnp.asarray(live == d)                              # goal = depth, slot d

  def step(_, p):
    q = jnp.where(at_goal, 1.0, (pi * p[nxt]).sum(-1))
    return jnp.append(q, 0.0)

  p0 = jnp.append(at_goal.astype(pi.dtype), 0.0)
  return jax.lax.fori_loop(0, config.horizon, step, p0)[START]


class Episodes(NamedTuple):
  """A batch of episodes, padded to the horizon. Shapes [E, H].

  Attributes:
    state: [E, H] int32 state each action was taken in.
    action: [E, H] int32.
    next_state: [E, H] int32 state reached.
    reward: [E, H] float32, `SUCCESS_REWARD` on the step reaching the goal.
    valid: [E, H] bool, the action was valid.
    mask: [E, H] bool real steps (a prefix per row).
  """
  state: Array
  action: Array
  next_state: Array
  reward: Array
  valid: Array
  mask: Array


def sample_episodes(rng: chex.PRNGKey, mdp: MDP, logits: Array, *, num_episodes: int,
                    goal: int, horizon: int) -> Episodes:
  """Rolls out `num_episodes` independent episodes of one task from the start.

  Args:
    rng: key.
    mdp: one task, arrays [S, A].
    logits: [S, A] policy logits.
    num_episodes: static E.
    goal: static goal state.
    horizon: static H.
  Returns:
    `Episodes` with [E, H] arrays; steps after the goal are padding.
  """
  uniform = jax.random.uniform(rng, (horizon, num_episodes))
  return rollout(uniform, mdp, logits, goal=goal)


def rollout(uniform: Array, mdp: MDP, logits: Array, *, goal: int) -> Episodes:
  """`sample_episodes` driven by given uniforms (one per episode and step).

  Actions are drawn by inverting the policy's CDF with one uniform per step:
  the same distribution as `jax.random.categorical`, for a fraction of its
  random bits, and the caller can draw every task's uniforms in one call.

  Args:
    uniform: [H, E] float in [0, 1).
    mdp: one task, arrays [S, A].
    logits: [S, A] policy logits.
    goal: static goal state.
  Returns:
    `Episodes` with [E, H] arrays; steps after the goal are padding.
  """
  chex.assert_rank(uniform, 2)
  chex.assert_equal_shape([mdp.next_state, logits])
  num_actions = logits.shape[-1]
  cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)         # [S, A]
  next_state, valid = jnp.asarray(mdp.next_state), jnp.asarray(mdp.valid)   # numpy in is fine

  def step(carry, u):
    state, done = carry
    # First action whose CDF reaches u; the clip absorbs a last CDF entry
    # that rounds below 1.
    action = jnp.minimum((cdf[state] < u[:, None]).sum(-1), num_actions - 1).astype(jnp.int32)
    nxt = next_state[state, action]
    reached = ~done & (nxt == goal)
    out = (state, action, nxt, jnp.where(reached, SUCCESS_REWARD, 0.0),
           valid[state, action], ~done)
    return (nxt, done | reached), out

  num_episodes = uniform.shape[1]
  init = (jnp.full(num_episodes, START, jnp.int32), jnp.zeros(num_episodes, bool))
  _, out = jax.lax.scan(step, init, uniform)
  return Episodes(*(x.T for x in out))
