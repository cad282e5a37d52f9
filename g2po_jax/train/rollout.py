"""Multi-turn group rollouts: the host loop around the jitted sampler.

Each environment step of each trajectory becomes one training sample (its
prompt, the sampled response with the sampler's log-probs) and one row of the
trajectory arrays the estimators read (reward, valid, state keys). Finished
environments stop stepping; the sampler pads the shrinking batch of active
ones to a few bucket sizes, so nothing recompiles.

State keys come from the environments: each TimeStep carries the 64-bit key
of its state text (`envs.TimeStep.key`, computed inside `env.step`). With
exact matching (the default) the rollout keeps those keys only (the state
key, the true key and the mask: 17 bytes per padded step) and never a state
text; the other matchers (`graph.make_matcher`) read the texts, so the texts
are kept for them until the batch is keyed.
"""

from collections.abc import Callable, Sequence
import dataclasses
import time

import jax
import numpy as np

from g2po_jax import distributed
from g2po_jax import envs
from g2po_jax import graph as graph_lib
from g2po_jax import protocol as protocol_lib
from g2po_jax import sampling
from g2po_jax import tokenizers

# (tokens [b, P], lengths [b], rng, row_ids [b]) -> Samples of numpy arrays
# with b rows; row i draws with fold_in(rng, row_ids[i]) (`sampling.Sampler`).
SampleFn = Callable[[np.ndarray, np.ndarray, jax.Array, np.ndarray], sampling.Samples]


@dataclasses.dataclass
class Rollouts:
  """One batch of trajectories on the host (B trajectories, T = max steps).

  The trajectory arrays are [B, T]; the S samples are the real steps in
  row-major (trajectory, step) order.
  """
  seeds: np.ndarray          # [B] int64 task seed (= the task group)
  task_types: list[str]      # [B]
  reward: np.ndarray         # [B, T] float32, a win scaled to success_reward
  env_reward: np.ndarray     # [B, T] float32, the environment's own reward (a win is 1)
  valid: np.ndarray          # [B, T] bool, a well-formed, admissible action
  format_error: np.ndarray   # [B, T] bool, the response broke the protocol's format
  mask: np.ndarray           # [B, T] bool, a prefix per row
  state_key: np.ndarray      # [B, T] uint64 key of the state acted in (the matcher's)
  next_key: np.ndarray       # [B, T] uint64 key of the state reached
  true_key: np.ndarray       # [B, T] uint64 exact key of the true state acted in
  won: np.ndarray            # [B] bool
  prompt_ids: np.ndarray     # [S, P] int32, right-padded prompts
  prompt_lengths: np.ndarray  # [S] int32
  response_ids: np.ndarray   # [S, N] int32
  response_mask: np.ndarray  # [S, N] bool
  response_logp: np.ndarray  # [S, N] float32, sampler log-probs
  response_stopped: np.ndarray  # [S] bool, ended by a stop token/string (not the limit)
  sample_index: np.ndarray   # [S] int32, b * T + t
  sample_seconds: float = 0.0
  env_seconds: float = 0.0
  matching_seconds: float = 0.0  # time to key this batch's states (the matcher's, unless exact)
  unique_prompts: int = 0        # distinct prompts summed over the steps' sampler calls
  unique_prompt_tokens: int = 0  # their tokens (what a sampler sharing prompts prefills)

  @property
  def lengths(self) -> np.ndarray:
    return self.mask.sum(1)

  @property
  def num_response_tokens(self) -> int:
    return int(self.response_mask.sum())


def collect(env: envs.BatchEnv, seeds: Sequence[int], sample_fn: SampleFn,
            tokenizer: tokenizers.Tokenizer, protocol: protocol_lib.Protocol, rng: jax.Array, *,
            max_steps: int, history: int, prompt_len: int, success_reward: float,
            row_offset: int = 0,
            state_keys: graph_lib.Matcher = graph_lib.exact_keys) -> Rollouts:
  """Runs one episode per seed (repeat a seed to get a group of attempts).

  Trajectory i samples with the ids row_offset + i, so its draws depend on
  its place in the whole (all-process) batch, not on who else is still
  running. With several processes every process calls this on its own
  seeds; they step together (the sampler is a collective) until every
  process's episodes are done.

  Args:
    env: the batched environment (reset here).
    seeds: [B] task seeds.
    sample_fn: draws one response per prompt (see SampleFn).
    tokenizer: encodes prompts, decodes responses.
    protocol: writes the prompts and parses the responses into actions; a
      response that breaks its format is sent as '' (inadmissible) and
      counted in `format_error`.
    rng: a PRNG key; step t samples with fold_in(rng, t).
    max_steps: T, the episode limit (truncation counts as failure).
    history: (observation, action) pairs shown in each prompt.
    prompt_len: a prompt longer than this many tokens shows fewer history
      steps, and is then cut from the left.
    success_reward: the reward a win (env reward 1.0) is scaled to.
    row_offset: global index of this process's first trajectory.
    state_keys: turns the state texts of each task group into state keys
      (`graph.make_matcher`). `graph.exact_keys` (the default) is not called:
      the TimeSteps' own keys equal its keys, so no state text is kept. The
      true states are always keyed exactly, by the TimeSteps' `true_key`.
  Returns:
    Rollouts of B trajectories.
  """
  b = len(seeds)
  t_env = time.perf_counter()
  steps = env.reset(seeds)
  env_seconds = time.perf_counter() - t_env
  sample_seconds = 0.0
  env_reward = np.zeros((b, max_steps), np.float32)
  valid = np.zeros((b, max_steps), bool)
  format_error = np.zeros((b, max_steps), bool)
  mask = np.zeros((b, max_steps), bool)
  won = np.zeros(b, bool)
  pairs = [[] for _ in range(b)]            # (observation, action) per trajectory
  # The environments' keys (TimeStep.key) of the states acted in, then of the
  # final state; the true keys of the states acted in. State texts only for
  # a matcher that reads them.
  keys = np.zeros((b, max_steps + 1), np.uint64)
  true_key = np.zeros((b, max_steps), np.uint64)
  state_texts = None if state_keys is graph_lib.exact_keys else [[] for _ in range(b)]
  samples = []                              # (b, t, prompt, response tokens, logp, stopped)
  unique_prompts = unique_prompt_tokens = 0
  active = [not s.done for s in steps]
  for t in range(max_steps):
    live = [i for i in range(b) if active[i]]
    if distributed.agree_max([len(live)])[0] == 0:
      break
    render = lambda i, shown: protocol.prompt(
        tokenizer, task=steps[i].task, history=pairs[i], observation=steps[i].observation,
        admissible=steps[i].admissible, step=t, max_history=shown)
    ids, lengths = encode_prompts(tokenizer, render, live, history, prompt_len)
    first = np.unique(graph_lib.hash_tokens(ids, lengths), return_index=True)[1]
    unique_prompts += len(first)
    unique_prompt_tokens += int(lengths[first].sum())
    t0 = time.perf_counter()
    out = sample_fn(ids, lengths, jax.random.fold_in(rng, t),
                    row_offset + np.asarray(live, np.int64))
    sample_seconds += time.perf_counter() - t0
    actions = [None] * b
    texts = tokenizer.decode_many([out.tokens[j][out.mask[j]] for j in range(len(live))])
    for j, i in enumerate(live):
      parsed = protocol.parse(texts[j])
      actions[i] = parsed.env_action
      format_error[i, t] = parsed.format_error
    t0 = time.perf_counter()
    results = env.step(actions)
    env_seconds += time.perf_counter() - t0
    for j, i in enumerate(live):
      res = results[i]
      env_reward[i, t] = res.reward
      valid[i, t] = res.valid and not format_error[i, t]
      mask[i, t] = True
      won[i] |= res.won
      keys[i, t] = steps[i].key
      true_key[i, t] = steps[i].true_key
      if state_texts is not None:
        state_texts[i].append(steps[i].state_key)
      pairs[i].append((steps[i].observation, actions[i]))
      samples.append((i, t, ids[j, :lengths[j]], out.tokens[j], out.mask[j], out.logp[j],
                      out.done[j]))
      steps[i] = res
      active[i] = not res.done
  for i, end in enumerate(mask.sum(1).tolist()):   # the state the last action reached
    keys[i, end] = steps[i].key
    if state_texts is not None:
      state_texts[i].append(steps[i].state_key)
  r = _assemble(np.asarray(seeds, np.int64), [env.task_type(i) for i in range(b)],
                env_reward, success_reward, valid, format_error, mask, won, keys, true_key,
                state_texts, state_keys, samples, prompt_len, sample_seconds, env_seconds)
  r.unique_prompts, r.unique_prompt_tokens = unique_prompts, unique_prompt_tokens
  return r


def encode_prompts(tokenizer: tokenizers.Tokenizer, render: Callable[[int, int], str],
                   rows: Sequence[int], history: int, prompt_len: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Encodes render(row, history) for each row into [len(rows), prompt_len].

  A prompt over `prompt_len` tokens is rendered again with fewer history
  steps (the oldest go first) before anything is cut: cutting from the left
  would drop the task and, with a chat template, the system header. One
  that is too long even without history loses its first tokens.
  """
  texts = [render(i, history) for i in rows]
  encoded = tokenizer.encode_many(texts)
  for j, i in enumerate(rows):
    shown = history
    while len(encoded[j]) > prompt_len and shown > 0:
      shown -= 1
      encoded[j] = tokenizer.encode(render(i, shown))
  ids = np.full((len(rows), prompt_len), tokenizer.pad_id, np.int32)
  lengths = np.zeros(len(rows), np.int32)
  for j, seq in enumerate(encoded):
    seq = seq[-prompt_len:]
    ids[j, :len(seq)] = seq
    lengths[j] = len(seq)
  return ids, lengths


def state_key_arrays(keys: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The state and next-state keys of each step, from each trajectory's states.

  Args:
    keys: [B, T + 1] uint64. Row b: the keys of the states its steps act in,
      then (at mask[b].sum()) of the state its last step reached.
    mask: [B, T] bool, a prefix per row.
  Returns:
    (state_key, next_key), each [B, T] uint64, 0 on padding.
  """
  return np.where(mask, keys[:, :-1], 0), np.where(mask, keys[:, 1:], 0)


def _assemble(seeds, task_types, env_reward, success_reward, valid, format_error, mask, won,
              keys, true_key, state_texts, state_keys, samples, prompt_len, sample_seconds,
              env_seconds) -> Rollouts:
  b, t = mask.shape
  t0 = time.perf_counter()
  if state_texts is not None:               # one matcher call over every state text
    live = np.concatenate([np.ones((b, 1), bool), mask], 1)   # [B, T + 1] states
    rows = np.repeat(np.arange(b), [len(x) for x in state_texts])
    keys = np.zeros_like(keys)
    keys[live] = state_keys([x for row in state_texts for x in row], seeds[rows])
  state_key, next_key = state_key_arrays(keys, mask)
  matching_seconds = time.perf_counter() - t0
  samples.sort(key=lambda s: (s[0], s[1]))
  s = len(samples)
  n = samples[0][3].shape[0] if samples else 1
  prompt_ids = np.zeros((s, prompt_len), np.int32)
  prompt_lengths = np.zeros(s, np.int32)
  response_ids = np.zeros((s, n), np.int32)
  response_mask = np.zeros((s, n), bool)
  response_logp = np.zeros((s, n), np.float32)
  response_stopped = np.zeros(s, bool)
  sample_index = np.zeros(s, np.int32)
  for r, (i, step, prompt, tokens, tmask, logp, stopped) in enumerate(samples):
    prompt_ids[r, :len(prompt)] = prompt
    prompt_lengths[r] = len(prompt)
    response_ids[r], response_mask[r], response_logp[r] = tokens, tmask, logp
    response_stopped[r] = stopped
    sample_index[r] = i * t + step
  return Rollouts(
      seeds=seeds, task_types=task_types, reward=success_reward * env_reward,
      env_reward=env_reward, valid=valid, format_error=format_error, mask=mask,
      state_key=state_key, next_key=next_key, true_key=true_key,
      won=won, prompt_ids=prompt_ids, prompt_lengths=prompt_lengths,
      response_ids=response_ids, response_mask=response_mask, response_logp=response_logp,
      response_stopped=response_stopped, sample_index=sample_index,
      sample_seconds=sample_seconds, env_seconds=env_seconds,
      matching_seconds=matching_seconds)
