"""Prompt protocols: what the agent reads at each step, and how its reply
becomes the action sent to the environment. Host only: never imports jax.

  line          The CPU demo's: the plain `tokenizers.format_prompt` text (no
                chat template); the action is the response's first line;
                sampling stops at eos or at any token holding a newline.
  think_action  The papers' recipe (verl-agent's prompts, in our words): one
                user message per step, rendered with the tokenizer's own chat
                template (and an optional system prompt), asking the model to
                reason inside <think> </think> and then give exactly one
                admissible action inside <action> </action>. Sampling stops
                at eos or right after the stop string '</action>'.

think_action's format rule, so that the format-error metric counts the
responses without a well-formed action block and nothing else:

  * Well-formed: the response holds '<action>' exactly once and '</action>'
    exactly once, the opening first, with non-blank text between them. Tags
    are lower case, as the prompt writes them and as the stop string matches.
  * The action is the text between the tags with every whitespace run
    (newlines included) replaced by one space, stripped. Its case is kept:
    whether it is admissible is the environment's business (an invalid
    action, not a format error).
  * Everything outside the block is ignored: text after '</action>' (the
    token that completes the stop string may carry more characters, e.g.
    '>\\n'), and the reasoning. A missing or unclosed <think> is not a format
    error: reasoning is asked for, not enforced (verl-agent also rejects a
    reply without <think>; here the one metric measures the one thing the
    environment needs).
  * Format errors: no tags; an opening or a closing tag alone (e.g. a reply
    cut by max_new_tokens); empty or blank content; two or more blocks
    (repeated or nested, also when the second one sits inside <think>); the
    closing tag first; upper- or mixed-case tags.

On a format error `Parsed.action` is None; send the environment
`Parsed.env_action` (''), which every environment answers as an inadmissible
no-op (valid=False), so the estimators' invalid penalty applies.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
import dataclasses
from typing import NamedTuple

from g2po_jax import envs
from g2po_jax import tokenizers

PROTOCOLS = ('line', 'think_action')
OPEN_TAG, CLOSE_TAG = '<action>', '</action>'
# How think_action shows an earlier step whose reply was a format error.
_NO_ACTION = f'(none: the reply had no well-formed {OPEN_TAG} block)'


class Parsed(NamedTuple):
  """What a response means to the environment."""
  action: str | None   # None when the response breaks the protocol's format
  format_error: bool

  @property
  def env_action(self) -> str:
    """The text to send the environment: the action, or '' (inadmissible)."""
    return '' if self.action is None else self.action


class Protocol(abc.ABC):
  """A prompt layout, the reply's format, and how sampling stops.

  Attributes:
    name: one of PROTOCOLS.
    stop_strings: strings that end a response right after they appear (on
      top of eos).
    stop_at_newline: every token holding a newline ends a response
      (`Tokenizer.stop_ids`); otherwise only eos does.
  """
  name: str
  stop_strings: tuple[str, ...]
  stop_at_newline: bool

  @abc.abstractmethod
  def prompt(self, tokenizer: tokenizers.Tokenizer, *, task: str,
             history: Sequence[tuple[str, str]], observation: str, admissible: Sequence[str],
             step: int, max_history: int) -> str:
    """The prompt text of one step, ready for `tokenizer.encode`.

    Args:
      tokenizer: renders the chat template (think_action).
      task: the task description.
      history: the (observation, action) pairs of the earlier steps of the
        episode, oldest first (all of them, or at least the last max_history);
        the action as sent to the environment (`Parsed.env_action`: '' after
        a format error, which think_action shows as such).
      observation: the current observation.
      admissible: the actions admissible now.
      step: steps taken so far in the episode (0 at the first prompt; at
        least len(history)).
      max_history: how many of the most recent pairs to show (>= 0).
    Raises:
      ValueError: bad max_history or step, or (think_action) a tokenizer
        without a chat template.
    """

  @abc.abstractmethod
  def parse(self, response: str) -> Parsed:
    """The action of a decoded response (special tokens dropped)."""

  @abc.abstractmethod
  def render(self, action: str, reasoning: str) -> str:
    """The response a demonstration writes: `parse(render(a, r)).action == a`
    for every single-line action a without tags.

    Raises:
      ValueError: a blank action, or one `parse` could not read back.
    """


class LineProtocol(Protocol):
  """One action per line after the plain `format_prompt` text."""
  name = 'line'
  stop_strings = ()
  stop_at_newline = True

  def prompt(self, tokenizer, *, task, history, observation, admissible, step, max_history):
    del tokenizer
    _check_steps(history, step, max_history)
    return tokenizers.format_prompt(task, history, observation, admissible,
                                    max_history=max_history)

  def parse(self, response: str) -> Parsed:
    return Parsed(response.split('\n', 1)[0].strip(), False)

  def render(self, action: str, reasoning: str) -> str:
    del reasoning                  # a line response is the action alone
    _check_action(action)
    return action.strip()


@dataclasses.dataclass(frozen=True)
class _Wording:
  """How think_action describes one kind of environment."""
  intro: str            # who the agent is and where
  task: str             # introduces the task text
  observation: str      # names the current observation
  goal: str = ''        # what the reasoning should weigh, after 'situation'
  search_hint: bool = False  # explain the search[...] placeholder


_HOUSEHOLD = _Wording(
    intro='You are an expert agent carrying out a task in a text-based household simulator.',
    task='Your task is to: {task}',
    observation='your current observation is: {observation}')
_SHOP = _Wording(
    intro='You are an expert shopping agent working in a text-based web shop.',
    task='Your task is to: {task}',
    observation='the current page (its parts separated by [SEP]) is: {observation}',
    goal=' and about which admissible action brings you closest to buying the right product',
    search_hint=True)


def _twx(game: str) -> _Wording:
  return _Wording(intro=f'You are an expert player of {game}, a text adventure game.',
                  task='Your goal: {task}', observation='you see: {observation}')


# Every environment of `envs.NAMES`.
WORDINGS = {
    'household-small': _HOUSEHOLD,
    'household': _HOUSEHOLD,
    'twx-cooking': _twx('CookingWorld'),
    'twx-twc': _twx('TextWorld Commonsense'),
    'twx-coin': _twx('Coin Collector'),
    'shop-small': _SHOP,
    'shop': _SHOP,
    'household-noisy': _HOUSEHOLD,
    'shop-noisy': _SHOP,
    'alfworld': _HOUSEHOLD,      # the real engine behind the same household
}


def _check_steps(history: Sequence, step: int, max_history: int) -> None:
  if max_history < 0:
    raise ValueError(f'max_history must be >= 0; got {max_history}.')
  if step < len(history):
    raise ValueError(f'step ({step}) counts the steps taken so far, so it cannot be below '
                     f'len(history) ({len(history)}).')


class ThinkActionProtocol(Protocol):
  """Reason in <think> </think>, answer in <action> </action> (see the module doc)."""
  name = 'think_action'
  stop_strings = (CLOSE_TAG,)
  stop_at_newline = False

  def __init__(self, env_name: str, system_prompt: str | None = None):
    self.env_name = env_name
    self.system_prompt = system_prompt
    self._wording = WORDINGS[env_name]

  def message(self, *, task: str, history: Sequence[tuple[str, str]], observation: str,
              admissible: Sequence[str], step: int, max_history: int) -> str:
    """The user message of one step (arguments as for `prompt`)."""
    _check_steps(history, step, max_history)
    w = self._wording
    lines = [w.intro + ' ' + w.task.format(task=task.strip())]
    shown = list(history[-max_history:]) if max_history else []
    if shown:
      lines.append(f'Before this step you took {step} step(s). Your last {len(shown)} '
                   f'observation(s), each with the action you then took:')
      first = step - len(shown) + 1
      for k, (obs, action) in enumerate(shown, first):
        lines += [f'Observation {k}: {obs.strip()}',
                  f'Action {k}: {action.strip() or _NO_ACTION}']
    lines.append(f'You are now at step {step + 1} and '
                 + w.observation.format(observation=observation.strip()))
    lines.append('The admissible actions now, one per line:')
    lines += [a.strip() for a in admissible]
    if w.search_hint and any(a.strip() == 'search[...]' for a in admissible):
      lines.append('(search[...] stands for a search: write your own query inside the '
                   'brackets.)')
    lines += ['',
              f'Now it is your turn to act. First reason step by step about the current '
              f'situation{w.goal}; this reasoning MUST be enclosed in <think> </think> tags. '
              f'Then choose exactly one admissible action for this step and write it, as '
              f'listed, inside {OPEN_TAG} {CLOSE_TAG} tags.']
    return '\n'.join(lines)

  def prompt(self, tokenizer, *, task, history, observation, admissible, step, max_history):
    messages = [{'role': 'system', 'content': self.system_prompt}] if self.system_prompt else []
    messages.append({'role': 'user', 'content': self.message(
        task=task, history=history, observation=observation, admissible=admissible, step=step,
        max_history=max_history)})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)

  def parse(self, response: str) -> Parsed:
    if response.count(OPEN_TAG) != 1 or response.count(CLOSE_TAG) != 1:
      return Parsed(None, True)
    start, end = response.index(OPEN_TAG) + len(OPEN_TAG), response.index(CLOSE_TAG)
    action = ' '.join(response[start:end].split()) if end >= start else ''
    return Parsed(action, False) if action else Parsed(None, True)

  def render(self, action: str, reasoning: str) -> str:
    _check_action(action)
    if OPEN_TAG in reasoning or CLOSE_TAG in reasoning:
      raise ValueError(f'reasoning must not hold {OPEN_TAG} tags; got {reasoning!r}.')
    return f'<think>{reasoning.strip()}</think>\n{OPEN_TAG}{action.strip()}{CLOSE_TAG}'


def _check_action(action: str) -> None:
  if not action.strip() or '\n' in action.strip() or OPEN_TAG in action or CLOSE_TAG in action:
    raise ValueError(f'a demonstrated action must be one non-blank line without '
                     f'{OPEN_TAG} tags; got {action!r}.')


def make_protocol(name: str, env_name: str, *, system_prompt: str | None = None) -> Protocol:
  """The protocol `name` (see PROTOCOLS) for environment `env_name`.

  Args:
    name: 'line' or 'think_action'.
    env_name: an `envs.NAMES` entry; picks think_action's wording
      (household, shop or TextWorldExpress).
    system_prompt: think_action only: a system message before each step's
      user message. None or '' leaves the chat template's default (Qwen2.5's
      "You are Qwen, created by Alibaba Cloud. ...").
  Raises:
    ValueError: an unknown name or environment, or a system prompt for line.
  """
  if name not in PROTOCOLS:
    raise ValueError(f'protocol must be one of {", ".join(PROTOCOLS)}; got {name!r}.')
  known = envs.NAMES if name == 'line' else tuple(WORDINGS)
  if env_name not in known:
    raise ValueError(f'env_name must be one of {", ".join(known)}; got {env_name!r}.')
  if name == 'line':
    if system_prompt:
      raise ValueError('system_prompt applies to the think_action protocol only (line '
                       'prompts have no chat template); got one for line.')
    return LineProtocol()
  return ThinkActionProtocol(env_name, system_prompt or None)
