#!/usr/bin/env bash
# The sweep members queued on Cloud TPU slice slice-a, one after another.
# Written by experiments/sweep.py --launch=tpu; rerunning that command
# rewrites it, leaving out the members finished by then.
#
#   nohup bash @TMP@/root/launch/tpu_slice-a.sh > @TMP@/root/launch/tpu_slice-a.log 2>&1 &
#
# Run it where it can keep running for the whole sweep: it drives the slice
# over ssh and relaunches preempted members. Member NAME appends its output
# to ROOT/NAME/log.txt.
set -uo pipefail

failed=0
run_member() {  # run_member NAME
  local workdir=@TMP@/root/$1
  echo "$(date '+%F %T') start $1"
  mkdir -p "$workdir"
  if TPU=slice-a ZONE=us-central2-b bash @TMP@/root/launch/tpu/"$1.sh" >> "$workdir/log.txt" 2>&1; then
    echo "$(date '+%F %T') done  $1"
  else
    echo "$(date '+%F %T') FAIL  $1: see $workdir/log.txt"
    failed=$((failed + 1))
  fi
}

run_member credit.name=g2po,seed=1
echo "$failed of 1 member(s) did not finish"
((failed == 0))
