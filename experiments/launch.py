r"""Launch scripts for a sweep's members on Cloud TPU slices and SLURM clusters.

`experiments/sweep.py --launch=tpu|slurm` resolves and validates the members,
then writes these scripts into ROOT/launch/:

- TPU: `tpu/<member>.sh` runs one member on every worker of a slice
  (`gcloud compute tpus tpu-vm ssh --worker=all`) with `--distributed`, and
  runs it again after a preemption until it is finished; `tpu_<slice>.sh`
  runs the members queued on one slice one after another.
- SLURM: `slurm.sh`, an `sbatch` array with one task per member; each task
  runs `srun` on N nodes, one process per GPU with `--distributed`, and is
  requeued when its processes stop early after a SIGTERM (time limit,
  preemption).

Here too lives the rule both the local sweep and the scripts use to tell a
finished member. This module needs only the standard library: the scripts
import it on the hosts to run that check, where importing JAX would cost
seconds each time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import typing

if typing.TYPE_CHECKING:
  from experiments.sweep import Member

DONE = 'DONE'
LOG_FILE = 'log.txt'
LAUNCH_DIR = 'launch'
SLURM_SCRIPT = 'slurm.sh'

# What the scripts run (in the repository, with the hosts' interpreter) to
# ask whether a member is finished: it prints one word, so that a failed ssh
# or a traceback never reads as an answer.
FINISHED_CHECK = ('import sys; from experiments import launch; '
                  'print("finished" if launch.workdir_finished(sys.argv[1], int(sys.argv[2])) '
                  'else "unfinished")')


# ----------------------------------------------------------------------------
# The finished rule
# ----------------------------------------------------------------------------


def checkpoint_iterations(workdir: str) -> list[int]:
  """Iterations (1-based) of the complete checkpoints in `workdir`, sorted.

  Orbax names a finished step directory by the step alone (the trainer's
  0-based iteration); one being written carries a temporary suffix.
  """
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) + 1 for n in os.listdir(directory)
                if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def workdir_finished(workdir: str, num_iterations: int) -> bool:
  """Whether the run in `workdir` reached iteration `num_iterations`.

  True if its DONE file (written by the local sweep) records that length, or
  if it holds the checkpoint of that iteration. An exit code 0 alone does not
  count: the trainer also exits 0 after a SIGTERM (checkpoint saved, run
  incomplete).
  """
  done = os.path.join(workdir, DONE)
  if os.path.isfile(done):
    try:
      with open(done) as f:
        if json.load(f).get('num_iterations') == num_iterations:
          return True
    except (OSError, ValueError):
      pass                        # an unreadable marker proves nothing
  return num_iterations in checkpoint_iterations(workdir)


# ----------------------------------------------------------------------------
# Script text
# ----------------------------------------------------------------------------


def _fill(template: str, **values: object) -> str:
  """`template` with every {{key}} replaced by str(values[key])."""
  return re.sub(r'\{\{(\w+)\}\}', lambda m: str(values[m.group(1)]), template)


def _bash_array(name: str, items: typing.Sequence[str], indent: str = '') -> str:
  """A bash array assignment, one shell-quoted item per line."""
  body = ''.join(f'\n{indent}  {shlex.quote(x)}' for x in items)
  return f'{name}=({body}\n{indent})'


def _member_args(member: Member) -> list[str]:
  """The trainer's flags on every host: the member's, plus --distributed."""
  return [*member.train_args, '--distributed']


_TPU_MEMBER = '''\
#!/usr/bin/env bash
# Sweep member {{name}} on a Cloud TPU slice.
# Written by experiments/sweep.py --launch=tpu; rerunning that command
# rewrites it.
#
#   bash {{path}}
#   TPU=OTHER_SLICE ZONE=ITS_ZONE bash {{path}}
#
# Until the member is finished (checked on worker 0: a DONE file, or the
# checkpoint of its last iteration, ITERATIONS, in WORKDIR), this runs it on
# every worker with --distributed; after a preemption or a failure it waits
# RETRY_SECONDS and runs it again, and the member resumes from its newest
# checkpoint. It gives up after MAX_TRIES runs that did not finish. While the
# slice gives no answer (preempted, being recreated), it waits without
# counting.
set -uo pipefail

TPU=${TPU:-{{tpu}}}
ZONE=${ZONE:-{{zone}}}
MAX_TRIES=${MAX_TRIES:-{{max_tries}}}
RETRY_SECONDS=${RETRY_SECONDS:-{{retry_seconds}}}

NAME={{q_name}}
WORKDIR={{q_workdir}}
ITERATIONS={{iterations}}
REPO={{q_repo}}  # on every worker; a relative path starts at the home directory
PYTHON={{q_python}}  # absolute, or relative to REPO
{{args}}
FINISHED={{q_finished}}

on_slice() {  # on_slice WORKER ARG...: runs "$PYTHON ARG..." in REPO on WORKER
  local worker=$1
  shift
  gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker="$worker" \\
    --command="$(printf 'cd %q && %q' "$REPO" "$PYTHON"; printf ' %q' "$@")"
}

tries=0
while true; do
  state=$(on_slice 0 -c "$FINISHED" "$WORKDIR" "$ITERATIONS" | tail -n 1)
  case $state in
    finished)
      echo "$NAME: finished"
      exit 0 ;;
    unfinished)
      if ((tries == MAX_TRIES)); then
        echo "$NAME: not finished after $tries runs; see their output above" >&2
        exit 1
      fi
      ((tries == 0)) || sleep "$RETRY_SECONDS"
      tries=$((tries + 1))
      echo "$(date '+%F %T') $NAME: run $tries (at most $MAX_TRIES) on $TPU"
      on_slice all -m experiments.train "${ARGS[@]}" ;;
    *)
      echo "$(date '+%F %T') $NAME: no answer from $TPU (unreachable, or the check" \\
        "failed: see above); asking again in ${RETRY_SECONDS}s" >&2
      sleep "$RETRY_SECONDS" ;;
  esac
done
'''

_TPU_QUEUE = '''\
#!/usr/bin/env bash
# The sweep members queued on Cloud TPU slice {{tpu}}, one after another.
# Written by experiments/sweep.py --launch=tpu; rerunning that command
# rewrites it, leaving out the members finished by then.
#
#   nohup bash {{path}} > {{log}} 2>&1 &
#
# Run it where it can keep running for the whole sweep: it drives the slice
# over ssh and relaunches preempted members. Member NAME appends its output
# to ROOT/NAME/log.txt.
set -uo pipefail

failed=0
run_member() {  # run_member NAME
  local workdir={{q_root}}/$1
  echo "$(date '+%F %T') start $1"
  mkdir -p "$workdir"
  if TPU={{tpu}} ZONE={{zone}} bash {{q_scripts}}/"$1.sh" >> "$workdir/log.txt" 2>&1; then
    echo "$(date '+%F %T') done  $1"
  else
    echo "$(date '+%F %T') FAIL  $1: see $workdir/log.txt"
    failed=$((failed + 1))
  fi
}

{{runs}}
echo "$failed of {{count}} member(s) did not finish"
((failed == 0))
'''


def tpu_member_path(name: str) -> str:
  """Where member NAME's TPU script goes, relative to ROOT/launch."""
  return f'tpu/{name}.sh'


def tpu_scripts(members: typing.Sequence[Member], root: str, slices: typing.Sequence[str],
                zone: str, repo: str, python: str, max_tries: int = 10,
                retry_seconds: int = 60) -> dict[str, str]:
  """Scripts that run `members` on Cloud TPU slices.

  Members are queued on the slices in turn (member i on slice i mod S).

  Args:
    members: the members to run (finished ones left out).
    root: the sweep root, an absolute path every worker sees.
    slices: TPU VM names, all of one shape.
    zone: their zone.
    repo: this repository on every worker (relative: to the home directory).
    python: the interpreter there, absolute or relative to `repo`.
    max_tries: runs of a member that may end unfinished before it gives up.
    retry_seconds: the wait before another run or another check.
  Returns:
    {path relative to ROOT/launch: text}: `tpu/<member>.sh` per member and
    `tpu_<slice>.sh` per slice that has members.
  """
  launch_dir = os.path.join(root, LAUNCH_DIR)
  scripts = {}
  for i, m in enumerate(members):
    path = tpu_member_path(m.name)
    scripts[path] = _fill(
        _TPU_MEMBER, name=m.name, path=os.path.join(launch_dir, path),
        iterations=m.num_iterations, tpu=slices[i % len(slices)], zone=zone,
        max_tries=max_tries, retry_seconds=retry_seconds, q_name=shlex.quote(m.name),
        q_workdir=shlex.quote(m.workdir), q_repo=shlex.quote(repo),
        q_python=shlex.quote(python), args=_bash_array('ARGS', _member_args(m)),
        q_finished=shlex.quote(FINISHED_CHECK))
  for s, tpu in enumerate(slices):
    queued = members[s::len(slices)]
    if not queued:
      continue
    scripts[f'tpu_{tpu}.sh'] = _fill(
        _TPU_QUEUE, tpu=tpu, zone=zone, path=os.path.join(launch_dir, f'tpu_{tpu}.sh'),
        log=os.path.join(launch_dir, f'tpu_{tpu}.log'), q_root=shlex.quote(root),
        q_scripts=shlex.quote(os.path.join(launch_dir, 'tpu')), count=len(queued),
        runs='\n'.join(f'run_member {shlex.quote(m.name)}' for m in queued))
  return scripts


_SLURM = '''\
#!/usr/bin/env bash
# Members of the sweep in {{root}}, one SLURM array task each.
# Written by experiments/sweep.py --launch=slurm; rerunning that command
# rewrites it, leaving out the members finished by then.
#
#   sbatch {{path}}
#
# (sbatch options on that command line override the #SBATCH lines below).
# Each task runs its member with srun, one process per GPU on every node of
# its allocation, each with --distributed (JAX reads the SLURM variables srun
# sets), and appends the output to ROOT/NAME/log.txt. Some time before the
# time limit (--signal) and on preemption, the processes get SIGTERM: they
# save a checkpoint and exit, the task is requeued (--requeue) and the member
# resumes from that checkpoint. A finished member's task exits at once; a
# member whose processes fail is not requeued (its log says why).
#SBATCH --job-name={{job_name}}
#SBATCH --array={{array}}
#SBATCH --nodes={{nodes}}
#SBATCH --ntasks-per-node={{gpus}}
#SBATCH --gpus-per-node={{gpus}}
{{options}}#SBATCH --requeue
#SBATCH --signal=TERM@{{grace}}
#SBATCH --open-mode=append
#SBATCH --output={{launch_dir}}/slurm-%A_%a.out
set -uo pipefail

REPO={{q_repo}}
PYTHON={{q_python}}  # absolute, or relative to REPO
FINISHED={{q_finished}}

case ${SLURM_ARRAY_TASK_ID:?submit this script with sbatch} in
{{cases}}
  *)
    echo "no sweep member for array task $SLURM_ARRAY_TASK_ID" >&2
    exit 1 ;;
esac

finished() {
  [[ $("$PYTHON" -c "$FINISHED" "$WORKDIR" "$ITERATIONS") == finished ]]
}

cd "$REPO" || exit 1
mkdir -p "$WORKDIR" || exit 1
exec >> "$WORKDIR/log.txt" 2>&1
echo "===== $(date '+%F %T') $NAME: job ${SLURM_JOB_ID:-?}," \\
  "restart ${SLURM_RESTART_COUNT:-0}, nodes ${SLURM_JOB_NODELIST:-?}"
if finished; then
  echo "$NAME: finished"
  exit 0
fi
srun --nodes={{nodes}} --ntasks-per-node={{gpus}} --kill-on-bad-exit=1 --label \\
  "$PYTHON" -m experiments.train "${ARGS[@]}"
status=$?
if finished; then
  echo "$NAME: finished"
  exit 0
fi
if ((status == 0)); then
  # Exit 0 before the last iteration: the processes checkpointed on SIGTERM.
  echo "$NAME: stopped before its last iteration; requeueing"
  scontrol requeue "$SLURM_JOB_ID"
  exit
fi
echo "$NAME: srun exited with status $status; not requeued" >&2
exit "$status"
'''

_SLURM_CASE = '''\
  {{index}})
    NAME={{q_name}}
    WORKDIR={{q_workdir}}
    ITERATIONS={{iterations}}
    {{args}} ;;'''


def slurm_script(members: typing.Sequence[Member], root: str, nodes: int, gpus_per_node: int,
                 repo: str, python: str, partition: str | None = None,
                 time: str | None = None, grace: int = 600,
                 parallel: int | None = None) -> str:
  """An sbatch array script with one task per member.

  Args:
    members: the members to run (finished ones left out).
    root: the sweep root, an absolute path every node sees; it must need no
      shell quoting (#SBATCH lines are not parsed by a shell).
    nodes, gpus_per_node: each member's allocation; it runs as
      nodes x gpus_per_node processes, one per GPU.
    repo: this repository on the nodes (absolute).
    python: the interpreter there, absolute or relative to `repo`.
    partition, time: sbatch --partition and --time (None: the cluster's).
    grace: seconds before the time limit at which the processes get SIGTERM
      (enough for an iteration and a checkpoint).
    parallel: at most this many tasks at once (None: no limit).
  Returns:
    The script's text.
  """
  cases = '\n'.join(_fill(
      _SLURM_CASE, index=i, q_name=shlex.quote(m.name), q_workdir=shlex.quote(m.workdir),
      iterations=m.num_iterations, args=_bash_array('ARGS', _member_args(m), indent='    '))
      for i, m in enumerate(members))
  options = ''.join(f'#SBATCH --{k}={v}\n' for k, v in (('partition', partition),
                                                       ('time', time)) if v)
  launch_dir = os.path.join(root, LAUNCH_DIR)
  return _fill(
      _SLURM, root=root, path=os.path.join(launch_dir, SLURM_SCRIPT),
      nodes=nodes, gpus=gpus_per_node, grace=grace, launch_dir=launch_dir,
      job_name=f'sweep-{os.path.basename(root.rstrip("/"))}',
      array=f'0-{len(members) - 1}' + (f'%{parallel}' if parallel else ''),
      options=options, q_repo=shlex.quote(repo), q_python=shlex.quote(python),
      q_finished=shlex.quote(FINISHED_CHECK), cases=cases)


def write_scripts(root: str, scripts: dict[str, str]) -> list[str]:
  """Writes {relative path: text} into ROOT/launch/ (executable); returns the paths."""
  paths = []
  for relative, text in scripts.items():
    path = os.path.join(root, LAUNCH_DIR, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      f.write(text)
    os.chmod(path, 0o755)
    paths.append(path)
  return paths
