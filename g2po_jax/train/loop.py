"""The training loop: rollouts on the host, one jitted step on the devices.

  iteration i:  sample tasks -> group rollouts (host loop around the jitted
                sampler) -> graph arrays (host) -> epochs x mini-batches of
                the fused advantage + PPO step (device) -> metrics, eval,
                checkpoint

Every random choice of iteration i derives from (config.seed, i): the task
seeds, the sampling keys and the mini-batch shuffle. A run resumed from a
checkpoint therefore replays exactly what an uninterrupted run does.
"""

import dataclasses
import os
import signal
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np

from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax import sampling
from g2po_jax import tokenizers
from g2po_jax.models import qwen2
from g2po_jax.models import sharding
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import metrics as metrics_lib
from g2po_jax.train import rollout
from g2po_jax.train import step as step_lib

P = jax.sharding.PartitionSpec


@dataclasses.dataclass
class Policy:
  graphdef: nnx.GraphDef
  params: nnx.State
  tokenizer: tokenizers.Tokenizer
  model_config: qwen2.ModelConfig


def init_policy(c: mlc.ConfigDict, env: envs.BatchEnv, mesh: jax.sharding.Mesh) -> Policy:
  """The policy to train: loaded from `model.init_from`, or fresh.

  A fresh policy gets a word tokenizer over the environment's vocabulary and
  the `model.preset` shape.
  """
  overrides = dict(dtype=c.model.dtype, param_dtype=c.model.param_dtype, remat=c.model.remat,
                   value_head=c.credit.name == 'ppo')
  if c.model.init_from:
    model, tokenizer = ckpt_lib.load_policy(c.model.init_from, mesh=mesh, **overrides)
  else:
    tokenizer = tokenizers.WordTokenizer.from_vocabulary(env.vocabulary())
    config = qwen2.make_config(c.model.preset, vocab_size=tokenizer.vocab_size, **overrides)
    model = qwen2.init_model(config, seed=c.seed, mesh=mesh)
  graphdef, params = nnx.split(model)
  return Policy(graphdef, params, tokenizer, model.config)


def task_seeds(c: mlc.ConfigDict, iteration: int) -> np.ndarray:
  """[num_tasks * group_size] train-split seeds of iteration i, each repeated."""
  rng = np.random.default_rng([c.seed, iteration, 0])
  index = rng.integers(0, 10**9 - 1, c.rollout.num_tasks)
  seeds = np.array([envs.split_seeds('train', 1, int(i))[0] for i in index])
  return np.repeat(seeds, c.rollout.group_size)


def _episode_metrics(prefix: str, r: rollout.Rollouts, reward_scale: float) -> dict:
  lengths = r.lengths
  out = {
      f'{prefix}/success': float(r.won.mean()),
      f'{prefix}/episode_length': float(lengths.mean()),
      f'{prefix}/reward': float(r.reward.sum(1).mean() / reward_scale),
      f'{prefix}/invalid_rate': float(1 - r.valid[r.mask].mean()) if r.num_steps else 0.0,
  }
  types = np.array(r.task_types)
  for kind in sorted(set(r.task_types)):
    out[f'{prefix}/success/{kind}'] = float(r.won[types == kind].mean())
  return out


class _Preemption:
  """Turns SIGTERM into a flag the loop checks at safe points."""

  def __init__(self):
    self.requested = False
    try:
      signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. some test runners)
      pass

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the next safe point, then exiting.')
    self.requested = True


def train(c: mlc.ConfigDict, workdir: str) -> dict:
  """Trains per config `c` in `workdir` (resuming it if it holds checkpoints).

  Returns:
    The last iteration's metrics.
  """
  config_lib.validate(c)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(c.to_json_best_effort(indent=2))
  preemption = _Preemption()
  mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp)
  shards = sharding.batch_shards(mesh)
  if c.ppo.minibatch_size % shards:
    raise config_lib.ConfigError(f'ppo.minibatch_size ({c.ppo.minibatch_size}) must be a '
                                 f'multiple of the {shards} batch shards of the mesh.')
  env = envs.make(c.env.name, **c.env.kwargs)
  policy = init_policy(c, env, mesh)
  schedule = step_lib.make_schedule(c.optim.lr, c.optim.warmup_steps)
  tx = step_lib.make_optimizer(schedule, c.optim.b1, c.optim.b2, c.optim.weight_decay,
                               c.optim.grad_clip)
  state = jax.jit(lambda p: step_lib.TrainState(p, tx.init(p), jax.tree.map(jnp.copy, p),
                                                jnp.int32(0)))(policy.params)
  del policy.params  # the state owns them now
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=c.ckpt.keep)
  start = 0
  restored = ckpt.restore_latest(ckpt_lib.abstract(state))
  if restored is not None:
    state, record = restored
    start = record['iteration'] + 1
    logging.info('resumed %s at iteration %d', workdir, start)
  if start == 0:
    policy.tokenizer.save(os.path.join(workdir, 'tokenizer'))

  estimator = c.credit.name
  options = config_lib.credit_options(c)
  history = c.rollout.history if estimator == 'hgpo' else None
  stop_ids = (policy.tokenizer.eos_id,)
  sample_config = sampling.SamplingConfig(
      max_new_tokens=c.rollout.max_new_tokens, temperature=c.rollout.temperature,
      top_k=c.rollout.top_k, top_p=c.rollout.top_p, stop_ids=stop_ids,
      pad_id=policy.tokenizer.pad_id)
  sampler = sampling.Sampler(policy.graphdef, sample_config, mesh=mesh)
  eval_sampler = sampling.Sampler(policy.graphdef, dataclasses.replace(
      sample_config, temperature=c.eval.temperature), mesh=mesh)
  train_step = jax.jit(step_lib.make_train_step(
      policy.graphdef, tx, estimator=estimator, estimator_options=options, clip=c.ppo.clip,
      kl_coef=c.ppo.kl_coef, entropy_coef=c.ppo.entropy_coef, value_coef=c.ppo.value_coef,
      action_ratio=config_lib.action_ratio(c)), donate_argnums=(0,))
  advantage_fn = jax.jit(step_lib.make_advantage_fn(estimator, options))
  values_fn = jax.jit(lambda params, mb: step_lib.state_values(policy.graphdef, params, mb))
  replicated = jax.sharding.NamedSharding(mesh, P())
  put_batch = lambda x: jax.device_put(x, jax.tree.map(
      lambda a: sharding.batch_sharding(mesh, a.ndim), x))

  writer = metrics_lib.Writer(workdir)
  progress = metrics_lib.Progress(c.num_iterations, start)
  rollout_kwargs = dict(max_steps=c.env.max_steps, history=c.rollout.history,
                        prompt_len=c.rollout.prompt_len, success_reward=c.credit.success_reward)
  base_key = jax.random.key(c.seed)
  values = {}
  bad_in_a_row = 0
  for it in range(start, c.num_iterations):
    t_iter = time.perf_counter()
    params = state.params
    r = rollout.collect(env, task_seeds(c, it),
                        lambda ids, lens, key: sampler(params, ids, lens, key),
                        policy.tokenizer, jax.random.fold_in(base_key, it), **rollout_kwargs)
    t_rollout = time.perf_counter() - t_iter

    t0 = time.perf_counter()
    traj = batch_lib.trajectories(r, history)
    stats = graph_lib.graph_stats(traj.graph, r.mask)
    mbs = batch_lib.minibatches(r, size=c.ppo.minibatch_size, prompt_len=c.rollout.prompt_len,
                                padded_steps=traj.mask.shape[1],
                                rng=np.random.default_rng([c.seed, it, 1]))
    t_graph = time.perf_counter() - t0
    mbs = [put_batch(mb) for mb in mbs]
    if estimator == 'ppo':
      v = np.zeros(traj.mask.size, np.float32)
      for mb in mbs:
        idx, real = jax.device_get((mb.sample_index, mb.sample_mask))
        v[idx[real]] = np.asarray(values_fn(state.params, mb))[real]
      traj = traj._replace(values=v.reshape(traj.mask.shape))
    traj = jax.device_put(traj, replicated)
    t0 = time.perf_counter()
    jax.block_until_ready(advantage_fn(traj))
    t_credit = time.perf_counter() - t0

    t0 = time.perf_counter()
    step_metrics = []
    for _ in range(c.ppo.epochs):
      for mb in mbs:
        state, m = train_step(state, traj, mb)
        step_metrics.append(m)
      # Bounded queues of async collectives on fake CPU devices can deadlock.
      jax.block_until_ready(state.step)
    step_metrics = jax.device_get(step_metrics)
    t_update = time.perf_counter() - t0

    finite = np.array([m.pop('finite') for m in step_metrics])
    bad_in_a_row = 0 if finite.all() else bad_in_a_row + int((~finite).sum())
    values = {f'train/{k}' if '/' not in k else k: float(np.mean([m[k] for m in step_metrics]))
              for k in step_metrics[0]}
    values['train/nonfinite_updates'] = float((~finite).sum())
    values['train/lr'] = float(schedule(int(state.step)))
    values.update(_episode_metrics('rollout', r, c.credit.success_reward))
    values.update({f'graph/{k}': float(v) for k, v in stats.items() if np.isscalar(v)})
    t_total = time.perf_counter() - t_iter
    values.update({
        'time/rollout': t_rollout, 'time/sampling': r.sample_seconds, 'time/env': r.env_seconds,
        'time/graph': t_graph, 'time/credit': t_credit, 'time/update': t_update,
        'time/iteration': t_total,
        'time/graph_credit_fraction': (t_graph + t_credit) / t_total,
        'throughput/env_steps_per_s': r.num_steps / t_rollout,
        'throughput/sampled_tokens_per_s': r.num_response_tokens / max(r.sample_seconds, 1e-9),
        'throughput/train_tokens_per_s': sum(int(np.asarray(mb.token_mask).sum())
                                             for mb in mbs) * c.ppo.epochs / t_update,
    })
    last = it + 1 == c.num_iterations
    if c.eval.every and ((it + 1) % c.eval.every == 0 or last):
      t0 = time.perf_counter()
      values.update(evaluate(c, env, eval_sampler, state.params, policy.tokenizer, it))
      values['time/eval'] = time.perf_counter() - t0
    if (it + 1) % c.log_every == 0 or last:
      writer.scalars(it + 1, values)
      writer.flush()
    progress.log(it, values)

    if bad_in_a_row >= c.ppo.max_bad_steps:
      ckpt.close()
      raise FloatingPointError(
          f'{bad_in_a_row} updates in a row had a non-finite loss or gradient (limit '
          f'ppo.max_bad_steps={c.ppo.max_bad_steps}); stopping at iteration {it + 1}. '
          f'Lower optim.lr or check the rewards.')
    if (it + 1) % c.ckpt.every == 0 or last or preemption.requested:
      ckpt.save(it, state, {'iteration': it, 'seed': c.seed})
    if preemption.requested:
      logging.warning('preempted: checkpoint of iteration %d saved; exiting.', it + 1)
      break
  ckpt.close()
  writer.close()
  env.close()
  return values


def evaluate(c: mlc.ConfigDict, env: envs.BatchEnv, sampler: sampling.Sampler, params,
             tokenizer: tokenizers.Tokenizer, iteration: int) -> dict:
  """One attempt at each of `eval.num_tasks` unseen (eval-split) tasks."""
  seeds = envs.split_seeds('eval', c.eval.num_tasks)
  r = rollout.collect(env, seeds, lambda ids, lens, key: sampler(params, ids, lens, key),
                      tokenizer, jax.random.fold_in(jax.random.key(c.seed + 1), iteration),
                      max_steps=c.env.max_steps, history=c.rollout.history,
                      prompt_len=c.rollout.prompt_len, success_reward=c.credit.success_reward)
  return _episode_metrics('eval', r, c.credit.success_reward)
