#!/usr/bin/env bash
# The real-ALFWorld experiment of experiments/results/alfworld/README.md, on
# 2 CPU cores: a warm start from the engine's planner, G2PO vs GRPO (3 seeds
# each, experiments.sweep), per-task-type evaluation of every final policy,
# and the zero-shot transfer of the household-small demo policy (make demo).
# Resumable: every step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/../../.."
PY=.venv/bin/python
ROOT=${ROOT:-runs/alfworld}
OUT=experiments/results/alfworld
CONFIG=configs/alfworld_g2po.py

$PY -m experiments.sft --config=$CONFIG --workdir=$ROOT/sft
$PY -m experiments.sweep --config=$CONFIG --workdir=$ROOT/compare \
    --set=model.init_from=$ROOT/sft/policy --parallel=1
$PY -m experiments.report $ROOT/compare --out=$OUT
for run in "$ROOT"/compare/*/; do
  name=$(basename "$run")
  $PY -m experiments.evaluate --policy="$run" --env=alfworld --config.eval.num_tasks=60 --out="$OUT/eval_$name.json"
done
$PY -m experiments.evaluate --policy=$ROOT/sft/policy --env=alfworld --config.eval.num_tasks=60 --out=$OUT/eval_warm_start.json
# Zero-shot: the demo's household-small policy on the real engine's evaluation
# games (its own 192-token prompts) and on household-small's evaluation tasks.
if [ -d runs/demo/g2po ]; then
  $PY -m experiments.evaluate --policy=runs/demo/g2po --env=alfworld \
      --config.rollout.prompt_len=192 --config.eval.num_tasks=60 --out=$OUT/zero_shot_alfworld.json
  $PY -m experiments.evaluate --policy=runs/demo/g2po --env=household-small \
      --config=configs/household_small_g2po.py --out=$OUT/zero_shot_household_small.json
fi
