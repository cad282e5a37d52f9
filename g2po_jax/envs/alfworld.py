"""ALFWorld on its real engine (TextWorld's PDDL player and Fast Downward).

Host only: never imports jax. Needs the `alfworld` extra
(`pip install -e '.[alfworld]'`, which compiles jericho and
fast-downward-textworld).

Games. A directory in the layout of ALFWorld's official `json_2.1.1`
download, `<split>/<task folder>/<trial>/game.tw-pddl` beside
`traj_data.json`, chosen in this order: the `data_dir` argument (the
directory itself or its `json_2.1.1`), then `$ALFWORLD_DATA/json_2.1.1` (where
`alfworld-download` puts the official files, so their owner gets the official
benchmark), else games this project writes from the wheel's scene layouts
(`alfworld_games`; `python -m experiments.make_alfworld_games`): on first use
a default set (`DEFAULT_PER_TYPE` games of each of the six task types per
split) is generated into `~/.cache/g2po_jax/alfworld` (`$XDG_CACHE_HOME` is
honoured) and reused after. As ALFWorld's own loader does, games whose path
holds 'movable' or 'Sliced', of other task types, or not marked solvable are
skipped.

Tasks and splits. Training seeds (`split_seeds('train', n)`) index the games
of `train/`, evaluation seeds those of `eval_split` ('valid_unseen': unseen
scenes, ALFWorld's out-of-distribution set, by default; or 'valid_seen'). Seed
k of a split plays game order[k % G], where `order` is a fixed seeded
permutation of the split's G sorted game paths, so the first tasks mix all
task types. Python's global `random` is seeded with the task seed before every
reset (ALFWorld's wrappers draw from it).

Processes. `num_workers` worker processes (`workers.WorkerPool`) each hold
one engine per instance they serve (instance i on worker i % num_workers).
The parent keeps every instance's game, seed and admissible actions played;
when a worker dies, a fresh one replays its instances' histories and the lost
request is sent again, so a batch completes.

Reward and termination. `reward` is 1.0 on the step that wins (the engine's
`won`), else 0.0; `done` = `won` (ALFWorld has no losing state; step limits
are the trainer's business).

Actions. `admissible` is the engine's list (sorted, no duplicates). An action
is read with `base.normalize_action`; one outside the list is never sent to
the engine: "Nothing happens.", `valid=False`, state key and admissible
actions kept (the engine answers the same text and keeps its state).

State key. The observation, then the admissible actions, one per line (spec
section 12); an invalid action keeps the previous key. Look, inventory, help
and examine change the observation and so the key, though not the world.

Oracle. The engine's own planner (`PddlState.replan`, Fast Downward, an
optimal plan) from the instance's current state, made lazily and again only
after an action that left the plan.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence

import numpy as np

from g2po_jax.envs import alfworld_engine, workers
from g2po_jax.envs.base import (BatchEnv, TimeStep, normalize_action, seed_split, split_actions,
                                split_words, split_seeds)

DEFAULT_PER_TYPE = {'train': 20, 'eval': 5}
_EVAL_SPLITS = ('valid_unseen', 'valid_seen')
_OFFICIAL_SUBDIR = 'json_2.1.1'
_TASK_PREFIX = 'Your task is to: '
_NOTHING_HAPPENS = 'Nothing happens.'
_START_TIMEOUT_S = 300.0
_MAX_NUMBER = 99            # instance numbers in names ('cabinet 27')


# ---------------------------------------------------------------------------
# Games on disk.
# ---------------------------------------------------------------------------

def default_data_dir() -> str:
  """Where the generated default games are cached."""
  cache = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(cache, 'g2po_jax', 'alfworld')


def resolve_data_dir(data_dir: str | None) -> str:
  """The game directory to play (see the module docstring), made if needed."""
  if data_dir:
    official = os.path.join(data_dir, _OFFICIAL_SUBDIR)
    root = official if os.path.isdir(official) else data_dir
    if not os.path.isdir(os.path.join(root, 'train')):
      raise ValueError(f'data_dir {data_dir!r} has no train/ folder (expected '
                       'ALFWorld\'s json_2.1.1 layout).')
    return root
  official = os.path.join(os.environ.get('ALFWORLD_DATA', ''), _OFFICIAL_SUBDIR)
  if os.environ.get('ALFWORLD_DATA') and os.path.isdir(official):
    return official
  root = default_data_dir()
  if not os.path.isdir(os.path.join(root, 'train')):
    _generate_default(root)
  return root


def _generate_default(root: str) -> None:
  """Writes the default game set to `root`, atomically."""
  from g2po_jax.envs import alfworld_games
  partial = f'{root}.partial-{os.getpid()}'
  try:
    for split, per_type in DEFAULT_PER_TYPE.items():
      alfworld_games.write_games(partial, split, per_type, seed=0,
                                 num_workers=max(1, min(4, os.cpu_count() or 1)))
    try:
      os.replace(partial, root)
    except OSError:                # another process finished first
      if not os.path.isdir(os.path.join(root, 'train')):
        raise
  finally:
    shutil.rmtree(partial, ignore_errors=True)


def list_games(root: str, split_dir: str) -> list[tuple[str, str]]:
  """(game file, task type) of every playable game under root/split_dir.

  Skips what ALFWorld's own loader skips: 'movable' and 'Sliced' paths,
  other task types, missing games, games not marked solvable. Sorted.
  """
  from g2po_jax.envs.alfworld_games import TASK_TYPES
  games = []
  for folder, _, files in os.walk(os.path.join(root, split_dir)):
    if 'traj_data.json' not in files or 'game.tw-pddl' not in files:
      continue
    if 'movable' in folder or 'Sliced' in folder:
      continue
    with open(os.path.join(folder, 'traj_data.json')) as f:
      task_type = json.load(f)['task_type']
    if task_type not in TASK_TYPES:
      continue
    game_file = os.path.join(folder, 'game.tw-pddl')
    with open(game_file) as f:
      if not json.load(f).get('solvable'):
        continue
    games.append((game_file, task_type))
  return sorted(games)


# ---------------------------------------------------------------------------
# The worker side: one engine per instance slot.
# ---------------------------------------------------------------------------

class _Server:
  """A worker's engines (one per instance slot) and their oracle plans."""

  def __init__(self):
    alfworld_engine.require_alfworld()
    self._engines: list[alfworld_engine.Engine] = []
    self._plans: list[list[str] | None] = []

  def _slot(self, slot: int) -> alfworld_engine.Engine:
    while len(self._engines) <= slot:
      self._engines.append(alfworld_engine.Engine())
      self._plans.append(None)
    return self._engines[slot]

  def reset(self, requests: list[tuple[int, str, int]]) -> list[tuple]:
    out = []
    for slot, game_file, seed in requests:
      out.append(self._slot(slot).reset(game_file, seed))
      self._plans[slot] = None
    return out

  def step(self, requests: list[tuple[int, str]]) -> list[tuple]:
    out = []
    for slot, action in requests:
      plan = self._plans[slot]
      # Keep the plan while the agent follows it; replan after a detour.
      self._plans[slot] = plan[1:] if plan and plan[0] == action else None
      out.append(self._engines[slot].step(action))
    return out

  def oracle(self, slots: list[int]) -> list[str]:
    out = []
    for slot in slots:
      if not self._plans[slot]:
        self._plans[slot] = self._engines[slot].plan()
      out.append(self._plans[slot][0] if self._plans[slot] else 'look')
    return out

  def replay(self, requests: list[tuple[int, str, int, list[str]]]) -> list[None]:
    """Restores instances after a restart: reset, then their actions again."""
    for slot, game_file, seed, actions in requests:
      self.reset([(slot, game_file, seed)])
      self.step([(slot, a) for a in actions])
    return [None] * len(requests)


# ---------------------------------------------------------------------------
# The batched environment (parent process).
# ---------------------------------------------------------------------------

class AlfWorldEnv(BatchEnv):
  """A batch of ALFWorld games on the real engine (see the module docstring).

  Args:
    data_dir: games in ALFWorld's json_2.1.1 layout; None: $ALFWORLD_DATA's
      official files, else the generated default set.
    eval_split: the folder evaluation seeds play: 'valid_unseen' or
      'valid_seen'.
    num_workers: worker processes (each loads the games it plays).
  Raises:
    ValueError: bad arguments, or a split folder with no playable game.
    RuntimeError: the alfworld extra is missing, or a worker failed.
  """

  name = 'alfworld'
  max_steps = 50

  def __init__(self, data_dir: str | None = None,
               eval_split: str = 'valid_unseen', num_workers: int = 2):
    if eval_split not in _EVAL_SPLITS:
      raise ValueError(f'eval_split must be one of {_EVAL_SPLITS}; got '
                       f'{eval_split!r}.')
    if not isinstance(num_workers, int) or num_workers < 1:
      raise ValueError(f'num_workers must be a positive int; got {num_workers!r}.')
    alfworld_engine.require_alfworld()
    self.data_dir = resolve_data_dir(data_dir)
    self._split_dirs = {'train': 'train', 'eval': eval_split}
    self._games: dict[str, list[tuple[str, str]]] = {}
    self._pool = workers.WorkerPool('alfworld', _Server, (), num_workers,
                                    _START_TIMEOUT_S)
    self._instances: list[tuple[str, str, int]] = []   # game, task type, seed
    self._history: list[list[str]] = []
    self._tasks: list[str] = []
    self._admissible: list[tuple[str, ...]] = []
    self._keys: list[str] = []
    self._done: list[bool] = []
    self._vocabulary: list[str] | None = None

  def games(self, split: str) -> list[tuple[str, str]]:
    """(game file, task type) of a split, in seed order (see the docstring)."""
    if split not in self._games:
      listed = list_games(self.data_dir, self._split_dirs[split])
      if not listed:
        raise ValueError(f'no playable game under '
                         f'{os.path.join(self.data_dir, self._split_dirs[split])}.')
      order = np.random.default_rng(0).permutation(len(listed))
      self._games[split] = [listed[k] for k in order]
    return self._games[split]

  def _game(self, seed: int) -> tuple[str, str]:
    split = seed_split(seed)
    games = self.games(split)
    index = seed - int(split_seeds(split, 1)[0])
    return games[index % len(games)]

  # -- protocol -------------------------------------------------------------

  def reset(self, seeds: Sequence[int]) -> list[TimeStep]:
    seeds = [int(s) for s in seeds]
    if not seeds:
      raise ValueError('seeds must not be empty.')
    self._instances = [(*self._game(s), s) for s in seeds]
    self._history = [[] for _ in seeds]
    self._done = [False] * len(seeds)
    w = self._pool.num_workers
    replies = self._pool.call(
        'reset', [(i, (i // w, game, seed))
                  for i, (game, _, seed) in enumerate(self._instances)],
        recover=self._recover)
    self._tasks = [intro.rsplit(_TASK_PREFIX, 1)[-1].strip()
                   for intro, _ in replies]
    self._admissible = [adm for _, adm in replies]
    self._keys = [_state_key(intro, adm) for intro, adm in replies]
    return [TimeStep(observation=intro, task=task, admissible=adm, reward=0.0,
                     done=False, won=False, valid=True, state_key=key)
            for (intro, adm), task, key in zip(replies, self._tasks, self._keys)]

  def step(self, actions: Sequence[str | None]) -> list[TimeStep | None]:
    out: list[TimeStep | None] = [None] * len(actions)
    admitted, rejected = split_actions(actions, self._done, self._admissible, normalize_action)
    for i in rejected:
      out[i] = TimeStep(observation=_NOTHING_HAPPENS, task=self._tasks[i],
                        admissible=self._admissible[i], reward=0.0,
                        done=False, won=False, valid=False,
                        state_key=self._keys[i])
    w = self._pool.num_workers
    sent = [(i, (i // w, action)) for i, action in admitted]
    replies = self._pool.call('step', sent, recover=self._recover)
    for (i, (_, action)), (obs, adm, won) in zip(sent, replies):
      self._history[i].append(action)
      self._admissible[i], self._keys[i] = adm, _state_key(obs, adm)
      self._done[i] = won
      out[i] = TimeStep(observation=obs, task=self._tasks[i], admissible=adm,
                        reward=1.0 if won else 0.0, done=won, won=won,
                        valid=True, state_key=self._keys[i])
    return out

  def oracle_actions(self) -> list[str | None]:
    w = self._pool.num_workers
    live = [(i, i // w) for i, done in enumerate(self._done) if not done]
    out: list[str | None] = [None] * len(self._done)
    for (i, _), action in zip(live, self._pool.call('oracle', live,
                                                    recover=self._recover)):
      out[i] = action
    return out

  def task_type(self, index: int) -> str:
    return self._instances[index][1]

  def vocabulary(self) -> list[str]:
    if self._vocabulary is None:
      self._vocabulary = _vocabulary()
    return list(self._vocabulary)

  def close(self) -> None:
    self._pool.close()

  # -- fault tolerance ------------------------------------------------------

  def _recover(self, w: int) -> None:
    """Replays the live instances of a restarted worker `w`."""
    n = self._pool.num_workers
    requests = [(i // n, game, seed, self._history[i])
                for i, (game, _, seed) in enumerate(self._instances)
                if i % n == w and not self._done[i]]
    if requests:
      self._pool.ask(w, 'replay', (requests,))


def _state_key(observation: str, admissible: Sequence[str]) -> str:
  return '\n'.join([observation, *admissible])


def _vocabulary() -> list[str]:
  """Every word the engine can write: its grammar's text, every ALFRED type
  name (lower case, as the demangler writes them), instance numbers, and
  the task templates."""
  alfworld_engine.require_alfworld()
  from alfworld.gen import constants, goal_library
  from alfworld.info import ALFRED_TWL2_PATH
  with open(ALFRED_TWL2_PATH) as f:
    texts = [f.read()]
  texts += [name.lower() for name in constants.OBJECTS_SET | constants.RECEPTACLES]
  texts += [str(n) for n in range(_MAX_NUMBER + 1)]
  texts += [t for goal in goal_library.gdict.values() for t in goal['templates']]
  texts.append(_NOTHING_HAPPENS)
  return sorted({w for text in texts for w in split_words(text)})
