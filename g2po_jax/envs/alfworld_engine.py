"""ALFWorld's text engine, one game at a time. Host only: never imports jax.

A game is a `game.tw-pddl` JSON (`pddl_domain`, `grammar`, `pddl_problem`)
played by TextWorld's `PddlEnv`, wrapped in ALFWorld's `AlfredDemangler` and
`AlfredInfos` exactly as ALFWorld's own TextWorld environment wraps it, so
names (`cabinet 3`), texts and admissible commands are the engine's own.

Speed. TextWorld re-parses the grammar string of every admissible command's
template, and every condition of the grammar, with TatSu on every step;
that was about three quarters of a step's CPU time. Loading a game and each
reset translate its PDDL to SAS+ twice with Fast Downward's Python
translator (about 0.7 s each). `_cache_parses` memoizes both (parsed grammar
symbols are copied on every use, since derivation mutates them; the
translator's output is only read), which leaves texts and commands unchanged
and makes every reset after a game's first one cheap.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import random

_INSTALL_HINT = "pip install -e '.[alfworld]'"
_NOTHING_HAPPENS = 'Nothing happens.'


def require_alfworld() -> None:
  """Raises a one-line RuntimeError when the `alfworld` extra is missing."""
  for module in ('alfworld', 'textworld', 'fast_downward'):
    if importlib.util.find_spec(module) is None:
      raise RuntimeError(f'the alfworld environment needs the {module!r} '
                         f'package: {_INSTALL_HINT}')


_TRANSLATIONS_KEPT = 256     # games whose SAS+ translation a process keeps


@functools.cache
def _cache_parses() -> None:
  """Memoizes TextWorld's grammar parses and PDDL translations (per process)."""
  import fast_downward
  from textworld.envs.pddl import textgen
  from textworld.logic import Rule

  pddl2sas = fast_downward.pddl2sas
  translate = functools.lru_cache(maxsize=_TRANSLATIONS_KEPT)(
      lambda domain, problem, optimize: pddl2sas(domain, problem, optimize=optimize))
  fast_downward.pddl2sas = (lambda domain, problem, verbose=False, optimize=False:
                            translate(domain, problem, optimize))

  # A few hundred distinct strings per domain: templates and conditions.
  @functools.lru_cache(maxsize=None)
  def converted(text, rule_name, trace):
    model = textgen._PARSER.parse(text, rule_name=rule_name, trace=trace)
    return textgen._Converter().walk(model)

  def parse_and_convert(text, rule_name, trace=False):
    # The converted symbols get contexts assigned during derivation: each
    # caller needs its own copy.
    return copy.deepcopy(converted(text, rule_name, trace))

  textgen._parse_and_convert = parse_and_convert
  # Queries are only read (matched against the state), never changed.
  Rule.parse_conjunctive_query = functools.lru_cache(maxsize=None)(
      Rule.parse_conjunctive_query)


class Engine:
  """One ALFWorld game: load a `game.tw-pddl`, reset, step, plan.

  Python's global `random` is seeded before every reset: ALFWorld's wrappers
  draw from it, and replays must match.
  """

  def __init__(self):
    require_alfworld()
    _cache_parses()
    import textworld
    from alfworld.agents.environment.alfred_tw_env import (AlfredDemangler,
                                                           AlfredInfos)
    from textworld.envs import PddlEnv
    infos = textworld.EnvInfos(won=True, admissible_commands=True,
                               policy_commands=False, extras=['gamefile'])
    self._env = AlfredInfos(AlfredDemangler(PddlEnv(infos), shuffle=False))
    self._game_file = None
    self.admissible: tuple[str, ...] = ()

  def reset(self, game_file: str, seed: int) -> tuple[str, tuple[str, ...]]:
    """Starts `game_file`; returns (intro text, admissible commands)."""
    if game_file != self._game_file:
      self._env.load(game_file)
      self._game_file = game_file
    random.seed(seed)
    state = self._env.reset()
    self.admissible = tuple(state['admissible_commands'])
    return state['feedback'], self.admissible

  def step(self, command: str) -> tuple[str, tuple[str, ...], bool]:
    """Plays an admissible command; returns (feedback, admissible, won)."""
    state, _, _ = self._env.step(command)
    self.admissible = tuple(state['admissible_commands'])
    return state['feedback'], self.admissible, bool(state['won'])

  def plan(self) -> list[str]:
    """The engine's own planner (Fast Downward) from the current state.

    Returns the commands of an optimal plan; [] when the goal is unreachable
    or already reached.
    """
    pddl_env = self._env.unwrapped
    return pddl_env._pddl_state.replan(pddl_env._entity_infos)
