#!/bin/bash
# The estimator comparison on the lent GPU machine (one call). Usage: bash .devrun/compare.sh ITERS BUDGET_S
set -u
ITERS=${1:-50}; BUDGET=${2:-380}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0.5
T0=$(date +%s); el() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/ml_collections-*.whl .whl/tensorboardx-*.whl
export PYTHONPATH=$PWD:/tmp/site
python3 -c "import jax, flax, optax, orbax.checkpoint as o, chex; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.used --format=csv
POLICY=$PWD/runs/devsft/policy
warm() {  # one real iteration + eval: checks the stack and fills the compile cache
  timeout 200 python3 -m experiments.train --config=configs/household_small_g2po.py \
    --config.model.init_from=$POLICY --config.num_iterations=1 --config.eval.every=1 \
    --workdir=/tmp/warm_$1 > $OUT/warm_$1.log 2>&1
}
el warm-up
if ! warm a; then
  el "warm-up failed with the machine's flax/optax/orbax/chex; retrying with the project's pins"
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  warm b || { tail -40 $OUT/warm_a.log; tail -40 $OUT/warm_b.log; exit 1; }
fi
grep "iter 1/1" $OUT/warm_*.log | tail -1
el sweeps
COMMON="--config=configs/household_small_g2po.py --set=model.init_from=$POLICY --set=num_iterations=$ITERS --set=eval.every=10 --set=ckpt.every=10 --set=graph_image_every=$ITERS --parallel=40 --status_every=60"
timeout -s TERM $BUDGET python3 -m experiments.sweep $COMMON --workdir=/tmp/cmp/main \
  > $OUT/sweep_main.log 2>&1 &
timeout -s TERM $BUDGET python3 -m experiments.sweep $COMMON --workdir=/tmp/cmp/ablation \
  --sweep=sweep_ablation > $OUT/sweep_ablation.log 2>&1 &
wait
el "sweeps done"
for d in main ablation; do python3 -m experiments.report /tmp/cmp/$d --out=/tmp/cmp/$d/report > /tmp/cmp/report_$d.log 2>&1; done
tail -n 3 $OUT/sweep_main.log $OUT/sweep_ablation.log
tar czf $OUT/compare.tgz -C /tmp/cmp --exclude=checkpoints --exclude=batches --exclude=tokenizer .
el done; ls -la $OUT
