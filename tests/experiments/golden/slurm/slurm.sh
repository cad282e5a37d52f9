#!/usr/bin/env bash
# Members of the sweep in @TMP@/root, one SLURM array task each.
# Written by experiments/sweep.py --launch=slurm; rerunning that command
# rewrites it, leaving out the members finished by then.
#
#   sbatch @TMP@/root/launch/slurm.sh
#
# (sbatch options on that command line override the #SBATCH lines below).
# Each task runs its member with srun, one process per GPU on every node of
# its allocation, each with --distributed (JAX reads the SLURM variables srun
# sets), and appends the output to ROOT/NAME/log.txt. Some time before the
# time limit (--signal) and on preemption, the processes get SIGTERM: they
# save a checkpoint and exit, the task is requeued (--requeue) and the member
# resumes from that checkpoint. A finished member's task exits at once; a
# member whose processes fail is not requeued (its log says why).
#SBATCH --job-name=sweep-root
#SBATCH --array=0-1%4
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --gpus-per-node=2
#SBATCH --partition=gpu
#SBATCH --time=2-00:00:00
#SBATCH --requeue
#SBATCH --signal=TERM@600
#SBATCH --open-mode=append
#SBATCH --output=@TMP@/root/launch/slurm-%A_%a.out
set -uo pipefail

REPO=/shared/g2po_jax
PYTHON=.venv/bin/python  # absolute, or relative to REPO
FINISHED='import sys; from experiments import launch; print("finished" if launch.workdir_finished(sys.argv[1], int(sys.argv[2])) else "unfinished")'

case ${SLURM_ARRAY_TASK_ID:?submit this script with sbatch} in
  0)
    NAME=credit.name=g2po,seed=1
    WORKDIR=@TMP@/root/credit.name=g2po,seed=1
    ITERATIONS=3
    ARGS=(
      --config=@TMP@/sweep_config.py
      --config.num_iterations=3
      --config.credit.name=g2po
      --config.seed=1
      --workdir=@TMP@/root/credit.name=g2po,seed=1
      --distributed
    ) ;;
  1)
    NAME=credit.name=grpo,model.init_from=_shared_sft_policy,v2__q_
    WORKDIR=@TMP@/root/credit.name=grpo,model.init_from=_shared_sft_policy,v2__q_
    ITERATIONS=3
    ARGS=(
      --config=@TMP@/sweep_config.py
      --config.num_iterations=3
      --config.credit.name=grpo
      '--config.model.init_from=/shared/sft policy,v2 '"'"'q'"'"''
      --workdir=@TMP@/root/credit.name=grpo,model.init_from=_shared_sft_policy,v2__q_
      --distributed
    ) ;;
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
echo "===== $(date '+%F %T') $NAME: job ${SLURM_JOB_ID:-?}," \
  "restart ${SLURM_RESTART_COUNT:-0}, nodes ${SLURM_JOB_NODELIST:-?}"
if finished; then
  echo "$NAME: finished"
  exit 0
fi
srun --nodes=1 --ntasks-per-node=2 --kill-on-bad-exit=1 --label \
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
