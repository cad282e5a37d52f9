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
import functools
import os
import signal
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from g2po_jax import distributed
from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax import sampling
from g2po_jax import tokenizers
from g2po_jax import viz
from g2po_jax.models import qwen2
from g2po_jax.models import sharding
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import metrics as metrics_lib
from g2po_jax.train import rollout
from g2po_jax.train import step as step_lib
from g2po_jax.train import workdir as workdir_lib

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding


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


def process_share(seeds: np.ndarray, group_size: int) -> tuple[np.ndarray, int]:
  """This process's whole task groups of `seeds`, and the index of its first row."""
  n, p = jax.process_count(), jax.process_index()
  groups = len(seeds) // group_size
  per = groups // n
  return seeds[p * per * group_size:(p + 1) * per * group_size], p * per * group_size


def episode_metrics(prefix: str, r: rollout.Rollouts) -> dict[str, float]:
  """Success (overall and per task type), length, reward, invalid rate of
  every process's episodes. Rewards are the environment's (success = 1)."""
  lengths = distributed.gather_rows(r.lengths)
  won = distributed.gather_rows(r.won)
  steps = max(int(lengths.sum()), 1)
  invalid = distributed.gather_rows((r.mask & ~r.valid).sum(1))
  types = np.array(distributed.gather_strings(r.task_types))
  out = {
      f'{prefix}/success': float(won.mean()),
      f'{prefix}/episode_length': float(lengths.mean()),
      f'{prefix}/reward': float(distributed.gather_rows(r.env_reward.sum(1)).mean()),
      f'{prefix}/invalid_rate': float(invalid.sum() / steps),
      f'{prefix}/env_steps': float(lengths.sum()),
  }
  for kind in sorted(set(types)):
    out[f'{prefix}/success/{kind}'] = float(won[types == kind].mean())
  return out


def count_bad_steps(run: int, finite: np.ndarray) -> tuple[int, int]:
  """Counts non-finite (skipped) updates in a row.

  Args:
    run: non-finite updates in a row before these.
    finite: [n] bool, whether each update of the iteration was finite, in order.
  Returns:
    (the run at the end, the longest run reached).
  """
  longest = run
  for ok in finite:
    run = 0 if ok else run + 1
    longest = max(longest, run)
  return run, longest


class _Preemption:
  """Turns SIGTERM into a flag the loop checks at safe points."""

  def __init__(self):
    self.requested = False
    self._previous = None
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. some test runners)
      pass
    logging.info('SIGTERM will save a checkpoint at the end of the iteration and stop the run.')

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the next safe point, then exiting.')
    self.requested = True

  def agreed(self) -> bool:
    """Whether any process was asked to stop (all processes stop together)."""
    return bool(distributed.agree_max([self.requested])[0])

  def close(self) -> None:
    """Puts back the SIGTERM handler that was there before."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def train(c: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains per config `c` in `workdir` (resuming it if it holds checkpoints).

  With several processes (after `jax.distributed.initialize`) every process
  runs this with the same config and workdir: each steps its own task
  groups, and only process 0 writes logs.

  Returns:
    The last iteration's metrics.
  """
  config_lib.validate(c)
  config_lib.validate_here(c, jax.device_count())
  if '://' in workdir:
    raise config_lib.ConfigError(
        f'--workdir must be a filesystem path (every process of a multi-host run sees it '
        f'at the same path, e.g. NFS or a bucket mounted with gcsfuse); got {workdir!r}.')
  workdir_lib.prepare(workdir, lock=jax.process_index() == 0)
  unused = config_lib.unused_credit_options(c)
  if unused:
    logging.warning('credit options %s do not apply to %r and are ignored.', unused,
                    c.credit.name)
  mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp)
  config_lib.validate_for_mesh(c, sharding.batch_shards(mesh), jax.process_count())
  lead = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if lead:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(c.to_json_best_effort(indent=2))
  # After jax.distributed.initialize, which installs a SIGTERM handler of its
  # own that this one replaces.
  preemption = _Preemption()
  env = envs.make(c.env.name, **c.env.kwargs)
  policy = init_policy(c, env, mesh)
  config_lib.warn_if_prompts_lose_the_task(c, env, policy.tokenizer)
  schedule = step_lib.make_schedule(c.optim.lr, c.optim.warmup_steps)
  tx = step_lib.make_optimizer(schedule, c.optim.b1, c.optim.b2, c.optim.weight_decay,
                               c.optim.grad_clip)
  replicated = NamedSharding(mesh, P())
  # Adam's moments take their parameter's sharding (sharded over fsdp like
  # it); left to XLA they come out replicated on every device.
  param_sharding = jax.tree.map(lambda x: x.sharding, policy.params)
  opt_sharding = optax.tree_utils.tree_map_params(
      tx, lambda _, s: s, jax.eval_shape(tx.init, policy.params), param_sharding,
      transform_non_params=lambda _: replicated)
  state_sharding = step_lib.TrainState(param_sharding, opt_sharding, param_sharding, replicated)
  state = jax.jit(lambda p: step_lib.TrainState(p, tx.init(p), jax.tree.map(jnp.copy, p),
                                                jnp.int32(0)),
                  out_shardings=state_sharding)(policy.params)
  del policy.params  # the state owns them now
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=c.ckpt.keep)
  start = 0
  restored = ckpt.restore_latest(ckpt_lib.abstract(state))
  if restored is not None:
    state, record = restored
    start = record['iteration'] + 1
    logging.info('resumed %s at iteration %d', workdir, start)
  if start == 0 and lead:
    policy.tokenizer.save(os.path.join(workdir, 'tokenizer'))

  estimator = c.credit.name
  options = config_lib.credit_options(c)
  history = c.rollout.history if estimator == 'hgpo' else None
  sample_config = sampling.SamplingConfig(
      max_new_tokens=c.rollout.max_new_tokens, temperature=c.rollout.temperature,
      top_k=c.rollout.top_k, top_p=c.rollout.top_p, stop_ids=policy.tokenizer.stop_ids,
      pad_id=policy.tokenizer.pad_id)
  sampler = sampling.Sampler(policy.graphdef, sample_config, mesh=mesh)
  eval_sampler = sampling.Sampler(policy.graphdef, dataclasses.replace(
      sample_config, temperature=c.eval.temperature), mesh=mesh)
  # Explicit shardings: the state keeps its layout, metrics come back replicated.
  train_step = jax.jit(step_lib.make_train_step(
      policy.graphdef, tx, estimator=estimator, estimator_options=options, clip=c.ppo.clip,
      kl_coef=c.ppo.kl_coef, entropy_coef=c.ppo.entropy_coef, value_coef=c.ppo.value_coef,
      action_ratio=config_lib.action_ratio(c), temperature=c.rollout.temperature),
      out_shardings=(state_sharding, replicated), donate_argnums=(0,))
  advantage_fn = jax.jit(step_lib.make_advantage_fn(estimator, options))
  values_fn = jax.jit(lambda params, mb: step_lib.state_values(policy.graphdef, params, mb))
  to_device = lambda tree: distributed.global_batch(
      tree, lambda x: sharding.batch_sharding(mesh, x.ndim))
  minibatch_size = c.ppo.minibatch_size // jax.process_count()

  writer = metrics_lib.Writer(workdir)
  progress = metrics_lib.Progress(c.num_iterations, start)
  rollout_kwargs = dict(max_steps=c.env.max_steps, history=c.rollout.history,
                        prompt_len=c.rollout.prompt_len, success_reward=c.credit.success_reward)
  base_key = jax.random.key(c.seed)
  values = {}
  bad_in_a_row = 0
  try:
    if start == 0 and c.eval.every:
      # The starting point (the warm start), so a curve shows what RL added.
      baseline = evaluate(c, env, eval_sampler, state.params, policy.tokenizer, 0)
      writer.scalars(0, baseline)
      logging.info('before training: eval success %.2f on %d unseen tasks',
                   baseline['eval/success'], c.eval.num_tasks)
    for it in range(start, c.num_iterations):
      t_iter = time.perf_counter()
      # ---------------------------------------------------------- rollouts (host)
      seeds, row_offset = process_share(task_seeds(c, it), c.rollout.group_size)
      params = state.params
      r = rollout.collect(env, seeds, functools.partial(sampler, params), policy.tokenizer,
                          jax.random.fold_in(base_key, it), row_offset=row_offset,
                          **rollout_kwargs)
      t_rollout = time.perf_counter() - t_iter

      # ------------------------------------------------- graph arrays (host)
      t0 = time.perf_counter()
      local = batch_lib.trajectories(r, history)
      traj = batch_lib.gather_trajectories(local)
      stats = graph_lib.graph_stats(traj.graph, traj.mask)
      t_graph = time.perf_counter() - t0
      t0 = time.perf_counter()
      count, longest = distributed.agree_max(batch_lib.minibatch_needs(r, minibatch_size))
      mbs = batch_lib.minibatches(r, size=minibatch_size, prompt_len=c.rollout.prompt_len,
                                  padded_steps=local.mask.shape[1], count=count, longest=longest,
                                  row_offset=jax.process_index() * local.mask.shape[0],
                                  rng=np.random.default_rng([c.seed, it, 1, jax.process_index()]))
      t_batch = time.perf_counter() - t0
      mbs = [to_device(mb) for mb in mbs]
      if estimator == 'ppo':
        v = np.zeros(traj.mask.size, np.float32)
        for mb in mbs:
          idx, real = distributed.fetch(mb.sample_index), distributed.fetch(mb.sample_mask)
          v[idx[real]] = distributed.fetch(values_fn(state.params, mb))[real]
        traj = traj._replace(values=v.reshape(traj.mask.shape))
      traj = jax.device_put(traj, replicated)
      # The train step recomputes the advantages inside its own jit; this call
      # only times the estimator for the overhead metrics.
      t0 = time.perf_counter()
      advantages = jax.block_until_ready(advantage_fn(traj)[0])
      t_credit = time.perf_counter() - t0
      last = it + 1 == c.num_iterations
      if lead and c.graph_image_every and ((it + 1) % c.graph_image_every == 0 or last):
        picture_of_a_group(c, workdir, writer, it + 1, r, advantages)

      # ------------------------------------------------------- update (device)
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

      # ------------------------------------------------ metrics, eval, checkpoint
      finite = np.array([m.pop('finite') for m in step_metrics])
      bad_in_a_row, longest_bad = count_bad_steps(bad_in_a_row, finite)
      values = {f'train/{k}' if '/' not in k else k: float(np.mean([m[k] for m in step_metrics]))
                for k in step_metrics[0]}
      values['train/nonfinite_updates'] = float((~finite).sum())
      values['train/lr'] = float(schedule(int(state.step)))
      values.update(episode_metrics('rollout', r))
      values.update({f'graph/{k}': float(v) for k, v in stats.items() if np.isscalar(v)})
      t_total = time.perf_counter() - t_iter
      train_tokens = sum(int(distributed.fetch(mb.token_mask).sum()) for mb in mbs)
      values.update({
          'time/rollout': t_rollout, 'time/sampling': r.sample_seconds, 'time/env': r.env_seconds,
          'time/graph': t_graph, 'time/batch': t_batch, 'time/credit': t_credit,
          'time/update': t_update,
          'time/iteration': t_total,
          'time/graph_credit_fraction': (t_graph + t_credit) / t_total,
          'throughput/env_steps_per_s': values['rollout/env_steps'] / t_rollout,
          'throughput/sampled_tokens_per_s': distributed.gather_rows(
              np.array([r.num_response_tokens])).sum() / max(r.sample_seconds, 1e-9),
          'throughput/train_tokens_per_s': train_tokens * c.ppo.epochs / t_update,
      })
      if c.eval.every and ((it + 1) % c.eval.every == 0 or last):
        t0 = time.perf_counter()
        values.update(evaluate(c, env, eval_sampler, state.params, policy.tokenizer, it + 1))
        values['time/eval'] = time.perf_counter() - t0
      if (it + 1) % c.log_every == 0 or last:
        writer.scalars(it + 1, values)
        writer.flush()
      progress.log(it, values)

      if longest_bad >= c.ppo.max_bad_steps:
        raise FloatingPointError(
            f'{longest_bad} updates in a row had a non-finite loss or gradient and were '
            f'skipped (limit ppo.max_bad_steps={c.ppo.max_bad_steps}); stopping after '
            f'iteration {it + 1}, whose metrics are logged; no checkpoint of it is saved. '
            f'Check the rewards, or lower optim.lr.')
      preempted = preemption.agreed()
      if (it + 1) % c.ckpt.every == 0 or last or preempted:
        ckpt.save(it, state, {'iteration': it, 'seed': c.seed})
      if preempted:
        logging.warning('preempted: checkpoint of iteration %d saved; exiting.', it + 1)
        break
  finally:
    preemption.close()
    ckpt.close()
    writer.close()
    env.close()
  # Equal in every process when the parameters are replicated over processes
  # (mesh.fsdp within one host): a check that replicas did not drift apart.
  logging.info('parameter digest of process %d of %d: %s', jax.process_index(),
               jax.process_count(), distributed.local_digest(state.params))
  return values


def picture_of_a_group(c: mlc.ConfigDict, workdir: str, writer: metrics_lib.Writer,
                       step: int, r: rollout.Rollouts, advantages: jax.Array) -> None:
  """Saves this process's batch (workdir/batches) and logs one task group's
  state-transition graph to TensorBoard as an image."""
  b, t = r.mask.shape
  batch = viz.Batch(group=r.seeds, state_key=r.state_key, next_key=r.next_key,
                    reward=r.reward, valid=r.valid, mask=r.mask,
                    advantages=np.asarray(jax.device_get(advantages))[:b, :t],
                    success_reward=c.credit.success_reward,
                    gamma=0.95 if c.credit.gamma is None else c.credit.gamma,
                    estimator=c.credit.name, iteration=step)
  viz.save_batch(viz.batch_path(workdir, step), batch)
  writer.image(step, 'graph/task_group', viz.render_batch(batch))


def evaluate(c: mlc.ConfigDict, env: envs.BatchEnv, sampler: sampling.Sampler, params,
             tokenizer: tokenizers.Tokenizer, step: int) -> dict[str, float]:
  """One attempt at each of `eval.num_tasks` unseen (eval-split) tasks.

  `step` (updates so far, or any counter) seeds the sampling: the same tasks
  every time, fresh draws each step.
  """
  seeds, row_offset = process_share(envs.split_seeds('eval', c.eval.num_tasks), 1)
  r = rollout.collect(env, seeds, functools.partial(sampler, params), tokenizer,
                      jax.random.fold_in(jax.random.key(c.seed + 1), step),
                      max_steps=c.env.max_steps, history=c.rollout.history,
                      prompt_len=c.rollout.prompt_len, success_reward=c.credit.success_reward,
                      row_offset=row_offset)
  return episode_metrics('eval', r)
