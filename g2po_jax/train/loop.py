"""The training loop: rollouts on the host, jitted credit and updates on the devices.

  setup:        config checks, mesh, environment, policy, optimizer, the
                jitted functions, resume from the newest checkpoint
  iteration i:  sample tasks -> group rollouts (host loop around the jitted
                sampler) -> graph arrays and mini-batches (host) -> the
                advantages, once (device) -> epochs x mini-batches of the
                PPO step (device) -> metrics, eval, checkpoint

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
import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import optax

from g2po_jax import distributed
from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax import protocol as protocol_lib
from g2po_jax import sampling
from g2po_jax import stopping
from g2po_jax import viz
from g2po_jax.models import sharding
from g2po_jax.train import batch as batch_lib
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import config as config_lib
from g2po_jax.train import evaluate as evaluate_lib
from g2po_jax.train import metrics as metrics_lib
from g2po_jax.train import policy as policy_lib
from g2po_jax.train import rollout
from g2po_jax.train import step as step_lib
from g2po_jax.train import workdir as workdir_lib

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding


def task_seeds(c: mlc.ConfigDict, iteration: int) -> np.ndarray:
  """[num_tasks * group_size] train-split seeds of iteration i, each repeated."""
  rng = np.random.default_rng([c.seed, iteration, 0])
  index = rng.integers(0, 10**9 - 1, c.rollout.num_tasks)
  seeds = np.array([envs.split_seeds('train', 1, int(i))[0] for i in index])
  return np.repeat(seeds, c.rollout.group_size)


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


@dataclasses.dataclass
class Run:
  """Everything `setup` builds for the iterations of one training run."""
  c: mlc.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  env: envs.BatchEnv
  matcher: graph_lib.Matcher         # state texts -> state keys (graph.matching)
  policy: policy_lib.Policy          # graphdef and tokenizer (the state owns params)
  protocol: protocol_lib.Protocol
  state: step_lib.TrainState
  schedule: optax.Schedule
  sampler: sampling.Sampler
  eval_sampler: sampling.Sampler
  train_step: object                 # jitted (state, mb) -> (state, metrics)
  advantage_fn: object               # jitted (traj, values) -> (adv, targets, stats)
  values_fn: object                  # jitted (params, mb) -> [R] critic values
  ckpt: ckpt_lib.Checkpointer
  writer: metrics_lib.Writer
  preemption: _Preemption
  lock: workdir_lib.Lock | None      # the workdir's lock (process 0)
  start: int                         # the first iteration to run
  bad_in_a_row: int = 0              # non-finite updates in a row so far

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def to_device(self, tree):
    """This process's rows of a batch -> global arrays split over the mesh."""
    return distributed.global_batch(tree, lambda x: sharding.batch_sharding(self.mesh, x.ndim))


def setup(c: mlc.ConfigDict, workdir: str) -> Run:
  """Checks the config, builds the run and resumes `workdir` if it holds checkpoints."""
  config_lib.validate(c)
  config_lib.validate_here(c, jax.device_count())
  if '://' in workdir:
    raise config_lib.ConfigError(
        f'--workdir must be a filesystem path (every process of a multi-host run sees it '
        f'at the same path, e.g. NFS or a bucket mounted with gcsfuse); got {workdir!r}.')
  lock = workdir_lib.prepare(workdir, lock=jax.process_index() == 0)
  unused = config_lib.unused_credit_options(c)
  if unused:
    logging.warning('credit options %s do not apply to %r and are ignored.', unused,
                    c.credit.name)
  mesh = sharding.make_mesh(c.mesh.data, c.mesh.fsdp)
  config_lib.validate_for_mesh(c, sharding.batch_shards(mesh), jax.process_count())
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(c.to_json_best_effort(indent=2))
  # After jax.distributed.initialize, which installs a SIGTERM handler of its
  # own that this one replaces.
  preemption = _Preemption()
  env = envs.make(c.env.name, **c.env.kwargs)
  policy = policy_lib.init_policy(c, env, mesh)
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
  policy.params = None  # the state owns them now
  ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=c.ckpt.keep)
  start = 0
  restored = ckpt.restore_latest(ckpt_lib.abstract(state))
  if restored is not None:
    state, record = restored
    start = record['iteration'] + 1
    logging.info('resumed %s at iteration %d', workdir, start)
  if start == 0 and jax.process_index() == 0:
    policy.tokenizer.save(os.path.join(workdir, 'tokenizer'))

  protocol = make_protocol(c, policy.tokenizer)
  config_lib.warn_if_prompts_lose_the_task(c, env, policy.tokenizer, protocol)
  stop_ids, stop_table = stopping.for_protocol(policy.tokenizer, protocol)
  sample_config = sampling.SamplingConfig(
      max_new_tokens=c.rollout.max_new_tokens, temperature=c.rollout.temperature,
      top_k=c.rollout.top_k, top_p=c.rollout.top_p, stop_ids=stop_ids,
      pad_id=policy.tokenizer.pad_id)
  eval_config = dataclasses.replace(sample_config, temperature=c.eval.temperature)
  # Explicit shardings: the state keeps its layout, metrics come back replicated.
  train_step = jax.jit(step_lib.make_train_step(
      policy.graphdef, tx, clip=c.ppo.clip, kl_coef=c.ppo.kl_coef,
      entropy_coef=c.ppo.entropy_coef, value_coef=c.ppo.value_coef,
      action_ratio=config_lib.action_ratio(c), temperature=c.rollout.temperature,
      logit_chunk=c.ppo.logit_chunk),
      out_shardings=(state_sharding, replicated), donate_argnums=(0,))
  advantage_fn = jax.jit(step_lib.make_advantage_fn(c.credit.name, config_lib.credit_options(c)),
                         out_shardings=replicated)
  values_fn = jax.jit(functools.partial(step_lib.state_values, policy.graphdef,
                                        chunk=c.ppo.logit_chunk))
  # Events past the checkpoint are logged again by the iterations that redo
  # them (all of them when there is no checkpoint: the baseline eval too).
  writer = metrics_lib.Writer(workdir, purge_after=start if start else -1)
  return Run(c=c, workdir=workdir, mesh=mesh, env=env, matcher=config_lib.make_matcher(c, env),
             policy=policy, protocol=protocol, state=state, schedule=schedule,
             sampler=sampling.Sampler(policy.graphdef, sample_config, mesh=mesh,
                                      stop_table=stop_table,
                                      share_prompts=c.rollout.share_prompts),
             eval_sampler=sampling.Sampler(policy.graphdef, eval_config, mesh=mesh,
                                           stop_table=stop_table,
                                           share_prompts=c.rollout.share_prompts),
             train_step=train_step, advantage_fn=advantage_fn, values_fn=values_fn,
             ckpt=ckpt, writer=writer, preemption=preemption, lock=lock, start=start)


def make_protocol(c: mlc.ConfigDict, tokenizer) -> protocol_lib.Protocol:
  """The config's prompt protocol; think_action needs a chat template."""
  if c.rollout.protocol == 'think_action' and tokenizer.chat_template is None:
    raise config_lib.ConfigError(
        'rollout.protocol=think_action renders prompts with a chat template, and this '
        "policy's tokenizer has none: use model.tokenizer=bpe or qwen2.5 (or a tokenizer "
        'directory whose tokenizer_config.json has a chat_template), or rollout.protocol=line.')
  return protocol_lib.make_protocol(c.rollout.protocol, c.env.name,
                                    system_prompt=c.rollout.system_prompt)


def critic_values(run: Run, mbs: list[step_lib.Minibatch], where: list[np.ndarray],
                  shape: tuple[int, int]) -> np.ndarray:
  """[B, T] critic values of every process's samples (PPO with a critic)."""
  flat = np.zeros(shape[0] * shape[1], np.float32)
  spec = lambda x: sharding.batch_sharding(run.mesh, x.ndim).spec
  for mb, w in zip(mbs, where):
    with jax.transfer_guard('disallow'):
      v = run.values_fn(run.state.params, mb)
    v = distributed.local_rows(v, run.mesh, spec)[:, None]           # [R_local, 1]
    flat[w[w >= 0]] = np.broadcast_to(v, w.shape)[w >= 0]
  # Each process filled its own samples; the others' entries are 0.
  return distributed.gather_rows(flat[None]).sum(0).reshape(shape)


def run_iteration(run: Run, it: int) -> dict[str, float]:
  """Runs iteration `it` (0-based): rollouts, credit, updates; returns its metrics."""
  c = run.c
  t_iter = time.perf_counter()
  # ------------------------------------------------------------ rollouts (host)
  seeds, row_offset = evaluate_lib.process_share(task_seeds(c, it), c.rollout.group_size)
  r = rollout.collect(run.env, seeds, functools.partial(run.sampler, run.state.params),
                      run.policy.tokenizer, run.protocol,
                      jax.random.fold_in(jax.random.key(c.seed), it), row_offset=row_offset,
                      state_keys=run.matcher, **config_lib.rollout_options(c))
  t_rollout = time.perf_counter() - t_iter

  # ------------------------------------------- graph arrays, mini-batches (host)
  t0 = time.perf_counter()
  local = batch_lib.trajectories(r, c.rollout.history if c.credit.name == 'hgpo' else None)
  traj = batch_lib.gather_trajectories(local)
  stats = graph_lib.graph_stats(traj.graph, traj.mask)
  t_graph = time.perf_counter() - t0
  t0 = time.perf_counter()
  shards = sharding.batch_shards(run.mesh) // jax.process_count()
  mbs, where, packing = batch_lib.minibatches(
      r, minibatch_size=c.ppo.minibatch_size, prompt_cap=c.rollout.prompt_len, shards=shards,
      padded_steps=local.mask.shape[1], row_offset=jax.process_index() * local.mask.shape[0],
      rng=np.random.default_rng([c.seed, it, 1, jax.process_index()]),
      pack=c.ppo.pack_shared_prompts)
  t_batch = time.perf_counter() - t0

  # ------------------------------------------------- advantages, once (device)
  t0 = time.perf_counter()
  critic = None
  if c.credit.name == 'ppo':
    critic = critic_values(run, [run.to_device(mb) for mb in mbs], where, traj.mask.shape)
  traj_dev, critic_dev = jax.device_put((traj, critic), run.replicated)
  with jax.transfer_guard('disallow'):
    adv, targets, adv_stats = run.advantage_fn(traj_dev, critic_dev)
  adv, adv_stats = distributed.fetch(adv), jax.device_get(adv_stats)
  targets = None if targets is None else distributed.fetch(targets)
  t_credit = time.perf_counter() - t0
  mbs = [run.to_device(batch_lib.with_advantages(mb, w, adv, targets))
         for mb, w in zip(mbs, where)]
  last = it + 1 == c.num_iterations
  if (jax.process_index() == 0 and c.graph_image_every
      and ((it + 1) % c.graph_image_every == 0 or last)):
    picture_of_a_group(c, run.workdir, run.writer, it + 1, r, adv)

  # ------------------------------------------------------------- update (device)
  t0 = time.perf_counter()
  step_metrics = []
  for _ in range(c.ppo.epochs):
    for mb in mbs:
      with jax.transfer_guard('disallow'):
        run.state, m = run.train_step(run.state, mb)
      step_metrics.append(m)
    # Bounded queues of async collectives on fake CPU devices can deadlock.
    jax.block_until_ready(run.state.step)
  step_metrics = jax.device_get(step_metrics)
  t_update = time.perf_counter() - t0

  # ------------------------------------------------------------------- metrics
  finite = np.array([m.pop('finite') for m in step_metrics])
  run.bad_in_a_row, longest_bad = count_bad_steps(run.bad_in_a_row, finite)
  values = {f'train/{k}': float(np.mean([m[k] for m in step_metrics])) for k in step_metrics[0]}
  values.update({k: float(v) for k, v in adv_stats.items()})
  values['train/nonfinite_updates'] = float((~finite).sum())
  values['train/lr'] = float(run.schedule(int(jax.device_get(run.state.step))))
  values.update(evaluate_lib.episode_metrics('rollout', r))
  values.update({f'graph/{k}': float(v) for k, v in stats.items() if np.isscalar(v)})
  matched = graph_lib.matching_stats(*(distributed.gather_rows(x) for x in (
      r.seeds, r.state_key, r.true_key, r.mask)))
  values.update({f'matching/{k}': v for k, v in matched.items()})
  values.update(sharing_metrics(c, r, packing))
  t_total = time.perf_counter() - t_iter
  # Every sample's response is scored once per epoch.
  sampled_tokens = distributed.gather_rows(np.array([r.num_response_tokens])).sum()
  values.update({
      'time/rollout': t_rollout, 'time/sampling': r.sample_seconds, 'time/env': r.env_seconds,
      'time/matching': r.matching_seconds, 'time/graph': t_graph, 'time/batch': t_batch,
      'time/credit': t_credit, 'time/update': t_update, 'time/iteration': t_total,
      'time/graph_credit_fraction': (t_graph + t_credit) / t_total,
      'throughput/env_steps_per_s': values['rollout/env_steps'] / t_rollout,
      'throughput/sampled_tokens_per_s': sampled_tokens / max(r.sample_seconds, 1e-9),
      'throughput/train_tokens_per_s': sampled_tokens * c.ppo.epochs / t_update,
  })
  if longest_bad >= c.ppo.max_bad_steps:
    values['train/bad_in_a_row'] = float(longest_bad)
  return values


def sharing_metrics(c: mlc.ConfigDict, r: rollout.Rollouts,
                    packing: batch_lib.Packing) -> dict[str, float]:
  """How many samples share a prompt, and the tokens sharing saved (all processes)."""
  samples, unique, prompt_tokens, unique_tokens, rows, train, unpacked = (
      distributed.gather_rows(np.array([[
          len(r.sample_index), r.unique_prompts, int(r.prompt_lengths.sum()),
          r.unique_prompt_tokens, packing.rows, packing.tokens,
          packing.tokens_unpacked]], np.int64))).sum(0)
  samples = max(samples, 1)
  return {
      'share/unique_prompts_per_sample': unique / samples,
      'share/update_rows_per_sample': rows / samples,
      'share/prefill_tokens_saved': float(prompt_tokens - unique_tokens
                                          if c.rollout.share_prompts else 0),
      'share/train_tokens_saved': float(unpacked - train),
  }


def train(c: mlc.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains per config `c` in `workdir` (resuming it if it holds checkpoints).

  With several processes (after `jax.distributed.initialize`) every process
  runs this with the same config and workdir: each steps its own task
  groups, and only process 0 writes logs.

  Returns:
    The last iteration's metrics.
  """
  run = setup(c, workdir)
  progress = metrics_lib.Progress(c.num_iterations, run.start,
                                  show_format=c.rollout.protocol != 'line')
  values = {}
  try:
    if run.start == 0 and c.eval.every:
      # The starting point (the warm start), so a curve shows what RL added.
      baseline = evaluate_lib.evaluate(c, run.env, run.eval_sampler, run.state.params,
                                       run.policy.tokenizer, run.protocol, 0)
      run.writer.scalars(0, baseline)
      logging.info('before training: eval success %.2f on %d unseen tasks',
                   baseline['eval/success'], c.eval.num_tasks)
    for it in range(run.start, c.num_iterations):
      values = run_iteration(run, it)
      last = it + 1 == c.num_iterations
      if c.eval.every and ((it + 1) % c.eval.every == 0 or last):
        t0 = time.perf_counter()
        values.update(evaluate_lib.evaluate(c, run.env, run.eval_sampler, run.state.params,
                                            run.policy.tokenizer, run.protocol, it + 1))
        values['time/eval'] = time.perf_counter() - t0
      if (it + 1) % c.log_every == 0 or last:
        run.writer.scalars(it + 1, values)
      progress.log(it, values)
      if 'train/bad_in_a_row' in values:
        run.writer.flush()
        raise FloatingPointError(
            f'{int(values["train/bad_in_a_row"])} updates in a row had a non-finite loss or '
            f'gradient and were skipped (limit ppo.max_bad_steps={c.ppo.max_bad_steps}); '
            f'stopping after iteration {it + 1}, whose metrics are logged; no checkpoint of '
            f'it is saved. Check the rewards, or lower optim.lr.')
      preempted = run.preemption.agreed()
      if (it + 1) % c.ckpt.every == 0 or last or preempted:
        # On disk before the checkpoint that says this iteration is done.
        run.writer.flush()
        run.ckpt.save(it, run.state, {'iteration': it, 'seed': c.seed})
      if preempted:
        logging.warning('preempted: checkpoint of iteration %d saved; exiting.', it + 1)
        break
  finally:
    run.preemption.close()
    run.ckpt.close()
    run.writer.close()
    run.env.close()
    if run.lock is not None:
      run.lock.release()
  # Equal in every process when the parameters are replicated over processes
  # (mesh.fsdp within one host): a check that replicas did not drift apart.
  logging.info('parameter digest of process %d of %d: %s', jax.process_index(),
               jax.process_count(), distributed.local_digest(run.state.params))
  return values


def picture_of_a_group(c: mlc.ConfigDict, workdir: str, writer: metrics_lib.Writer,
                       step: int, r: rollout.Rollouts, advantages: np.ndarray) -> None:
  """Saves this process's batch (workdir/batches) and logs one task group's
  state-transition graph to TensorBoard as an image."""
  b, t = r.mask.shape
  batch = viz.Batch(group=r.seeds, state_key=r.state_key, next_key=r.next_key,
                    reward=r.reward, valid=r.valid, mask=r.mask,
                    advantages=np.asarray(advantages)[:b, :t],
                    success_reward=c.credit.success_reward,
                    gamma=0.95 if c.credit.gamma is None else c.credit.gamma,
                    estimator=c.credit.name, iteration=step)
  viz.save_batch(viz.batch_path(workdir, step), batch)
  writer.image(step, 'graph/task_group', viz.render_batch(batch))
