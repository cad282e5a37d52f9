"""The batched text-environment protocol. Host only: never imports jax.

An environment is a batch of independent task instances. The rollout engine
resets the batch with one task seed per instance (repeating a seed
`group_size` times gives a group of attempts at the same task) and steps it
with one action string per instance. Each instance answers with a `TimeStep`.

Determinism contract: an instance's texts and state keys are a pure function
of (environment config, task seed, action history). No global RNG, no salted
`hash()`, so copies of a task in different processes stay identical.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np

from g2po_jax.graph import hashing

# Train and evaluation tasks come from disjoint seed ranges, so evaluation is
# always on tasks never trained on.
_SPLIT_OFFSET = {'train': 0, 'eval': 1_000_000_000}
_SPLIT_SIZE = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class TimeStep:
  """What one instance reports after a reset or a step.

  Attributes:
    observation: the feedback text of the last action (the intro at reset).
    task: the task description, constant over an episode.
    admissible: the actions admissible now, sorted, no duplicates.
    reward: the environment's own reward for the last action (1.0 on the step
      that solves a household task; the purchase score on a shop's buy step).
      Trainers scale it (e.g. by `success_reward`).
    done: the episode ended (won, or an irreversible terminal action). Step
      limits are the trainer's business, not the environment's.
    won: the task was solved on this step.
    valid: the action was admissible (True at reset). An invalid action
      still counts as a step and gets the environment's no-effect reply.
    state_key: the text that identifies the state for graph credit (spec
      section 12): the current observation plus the admissible actions; an
      action with no effect keeps the previous key.
    true_state_key: where `state_key` carries noise (the `*-noisy` worlds),
      the noise-free key of the same state; None where `state_key` is
      already the true state. Used only to score state matching (purity,
      recall), never by a trainer's credit.
    key: `graph.text_key(state_key)`, the state's 64-bit key, computed when
      the TimeStep is built (inside `step`/`reset`), so trainers group
      integers and keep no state text.
    true_key: `graph.text_key` of `true_state_key`, or `key` where that is
      None.
  """
  observation: str
  task: str
  admissible: tuple[str, ...]
  reward: float
  done: bool
  won: bool
  valid: bool
  state_key: str
  true_state_key: str | None = None
  key: int = dataclasses.field(init=False, repr=False)
  true_key: int = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    # Frozen: set the derived keys through object.__setattr__. Pickling keeps
    # them (unpickling does not call __init__), so they are computed once.
    key = hashing.text_key(self.state_key)
    object.__setattr__(self, 'key', key)
    object.__setattr__(self, 'true_key', key if self.true_state_key is None
                       else hashing.text_key(self.true_state_key))


def split_seeds(split: str, count: int, start: int = 0) -> np.ndarray:
  """Task seeds `start .. start+count-1` of a split, as int64.

  Args:
    split: 'train' or 'eval'; the two ranges never overlap.
    count: number of seeds.
    start: index of the first seed within the split.
  Returns:
    [count] int64 seeds.
  """
  if split not in _SPLIT_OFFSET:
    raise ValueError(f"split must be 'train' or 'eval'; got {split!r}.")
  if count < 0 or start < 0 or start + count > _SPLIT_SIZE:
    raise ValueError(f'seed indices must lie in [0, {_SPLIT_SIZE}); got '
                     f'start={start}, count={count}.')
  return _SPLIT_OFFSET[split] + np.arange(start, start + count, dtype=np.int64)


def seed_split(seed: int) -> str:
  """The split ('train' or 'eval') a task seed belongs to."""
  for name, offset in _SPLIT_OFFSET.items():
    if offset <= seed < offset + _SPLIT_SIZE:
      return name
  raise ValueError(f'task seed {seed} lies in no split.')


class BatchEnv(abc.ABC):
  """A batch of task instances stepped together (host side).

  Subclasses set `name` and `max_steps` (the published episode limit for the
  environment, which configs may override), and `NORMALIZERS` where their
  state keys carry noise.
  """

  name: str = ''
  max_steps: int = 50
  # Regex rules that map this environment's state keys to a canonical form
  # for `graph.matching='normalized'` (see `g2po_jax.graph.matching.Rule`).
  NORMALIZERS: tuple[tuple[str, str], ...] = ()

  @abc.abstractmethod
  def reset(self, seeds: Sequence[int]) -> list[TimeStep]:
    """Starts one instance per seed; the batch size becomes len(seeds)."""

  @abc.abstractmethod
  def step(self, actions: Sequence[str | None]) -> list[TimeStep | None]:
    """Steps every instance whose action is not None.

    Args:
      actions: one entry per instance of the last reset; None leaves the
        instance untouched (finished or inactive) and returns None for it.
    Returns:
      One TimeStep per instance (None where the action was None).
    """

  @abc.abstractmethod
  def oracle_actions(self) -> list[str | None]:
    """The next action of an optimal plan from each instance's current state.

    None for instances that are done.
    """

  def oracle_plans(self) -> list[tuple[str, ...] | None]:
    """The rest of an optimal plan from each instance's current state, next
    action first (None for instances that are done).

    Environments whose oracle looks one step ahead give that step alone.
    """
    return [None if a is None else (a,) for a in self.oracle_actions()]

  @abc.abstractmethod
  def vocabulary(self) -> list[str]:
    """Every word the environment can write (observations, tasks, actions).

    A word-level tokenizer built from it covers all texts of the environment.
    """

  def task_type(self, index: int) -> str:
    """The kind of task instance `index` holds (for per-type metrics)."""
    del index
    return self.name

  def close(self) -> None:
    """Releases worker processes or other resources (idempotent)."""

  def __enter__(self) -> BatchEnv:
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def split_actions(actions: Sequence[str | None], done: Sequence[bool],
                  admissible: Sequence[Sequence[str]],
                  normalize: Callable[[str], str]) -> tuple[list[tuple[int, str]], list[int]]:
  """Checks one `step` call's actions and splits them for an engine.

  Args:
    actions: one entry per instance of the last reset; None skips one.
    done: [B] whether each instance has finished.
    admissible: each instance's admissible actions, in normalized form.
    normalize: how the environment reads an action.
  Returns:
    ((instance, normalized action) pairs that are admissible, in order;
    the instances whose action is not, which get the no-effect reply).
  Raises:
    ValueError: a wrong number of actions, a non-string action, or an
      action for a finished instance.
  """
  if len(actions) != len(done):
    raise ValueError(f'actions must have one entry per instance of the last '
                     f'reset ({len(done)}); got {len(actions)}.')
  sent, rejected = [], []
  for i, action in enumerate(actions):
    if action is None:
      continue
    if not isinstance(action, str):
      raise ValueError(f'actions[{i}] must be a str or None; got {action!r}.')
    if done[i]:
      raise ValueError(f'instance {i} is done; pass None for it.')
    action = normalize(action)
    if action in admissible[i]:
      sent.append((i, action))
    else:
      rejected.append(i)
  return sent, rejected


_WORD = re.compile(r"\w+|[^\w\s]")


def normalize_action(action: str) -> str:
  """How every environment reads an action: lower case, single spaces."""
  return ' '.join(action.lower().split())


def split_words(text: str) -> list[str]:
  """Splits text into the units of `vocabulary()`: word runs and punctuation.

  `go to cabinet 3.` -> ['go', 'to', 'cabinet', '3', '.']. Case is kept.
  """
  return _WORD.findall(text)
