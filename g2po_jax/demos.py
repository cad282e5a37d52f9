"""Oracle demonstrations, and the reasoning a think_action demonstration writes.

Host only: never imports jax.

`play` runs a noisy oracle and records every state it acts in with the rest
of the oracle's plan from there. `reasoning` turns a state's task and plan
into a short text in household words: what the task needs, where the
object is (the oracle knows; the policy has to guess), and what the next
action achieves. Each part has several wordings, drawn at random, so a
policy learns the pattern rather than one sentence; the text never lists
the admissible actions. The protocol's `render` then writes the response
(`<think>reasoning</think>` and `<action>next action</action>` for
think_action, the action alone for line).
"""

from __future__ import annotations

from collections.abc import Sequence
import re
from typing import NamedTuple

import numpy as np

from g2po_jax import envs


class Demo(NamedTuple):
  """One state of a demonstration and the oracle's plan from it."""
  task: str
  history: tuple[tuple[str, str], ...]   # (observation, action sent) pairs, oldest first
  observation: str
  admissible: tuple[str, ...]
  step: int                              # steps taken so far in the episode
  plan: tuple[str, ...]                  # the oracle's remaining plan, next action first


def play(env: envs.BatchEnv, seeds: Sequence[int], *, noise: float, max_steps: int,
         rng: np.random.Generator, invalid: float = 0.0) -> list[Demo]:
  """Every state a noisy oracle acts in on the tasks `seeds`.

  Args:
    env: the environment (reset here).
    seeds: task seeds, one episode each.
    noise: the share of steps that take a random admissible action instead
      of the oracle's (states off the optimal path get demonstrations too).
    max_steps: the episode limit.
    rng: draws the noise.
    invalid: the share of steps that send an inadmissible action, one that
      another episode of the batch could take now (with the oracle's verb
      where one has it). A policy writes such
      actions, and an oracle that never does shows no state after `Nothing
      happens.`: its imitator then repeats the failed action to the end.
  Returns:
    The demonstrations in (step, episode) order; each is labelled with the
    oracle's plan even where the action taken was random.
  """
  if not (0.0 <= noise <= 1.0 and 0.0 <= invalid <= 1.0 - noise):
    raise ValueError(f'noise and invalid must lie in [0, 1] with noise + invalid <= 1; '
                     f'got noise {noise}, invalid {invalid}.')
  steps = env.reset(seeds)
  pairs = [[] for _ in seeds]
  out = []
  for t in range(max_steps):
    plans = env.oracle_plans()
    actions = [None] * len(seeds)
    offered = {a for s in steps if not s.done for a in s.admissible}
    for i, (s, plan) in enumerate(zip(steps, plans)):
      if s.done or plan is None:
        continue
      out.append(Demo(s.task, tuple(pairs[i]), s.observation, s.admissible, t, plan))
      u = rng.random()
      if u < noise:
        actions[i] = str(rng.choice(s.admissible))
      elif u < noise + invalid:
        # A near miss where there is one: the oracle's verb with wrong
        # arguments, as a policy's failed copy of the right action.
        wrong = sorted(offered.difference(s.admissible))
        near = [a for a in wrong if a.split(' ', 1)[0] == plan[0].split(' ', 1)[0]]
        actions[i] = str(rng.choice(near or wrong)) if wrong else plan[0]
      else:
        actions[i] = plan[0]
      pairs[i].append((s.observation, actions[i]))
    if all(a is None for a in actions):
      break
    for i, res in enumerate(env.step(actions)):
      if res is not None:
        steps[i] = res
  return out


# ----------------------------------------------------------------------------
# Reasoning
# ----------------------------------------------------------------------------

_NEED = ('The task is to {task}.', 'I need to {task}.', 'My goal: {task}.')
_WHERE = ('The {obj} should be at {place}.', 'I think the {obj} is in {place}.',
          'The {obj} is probably at {place}.')
_HOLD = ('I am holding the {obj}.', 'I already have the {obj}.', 'The {obj} is in my hand.')
_LEFT = ('{n} steps to go.', 'About {n} steps remain.', 'I need {n} more steps.')
_TAIL = re.compile(r' \d+$')


def _kind(name: str) -> str:
  """'apple 1' -> 'apple': the reasoning names types, the action instances."""
  return _TAIL.sub('', name)


def _parts(action: str) -> tuple[str, ...]:
  """A household action's verb and arguments: ('take', 'apple 1', 'countertop 2')."""
  for verb, pattern in (('go', r'go to (.+)'), ('open', r'open (.+)'),
                        ('take', r'take (.+) from (.+)'), ('move', r'move (.+) to (.+)'),
                        ('treat', r'(heat|cool|clean) (.+) with (.+)'), ('use', r'use (.+)')):
    m = re.fullmatch(pattern, action)
    if m:
      return (verb,) + m.groups()
  return ('other', action)


def _purpose(plan: Sequence[str], pick) -> str:
  """What plan[0] achieves, in words (uses plan[1] for a 'go to')."""
  now = _parts(plan[0])
  verb = now[0]
  if verb == 'go':
    after = _parts(plan[1]) if len(plan) > 1 else ('other',)
    why = {'take': f'to pick up the {_kind(after[1])}' if after[0] == 'take' else '',
           'move': f'to put the {_kind(after[1])} there' if after[0] == 'move' else '',
           'open': 'and open it', 'use': 'to switch on the light',
           'treat': f'to {after[1]} the {_kind(after[2])}' if after[0] == 'treat' else ''}
    tail = f' {why[after[0]]}' if why.get(after[0]) else ''
    return pick((f'Next I go to {now[1]}{tail}.', f'So I head to {now[1]}{tail}.',
                 f'First I go to {now[1]}{tail}.'))
  if verb == 'open':
    return pick((f'The {_kind(now[1])} is closed, so I open it.',
                 f'I open {now[1]} to see inside.', f'Opening {now[1]} shows what it holds.'))
  if verb == 'take':
    return pick((f'I pick up the {_kind(now[1])}.', f'Now I take {now[1]}.',
                 f'Taking the {_kind(now[1])} from {now[2]} is the next step.'))
  if verb == 'move':
    done = len(plan) == 1
    return pick((f'Putting it in {now[2]} {"finishes the task" if done else "is next"}.',
                 f'I place the {_kind(now[1])} in {now[2]}.',
                 f'Now the {_kind(now[1])} goes to {now[2]}.'))
  if verb == 'treat':
    return pick((f'I {now[1]} the {_kind(now[2])} with the {_kind(now[3])}.',
                 f'The {_kind(now[2])} must be {now[1]}ed first, with {now[3]}.',
                 f'Using {now[3]} will {now[1]} it.'))
  if verb == 'use':
    return pick((f'Turning on {now[1]} lets me look at it.', f'I switch on {now[1]}.',
                 f'With {now[1]} on, the task is done.'))
  return pick((f'The next step is: {plan[0]}.', f'I will do this now: {plan[0]}.',
               f'Best now: {plan[0]}.'))


def reasoning(task: str, plan: Sequence[str], rng: np.random.Generator) -> str:
  """A short reasoning for the first action of `plan`, worded at random.

    'I need to put a clean apple in fridge. The apple is probably at
     countertop 2. So I head to countertop 2 to pick up the apple. 6 steps
     to go.'

  Args:
    task: the task text.
    plan: the oracle's remaining plan, next action first (non-empty).
    rng: picks the wordings.
  Returns:
    One line of text: the need, where the object is (or that it is held),
    what the next action does, and sometimes how many steps remain.
  """
  if not plan:
    raise ValueError('plan must hold at least the next action; got an empty plan.')
  pick = lambda options: options[rng.integers(len(options))]
  lines = [pick(_NEED).format(task=task.strip().rstrip('.'))]
  parts = [_parts(a) for a in plan]
  take = next((p for p in parts if p[0] == 'take'), None)
  held = next((p for p in parts if p[0] in ('move', 'treat')), None)
  if take is not None:
    lines.append(pick(_WHERE).format(obj=_kind(take[1]), place=take[2]))
  elif held is not None:
    lines.append(pick(_HOLD).format(obj=_kind(held[1] if held[0] == 'move' else held[2])))
  lines.append(_purpose(plan, pick))
  if len(plan) > 2 and rng.random() < 0.5:
    lines.append(pick(_LEFT).format(n=len(plan)))
  return ' '.join(lines)
