#!/usr/bin/env bash
# Sweep member credit.name=g2po,seed=1 on a Cloud TPU slice.
# Written by experiments/sweep.py --launch=tpu; rerunning that command
# rewrites it.
#
#   bash @TMP@/root/launch/tpu/credit.name=g2po,seed=1.sh
#   TPU=OTHER_SLICE ZONE=ITS_ZONE bash @TMP@/root/launch/tpu/credit.name=g2po,seed=1.sh
#
# Until the member is finished (checked on worker 0: a DONE file, or the
# checkpoint of its last iteration, ITERATIONS, in WORKDIR), this runs it on
# every worker with --distributed; after a preemption or a failure it waits
# RETRY_SECONDS and runs it again, and the member resumes from its newest
# checkpoint. It gives up after MAX_TRIES runs that did not finish. While the
# slice gives no answer (preempted, being recreated), it waits without
# counting.
set -uo pipefail

TPU=${TPU:-slice-a}
ZONE=${ZONE:-us-central2-b}
MAX_TRIES=${MAX_TRIES:-10}
RETRY_SECONDS=${RETRY_SECONDS:-60}

NAME=credit.name=g2po,seed=1
WORKDIR=@TMP@/root/credit.name=g2po,seed=1
ITERATIONS=3
REPO=g2po_jax  # on every worker; a relative path starts at the home directory
PYTHON=.venv/bin/python  # absolute, or relative to REPO
ARGS=(
  --config=@TMP@/sweep_config.py
  --config.num_iterations=3
  --config.credit.name=g2po
  --config.seed=1
  --workdir=@TMP@/root/credit.name=g2po,seed=1
  --distributed
)
FINISHED='import sys; from experiments import launch; print("finished" if launch.workdir_finished(sys.argv[1], int(sys.argv[2])) else "unfinished")'

on_slice() {  # on_slice WORKER ARG...: runs "$PYTHON ARG..." in REPO on WORKER
  local worker=$1
  shift
  gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker="$worker" \
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
      echo "$(date '+%F %T') $NAME: no answer from $TPU (unreachable, or the check" \
        "failed: see above); asking again in ${RETRY_SECONDS}s" >&2
      sleep "$RETRY_SECONDS" ;;
  esac
done
