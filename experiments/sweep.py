r"""Runs a config's sweep: one training process per member (big_vision style).

  python -m experiments.sweep --config=configs/household_small_g2po.py \
      --workdir=runs/compare --set=model.init_from=runs/sft/policy --parallel=2
  python -m experiments.sweep --config=configs/household_small_g2po.py:runlocal \
      --workdir=/tmp/sweep --dry_run                      # list members and states
  python -m experiments.sweep --config=configs/household_small_g2po.py \
      --workdir=runs/compare --launch=print > jobs.sh     # one command per line
  python -m experiments.sweep --config=configs/qwen2_5_1_5b_alfworld_like.py \
      --workdir=/mnt/runs/compare --launch=tpu --tpus=v5e-a,v5e-b --zone=us-west4-a \
      --repo=g2po_jax                                     # scripts in ROOT/launch/
  python -m experiments.sweep --config=configs/qwen2_5_1_5b_alfworld_like.py \
      --workdir=/shared/runs/compare --launch=slurm --nodes=2 --gpus_per_node=8 \
      --time=24:00:00                                     # then: sbatch ROOT/launch/slurm.sh
  python -m experiments.report runs/compare               # plots and tables

A config file declares its sweeps next to `get_config`: a function
`sweep(add)` (or `sweep(add, arg)`, with the text after ':' in --config) calls
`add({'credit.name': 'g2po', 'seed': 0})` once per member, with dotted config
keys. `--sweep=NAME` picks another such function (e.g. an ablation sweep).
Member NAME is its overrides joined (`credit.name=g2po,seed=0`); it runs

  python -m experiments.train --config=FILE[:ARG] --config.KEY=VALUE ... \
      --workdir=ROOT/NAME

with every `--set=KEY=VALUE` added (the same for all members, e.g. the warm
start). Before anything starts, every member's config is resolved by the same
flag parser the trainer uses and validated, so a typo stops the sweep at once.

A member is *finished* when its workdir holds the checkpoint of its last
iteration (`num_iterations`), or the DONE file this tool writes after such a
run: an exit code 0 alone does not count, because the trainer also exits 0
after a SIGTERM (checkpoint saved, run incomplete). Finished members are
skipped; any other member is (re)started, and the trainer resumes its workdir
from the newest checkpoint. A workdir that was started with other settings
(config, overrides, --set) is an error: use a new --workdir.

Local runs write ROOT/NAME/sweep_member.json (what was launched) and append
the process's output to ROOT/NAME/log.txt. A failing member does not stop
the others; the sweep exits non-zero at the end and lists the failures.
Ctrl-C (or SIGTERM) asks running members to checkpoint and stop.

`--launch=tpu` and `--launch=slurm` run nothing: they write scripts that run
each unfinished member on several hosts with `--distributed` (see
experiments/launch.py) into ROOT/launch/, write each member's
sweep_member.json, and print how to start them. ROOT must then be an absolute
path that every host sees (NFS, Filestore, a bucket mounted with gcsfuse).
"""

import collections
import dataclasses
import datetime
import importlib.util
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import zlib

from absl import app
from absl import flags
import ml_collections as mlc

from experiments import launch
from g2po_jax.train import config as config_lib

_CONFIG = flags.DEFINE_string(
    'config', None, 'Config file with a sweep function, optionally with ":ARG" for get_config.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Sweep root: member NAME runs in ROOT/NAME.')
_SWEEP = flags.DEFINE_string('sweep', 'sweep', 'Name of the sweep function in the config file.')
_SET = flags.DEFINE_multi_string(
    'set', [], 'KEY=VALUE config override given to every member (repeatable), e.g. '
    '--set=model.init_from=runs/sft/policy.')
_ONLY = flags.DEFINE_string('only', None, 'Only members whose name matches this regex.')
_PARALLEL = flags.DEFINE_integer(
    'parallel', 1, 'Members running at the same time (local; with --launch=slurm, when '
    'given: array tasks running at once).')
_LAUNCH = flags.DEFINE_enum(
    'launch', 'local', ['local', 'print', 'tpu', 'slurm'],
    'local: run the members here. print: print one single-process command per unfinished '
    'member and run nothing. tpu, slurm: write multi-host launch scripts into ROOT/launch/ '
    'and run nothing.')
_TPU = flags.DEFINE_string('tpu', None, '--launch=tpu: the Cloud TPU slice (TPU VM name).')
_TPUS = flags.DEFINE_list(
    'tpus', None, '--launch=tpu: several slices of one shape instead of --tpu; the members '
    'are queued on them in turn.')
_ZONE = flags.DEFINE_string('zone', None, '--launch=tpu: the zone of the slices.')
_NODES = flags.DEFINE_integer('nodes', None, '--launch=slurm: nodes per member.', lower_bound=1)
_GPUS_PER_NODE = flags.DEFINE_integer(
    'gpus_per_node', None, '--launch=slurm: GPUs per node; one process per GPU.', lower_bound=1)
_PARTITION = flags.DEFINE_string('partition', None, '--launch=slurm: sbatch --partition.')
_TIME = flags.DEFINE_string(
    'time', None, '--launch=slurm: time limit per array task (sbatch --time, e.g. 24:00:00); '
    'a member still running then checkpoints and is requeued.')
_GRACE = flags.DEFINE_integer(
    'grace', 600, '--launch=slurm: seconds before the time limit at which the member is told '
    'to checkpoint (at least one iteration and a save).', lower_bound=1)
_REPO = flags.DEFINE_string(
    'repo', None, '--launch=tpu/slurm: this repository on the hosts (default: this '
    'checkout\'s path). On TPU workers a relative path starts at the home directory.')
_PYTHON = flags.DEFINE_string(
    'python', '.venv/bin/python', '--launch=tpu/slurm: the interpreter on the hosts, absolute '
    'or relative to --repo.')
_DRY_RUN = flags.DEFINE_bool('dry_run', False, 'List members, states and commands; run nothing.')
_STATUS_EVERY = flags.DEFINE_integer(
    'status_every', 300, 'Seconds between progress summaries of running members (0: never).')
flags.mark_flags_as_required(['config', 'workdir'])

DONE = launch.DONE
MEMBER_FILE = 'sweep_member.json'
LOG_FILE = launch.LOG_FILE
_NAME_LIMIT = 120                     # longer names are cut and get a hash suffix
_UNSAFE = re.compile(r'[^A-Za-z0-9._=,+-]')
_TRAIN_PROGRESS = re.compile(r'iter (\d+)/(\d+)')
_EXCEPTION = re.compile(
    r'^([\w.]+(Error|Exception|Interrupt)|(config|workdir|checkpoint) error)\b')


class SweepError(ValueError):
  """The sweep cannot run as asked; the message says what to change."""


@dataclasses.dataclass
class Member:
  """One training run of the sweep."""
  name: str
  overrides: dict[str, object]      # the sweep function's dotted overrides
  workdir: str
  train_args: list[str]             # the trainer's flags (no interpreter, no module)
  num_iterations: int

  def command(self, python: str = 'python') -> list[str]:
    return [python, '-m', 'experiments.train', *self.train_args]


# ----------------------------------------------------------------------------
# Members
# ----------------------------------------------------------------------------


def load_sweep(config: str, sweep: str = 'sweep') -> list[dict[str, object]]:
  """The overrides the config file's sweep function adds, in order.

  Args:
    config: 'path/to/config.py' or 'path/to/config.py:ARG'.
    sweep: name of the function (`sweep(add)` or `sweep(add, arg)`).
  Raises:
    SweepError: if the file has no such function or it adds nothing.
  """
  path, _, arg = config.partition(':')
  if not os.path.isfile(path):
    raise SweepError(f'config file {path!r} does not exist.')
  spec = importlib.util.spec_from_file_location('_sweep_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  fn = getattr(module, sweep, None)
  if not callable(fn):
    found = [n for n in dir(module) if n.startswith('sweep') and callable(getattr(module, n))]
    raise SweepError(f'{path} has no function {sweep}(add); its sweep functions: '
                     f'{", ".join(found) or "none"}.')
  members = []

  def add(overrides: dict[str, object] | None = None, **kwargs) -> None:
    trial = {**(overrides or {}), **kwargs}
    if not trial:
      raise SweepError(f'{path}:{sweep} called add() without overrides.')
    members.append(trial)

  if 'arg' in inspect.signature(fn).parameters:
    fn(add, arg=arg or None)
  else:
    fn(add)
  if not members:
    raise SweepError(f'{path}:{sweep} added no members.')
  return members


def member_name(overrides: dict[str, object]) -> str:
  """Filesystem-safe name from the overrides, e.g. 'credit.name=g2po,seed=0'."""
  text = ','.join(f'{k}={_flag_value(v)}' for k, v in overrides.items())
  name = _UNSAFE.sub('_', text)
  if len(name) > _NAME_LIMIT:
    # crc32, not hash(): a str's hash() changes from process to process.
    name = f'{name[:_NAME_LIMIT - 9]}-{zlib.crc32(text.encode()):08x}'
  return name


def _flag_value(value: object) -> str:
  """The command-line text that `config_lib.load` parses back to `value`."""
  if value is None:
    raise SweepError('an override of None cannot be passed on the command line; leave the '
                     'key out to keep the config default.')
  if isinstance(value, float):
    return repr(value)             # shortest text that reads back exactly
  if isinstance(value, (bool, int, str)):
    return str(value)
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  raise SweepError(f'override value {value!r} has type {type(value).__name__}; use a bool, '
                   'int, float, str or tuple.')


def _split_set(items: list[str]) -> dict[str, str]:
  out = {}
  for item in items:
    key, eq, value = item.partition('=')
    if not eq or not key:
      raise SweepError(f'--set wants KEY=VALUE (e.g. model.init_from=runs/sft/policy); '
                       f'got {item!r}.')
    if key in out:
      raise SweepError(f'--set gives {key} twice.')
    out[key] = value
  return out


def train_args(config: str, overrides: dict[str, object], fixed: dict[str, str],
               workdir: str) -> list[str]:
  """The trainer's flags for one member."""
  return ([f'--config={config}']
          + [f'--config.{k}={v}' for k, v in fixed.items()]
          + [f'--config.{k}={_flag_value(v)}' for k, v in overrides.items()]
          + [f'--workdir={workdir}'])


def resolve(args: list[str]) -> mlc.ConfigDict:
  """The config the trainer builds from its flags (same loader, same checks).

  Raises:
    SweepError: naming an unknown key or a value of the wrong type.
  """
  rest, overrides = config_lib.split_overrides(args)
  spec = next(a.split('=', 1)[1] for a in rest if a.startswith('--config='))
  try:
    return config_lib.load(spec, overrides)
  except config_lib.ConfigError as e:
    raise SweepError(str(e)) from None


def _get(config: mlc.ConfigDict, key: str):
  for part in key.split('.'):
    config = config[part]
  return config


def make_members(config: str, root: str, sweep: str = 'sweep', fixed: dict[str, str] | None = None,
                 only: str | None = None, num_processes: int | None = None) -> list[Member]:
  """Resolves and validates every member of the sweep.

  Args:
    config: the config file, optionally with ':ARG'.
    root: the sweep root; member NAME gets ROOT/NAME.
    sweep: the sweep function's name.
    fixed: KEY=VALUE overrides (as text) for every member.
    only: a regex; members whose name does not match are left out.
    num_processes: if known, the processes each member will run as, with one
      device each: the batch sizes are checked against them as the trainer
      checks them at start-up.
  Raises:
    SweepError: listing every member whose config is invalid, duplicate names,
      or a key both in a member and in `fixed`.
  """
  fixed = fixed or {}
  members = []
  errors = collections.defaultdict(list)     # message -> member names
  names = collections.Counter()
  for overrides in load_sweep(config, sweep):
    both = sorted(set(overrides) & set(fixed))
    if both:
      raise SweepError(f'--set overrides {", ".join(both)}, which the sweep also varies.')
    name = member_name(overrides)
    names[name] += 1
    if only and not re.search(only, name):
      continue
    workdir = os.path.join(root, name)
    args = train_args(config, overrides, fixed, workdir)
    try:
      c = resolve(args)
      for key, value in overrides.items():
        got = _get(c, key)
        if got != (tuple(value) if isinstance(value, list) else value):
          raise SweepError(f'{key}={value!r} reads back as {got!r} from the command line.')
      config_lib.validate(c)
      if num_processes:
        config_lib.validate_for_mesh(c, batch_shards=num_processes, num_processes=num_processes)
    except (SweepError, config_lib.ConfigError) as e:
      errors[str(e)].append(name)
      continue
    members.append(Member(name, dict(overrides), workdir, args, int(c.num_iterations)))
  twice = [n for n, k in names.items() if k > 1]
  if twice:
    raise SweepError(f'the sweep adds these members more than once: {", ".join(twice)}.')
  if errors:
    raise SweepError('invalid members:\n' + '\n'.join(
        f'  {message}\n    ({len(names)}: {", ".join(names[:4])}'
        f'{", ..." if len(names) > 4 else ""})' for message, names in errors.items()))
  return members


# ----------------------------------------------------------------------------
# State of a member's workdir
# ----------------------------------------------------------------------------


def is_finished(member: Member) -> bool:
  """The member reached its last iteration (DONE file or final checkpoint)."""
  return launch.workdir_finished(member.workdir, member.num_iterations)


def describe(member: Member) -> str:
  """'finished', 'new', or 'partial (checkpoint at iteration k of N)'."""
  if is_finished(member):
    return 'finished'
  done = launch.checkpoint_iterations(member.workdir)
  if done:
    return f'partial (checkpoint at iteration {done[-1]} of {member.num_iterations})'
  return 'started, no checkpoint' if os.path.isdir(member.workdir) else 'new'


def _resume_point(member: Member) -> str:
  done = launch.checkpoint_iterations(member.workdir)
  return f'resuming after iteration {done[-1]}' if done else 'from scratch'


def _record(member: Member, config: str, fixed: dict[str, str]) -> dict:
  path, _, arg = config.partition(':')
  return {'name': member.name, 'overrides': member.overrides, 'fixed': fixed,
          'config_file': os.path.realpath(path), 'config_arg': arg,
          'num_iterations': member.num_iterations}


def write_record(member: Member, config: str, fixed: dict[str, str], **extra: str) -> None:
  """Writes ROOT/NAME/sweep_member.json: what was launched, and how (`extra`)."""
  os.makedirs(member.workdir, exist_ok=True)
  with open(os.path.join(member.workdir, MEMBER_FILE), 'w') as f:
    json.dump({**_record(member, config, fixed), **extra}, f, indent=2)


def check_workdirs(members: list[Member], config: str, fixed: dict[str, str]) -> None:
  """Raises SweepError if a member's workdir was started with other settings."""
  clashes = []
  for m in members:
    path = os.path.join(m.workdir, MEMBER_FILE)
    if not os.path.isfile(path):
      continue
    with open(path) as f:
      before = json.load(f)
    now = _record(m, config, fixed)
    # num_iterations may grow: the trainer then continues from its checkpoint.
    diff = [k for k in now if k != 'num_iterations' and before.get(k) != now[k]]
    if diff:
      clashes.append(f'{m.workdir}: ' + '; '.join(
          f'{k} was {before.get(k)!r}, now {now[k]!r}' for k in diff))
  if clashes:
    raise SweepError('these workdirs were started with other settings; use a new --workdir '
                     'or remove them:\n  ' + '\n  '.join(clashes))


# ----------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------


def _clock(seconds: float) -> str:
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


def _say(text: str) -> None:
  print(f'[{datetime.datetime.now():%H:%M:%S}] {text}', flush=True)


def _tail(path: str, lines: int = 3) -> list[str]:
  try:
    with open(path, 'rb') as f:
      f.seek(max(os.path.getsize(path) - 16384, 0))
      text = f.read().decode(errors='replace')
  except OSError:
    return []
  return [line for line in text.splitlines() if line.strip()][-lines:]


def _error_line(path: str) -> str:
  """The newest line of the log that names an exception, else its last line."""
  lines = _tail(path, 60)
  # JAX appends advice after the exception line, so the last line is often not it.
  named = [line for line in lines if _EXCEPTION.match(line.strip())]
  return (named or lines or [''])[-1].strip()


def _progress(path: str) -> str:
  """'iter k/N' of the member's newest progress line, or ''."""
  for line in reversed(_tail(path, 40)):
    match = _TRAIN_PROGRESS.search(line)
    if match:
      return match.group(0)
  return ''


class _Interrupted(Exception):
  """SIGTERM to the sweep, handled like Ctrl-C."""


def _on_sigterm(signum, frame):
  del signum, frame
  raise _Interrupted()


@dataclasses.dataclass
class Outcome:
  member: Member
  returncode: int | None          # None: never started
  seconds: float
  finished: bool                  # reached the final checkpoint
  stopped: bool = False           # the sweep was interrupted


def run_local(members: list[Member], config: str, fixed: dict[str, str], parallel: int,
              status_every: float = 300.0, python: str = sys.executable,
              poll_seconds: float = 0.5) -> list[Outcome]:
  """Runs the members as subprocesses, at most `parallel` at a time.

  Args:
    members: the members to run (finished ones should be filtered out).
    config, fixed: recorded in each member's sweep_member.json.
    parallel: the most processes at once.
    status_every: seconds between summaries of the running members (0: never).
    python: the interpreter of the members.
    poll_seconds: how often to check on the processes.
  Returns:
    One Outcome per member started, in order of completion.
  """
  if parallel < 1:
    raise SweepError(f'--parallel must be at least 1; got {parallel}.')
  queue = collections.deque(members)
  running: dict[str, tuple[Member, subprocess.Popen, float, object]] = {}
  outcomes: list[Outcome] = []
  total = len(members)
  t_start = last_status = time.monotonic()

  def counts() -> str:
    ok = sum(o.finished for o in outcomes)
    return (f'{ok} finished, {len(outcomes) - ok} failed, {len(running)} running, '
            f'{len(queue)} queued')

  def start(m: Member) -> None:
    write_record(m, config, fixed, command=shlex.join(m.command()))
    log = open(os.path.join(m.workdir, LOG_FILE), 'a')
    log.write(f'\n===== {datetime.datetime.now():%Y-%m-%d %H:%M:%S} '
              f'{shlex.join(m.command(python))}\n')
    log.flush()
    # A session of its own: Ctrl-C reaches the sweep only, which then asks
    # each member to checkpoint (SIGTERM) instead of killing it mid-save.
    proc = subprocess.Popen(m.command(python), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    running[m.name] = (m, proc, time.monotonic(), log)
    _say(f'start  {m.name} (pid {proc.pid}, {_resume_point(m)}) '
         f'[{total - len(queue)}/{total}] log: {os.path.join(m.workdir, LOG_FILE)}')

  def reap(name: str, returncode: int, stopped: bool = False) -> None:
    m, _, t0, log = running.pop(name)
    log.close()
    seconds = time.monotonic() - t0
    finished = returncode == 0 and m.num_iterations in launch.checkpoint_iterations(m.workdir)
    if finished:
      with open(os.path.join(m.workdir, DONE), 'w') as f:
        json.dump({'num_iterations': m.num_iterations, 'seconds': round(seconds, 1),
                   'finished': f'{datetime.datetime.now():%Y-%m-%d %H:%M:%S}'}, f)
    outcomes.append(Outcome(m, returncode, seconds, finished, stopped))
    if finished:
      what, detail = 'done  ', 'exit 0'
    elif stopped:
      what, detail = 'STOP  ', f'stopped by the sweep (exit {returncode}, {_resume_point(m)})'
    elif returncode == 0:
      what, detail = 'STOP  ', 'exit 0 without the final checkpoint (preempted?)'
    else:
      what, detail = 'FAIL  ', f'exit {returncode}'
    _say(f'{what}{m.name}: {detail} after {_clock(seconds)} | {counts()}')

  previous = signal.signal(signal.SIGTERM, _on_sigterm)
  try:
    while queue or running:
      while queue and len(running) < parallel:
        start(queue.popleft())
      time.sleep(poll_seconds)
      for name, (_, proc, _, _) in list(running.items()):
        if proc.poll() is not None:
          reap(name, proc.returncode)
      if status_every and running and time.monotonic() - last_status >= status_every:
        last_status = time.monotonic()
        states = ', '.join(
            f'{m.name} {_progress(os.path.join(m.workdir, LOG_FILE)) or "starting"}'
            for m, *_ in running.values())
        _say(f'status after {_clock(last_status - t_start)}: {counts()} | {states}')
  except (KeyboardInterrupt, _Interrupted):
    _say(f'interrupted: asking {len(running)} running member(s) to checkpoint and stop '
         '(Ctrl-C again kills them)')
    for _, proc, _, _ in running.values():
      proc.terminate()
    try:
      for name, (_, proc, _, _) in list(running.items()):
        reap(name, proc.wait(), stopped=True)
    except (KeyboardInterrupt, _Interrupted):
      for name, (_, proc, _, _) in list(running.items()):
        proc.kill()
        reap(name, proc.wait(), stopped=True)
    outcomes.extend(Outcome(m, None, 0.0, False, True) for m in queue)
    queue.clear()
  finally:
    signal.signal(signal.SIGTERM, previous)
  return outcomes


# ----------------------------------------------------------------------------
# Multi-host launch scripts
# ----------------------------------------------------------------------------

_MODE_FLAGS = {'tpu': ('tpu', 'tpus', 'zone'),
               'slurm': ('nodes', 'gpus_per_node', 'partition', 'time', 'grace'),
               'tpu or slurm': ('repo', 'python')}
# The scripts name ROOT in places no shell parses (#SBATCH lines, comments).
_SHARED_ROOT = re.compile(r'/[A-Za-z0-9_./=,+@-]*')
_TPU_NAME = re.compile(r'[a-z]([-a-z0-9]*[a-z0-9])?')
_SLURM_WORD = re.compile(r'[A-Za-z0-9_.,-]+')
_SLURM_TIME = re.compile(r'\d+(-\d+)?(:\d+){0,2}')
_THIS_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_launch_flags(mode: str, root: str) -> None:
  """Raises SweepError for flags that --launch=MODE lacks or does not use."""
  for owner, names in _MODE_FLAGS.items():
    for name in names:
      if flags.FLAGS[name].present and mode not in owner.split(' or '):
        raise SweepError(f'--{name} is for --launch={owner}; got --launch={mode}.')
  if mode not in ('tpu', 'slurm'):
    return
  if not _SHARED_ROOT.fullmatch(root):
    raise SweepError(f'--launch={mode} wants --workdir as an absolute path that every host sees '
                     f'at the same place (NFS, Filestore, a gcsfuse mount), made of letters, '
                     f'digits and ./=,+@-_; got {root!r}.')
  if mode == 'tpu':
    if bool(_TPU.value) == bool(_TPUS.value):
      raise SweepError('--launch=tpu wants the slice: --tpu=NAME, or --tpus=NAME1,NAME2,... '
                       'to queue the members on several slices.')
    for name in [_TPU.value] if _TPU.value else _TPUS.value:
      if not _TPU_NAME.fullmatch(name):
        raise SweepError(f'--tpu/--tpus want TPU VM names (lower-case letters, digits and -); '
                         f'got {name!r}.')
    if not _ZONE.value or not _TPU_NAME.fullmatch(_ZONE.value):
      raise SweepError(f'--launch=tpu wants --zone=ZONE (e.g. us-central2-b); got '
                       f'{_ZONE.value!r}.')
  else:
    if not _NODES.value or not _GPUS_PER_NODE.value:
      raise SweepError('--launch=slurm wants --nodes=N and --gpus_per_node=G (each member runs '
                       'as N x G processes, one per GPU).')
    for flag, pattern, example in ((_PARTITION, _SLURM_WORD, 'gpu'),
                                   (_TIME, _SLURM_TIME, '24:00:00 or 2-00:00:00')):
      if flag.value is not None and not pattern.fullmatch(flag.value):
        raise SweepError(f'--{flag.name} wants a value like {example}; got {flag.value!r}.')


def write_launch(mode: str, todo: list[Member], root: str, config: str,
                 fixed: dict[str, str]) -> list[str]:
  """Writes the --launch=tpu|slurm scripts and each member's record; returns the paths."""
  repo = _REPO.value or _THIS_REPO
  if mode == 'tpu':
    slices = [_TPU.value] if _TPU.value else _TPUS.value
    scripts = launch.tpu_scripts(todo, root, slices, _ZONE.value, repo, _PYTHON.value)
  else:
    scripts = {launch.SLURM_SCRIPT: launch.slurm_script(
        todo, root, _NODES.value, _GPUS_PER_NODE.value, os.path.abspath(repo), _PYTHON.value,
        _PARTITION.value, _TIME.value, _GRACE.value,
        _PARALLEL.value if _PARALLEL.present else None)}
  paths = launch.write_scripts(root, scripts)
  for m in todo:
    script = (os.path.join(root, launch.LAUNCH_DIR, launch.tpu_member_path(m.name))
              if mode == 'tpu' else paths[0])
    write_record(m, config, fixed, launch=script,
                 command=shlex.join(m.command(_PYTHON.value) + ['--distributed']))
  return paths


def _instructions(mode: str, paths: list[str], todo: list[Member], skipped: int,
                  root: str) -> str:
  """What to run next, printed after the scripts are written."""
  left_out = f'; {skipped} finished member(s) left out' if skipped else ''
  if mode == 'tpu':
    queues = [p for p in paths if os.path.basename(p).startswith('tpu_')]
    lines = [f'wrote {len(todo)} member script(s) ({root}/{launch.LAUNCH_DIR}/tpu/NAME.sh) and '
             f'{len(queues)} queue(s){left_out}.',
             'Start each queue where it can keep running for the whole sweep (it drives its '
             'slice over ssh and relaunches preempted members):',
             *(f'  nohup bash {q} > {q[:-3]}.log 2>&1 &' for q in queues)]
  else:
    n = _NODES.value * _GPUS_PER_NODE.value
    lines = [f'wrote {paths[0]}: {len(todo)} member(s) as one array job, each on '
             f'{_NODES.value} node(s) x {_GPUS_PER_NODE.value} GPU(s) ({n} processes){left_out}.',
             'Submit it from a login node (squeue --me lists its tasks):',
             f'  sbatch {paths[0]}']
  lines += [f'Member NAME appends its output to {root}/NAME/log.txt. Watch the sweep in one '
            'TensorBoard, where the workdir is mounted:',
            f'  tensorboard --logdir {root}']
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  mode = _LAUNCH.value
  multi_host = mode in ('tpu', 'slurm')
  root = os.path.normpath(_WORKDIR.value) if multi_host else _WORKDIR.value
  _check_launch_flags(mode, root)
  fixed = _split_set(_SET.value)
  processes = _NODES.value * _GPUS_PER_NODE.value if mode == 'slurm' else None
  members = make_members(_CONFIG.value, root, _SWEEP.value, fixed, _ONLY.value, processes)
  todo = [m for m in members if not is_finished(m)]
  if _DRY_RUN.value:
    for m in members:
      print(f'{m.name}: {describe(m)}\n  {shlex.join(m.command())}')
    print(f'{len(members)} members, {len(members) - len(todo)} finished, {len(todo)} to run.')
    return
  if mode == 'print':
    for m in todo:
      print(shlex.join(m.command()))
    print(f'# {len(todo)} of {len(members)} members to run; {len(members) - len(todo)} '
          'finished (not printed).', file=sys.stderr)
    return
  check_workdirs(todo, _CONFIG.value, fixed)
  if multi_host:
    if not todo:
      print(f'all {len(members)} members are finished; nothing to launch.')
      return
    paths = write_launch(mode, todo, root, _CONFIG.value, fixed)
    print(_instructions(mode, paths, todo, len(members) - len(todo), root))
    return
  for m in members:
    if m not in todo:
      _say(f'skip   {m.name}: finished')
  _say(f'{len(todo)} of {len(members)} members to run, {_PARALLEL.value} at a time, '
       f'in {_WORKDIR.value}')
  t0 = time.monotonic()
  outcomes = run_local(todo, _CONFIG.value, fixed, _PARALLEL.value, _STATUS_EVERY.value)
  bad = [o for o in outcomes if not o.finished]
  _say(f'sweep over after {_clock(time.monotonic() - t0)}: '
       f'{len(outcomes) - len(bad)} of {len(todo)} members finished.')
  if bad:
    lines = []
    for o in bad:
      why = ('not started' if o.returncode is None else 'stopped' if o.stopped else
             'no final checkpoint' if o.returncode == 0 else f'exit {o.returncode}')
      log = os.path.join(o.member.workdir, LOG_FILE)
      error = _error_line(log) if o.returncode and not o.stopped else ''
      lines.append(f'  {o.member.name}: {why}' + (f'\n    {log}: {error}' if error else ''))
    sys.exit(f'{len(bad)} member(s) did not finish (rerun the same command to resume):\n'
             + '\n'.join(lines))


def run():
  """app.run, with one-line messages for an invalid sweep."""
  try:
    app.run(main)
  except SweepError as e:
    sys.exit(f'sweep error: {e}')


if __name__ == '__main__':
  run()
