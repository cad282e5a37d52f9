"""Batched sampling with a preallocated KV cache, and log-probs of given tokens.

Two pure functions of (graphdef, params), meant to run under `jax.jit`:

  generate        prompts [B, P] -> up to max_new_tokens sampled tokens per
                  row, with their log-probs and masks.
  token_logprobs  rows of [prompt | response] [B, L] -> per-token log-probs,
                  entropies and values in one forward pass (the PPO loss).

Both define a token's log-prob as log softmax(logits / temperature), so
`generate`'s log-probs equal `token_logprobs(..., temperature)` on the same
tokens up to float32 rounding, and PPO ratios start at 1. With top-k / top-p
the draw is restricted to the kept tokens but the log-prob is still the
untruncated one above (the quantity the trainer can recompute). Greedy
decoding (temperature 0) reports temperature-1 log-probs.

`Sampler` is the host-side driver: it pads prompts to bucketed lengths and
batch sizes, so a shrinking set of live environments and varying prompt
lengths reuse a handful of compiled programs.

Stopping: a row stops after emitting one of `stop_ids` (e.g. the eos id),
or right after the token that completes a stop string (e.g. '</action>',
however the tokenizer splits it): `g2po_jax.stopping` tabulates an automaton
over the tokens on the host, and the decode loop steps it with one gather
per token, on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from typing import NamedTuple

import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from g2po_jax import distributed
from g2po_jax import graph as graph_lib
from g2po_jax.models import qwen2
from g2po_jax.models import sharding

Array = chex.Array
P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding

DEFAULT_LENGTH_BUCKETS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How to decode; static under jit (a new config compiles a new program).

  Attributes:
    max_new_tokens: tokens generated per row at most.
    temperature: softmax temperature; 0 means greedy (argmax).
    top_k: sample only among the k most likely tokens; 0 = off.
    top_p: sample only from the smallest set of most likely tokens whose
      probability reaches top_p (nucleus sampling); 1 = off.
    stop_ids: a row is done after emitting any of these (included in its
      output and mask).
    pad_id: written after a row is done, and used to pad prompts.
  """
  max_new_tokens: int
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  stop_ids: tuple[int, ...] = ()
  pad_id: int = 0

  def __post_init__(self):
    if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
      raise ValueError(f'max_new_tokens must be a positive int; got '
                       f'{self.max_new_tokens!r}.')
    if self.temperature < 0:
      raise ValueError(f'temperature must be >= 0; got {self.temperature}.')
    if not isinstance(self.top_k, int) or self.top_k < 0:
      raise ValueError(f'top_k must be an int >= 0; got {self.top_k!r}.')
    if not 0 < self.top_p <= 1:
      raise ValueError(f'top_p must lie in (0, 1]; got {self.top_p}.')
    if not (isinstance(self.stop_ids, tuple)
            and all(isinstance(i, int) and i >= 0 for i in self.stop_ids)):
      raise ValueError(f'stop_ids must be a tuple of ints >= 0 (hashable); got '
                       f'{self.stop_ids!r}.')
    if not isinstance(self.pad_id, int) or self.pad_id < 0:
      raise ValueError(f'pad_id must be an int >= 0; got {self.pad_id!r}.')


class Samples(NamedTuple):
  """What `generate` returns; N = max_new_tokens."""
  tokens: Array  # [B, N] int32, pad_id after a row is done
  logp: Array    # [B, N] float32, log softmax(logits / T) of each token; 0 off mask
  mask: Array    # [B, N] bool, True for generated tokens (the stop token included)
  done: Array    # [B] bool, the row emitted a stop id (False: cut by max_new_tokens)


class ScoredStats(NamedTuple):
  """What `scored_logprobs` returns for K scored tokens per row."""
  logp: Array            # [R, K] float32 log-prob of each scored token
  entropy: Array         # [R, K] float32 entropy of its predictive distribution
  values: Array | None   # [R] float32 value at value_pos, or None (no value head)


class TokenStats(NamedTuple):
  """What `token_logprobs` returns for rows of length L."""
  logp: Array            # [B, L-1] float32, log p(tokens[:, t+1] | tokens[:, :t+1])
  entropy: Array         # [B, L-1] float32, entropy of that predictive distribution
  values: Array | None   # [B, L-1] float32 value at position t, or None (no value head)


def _log_probs(logits: Array, temperature: float) -> Array:
  """log softmax(logits / T) in float32; T = 0 (greedy) counts as 1."""
  t = temperature if temperature > 0 else 1.0
  return jax.nn.log_softmax(logits.astype(jnp.float32) / t, axis=-1)


def token_logprobs(graphdef: nnx.GraphDef, params: nnx.State, tokens: Array,
                   mask: Array, temperature: float = 1.0) -> TokenStats:
  """Per-token log-probs, entropies and values of whole rows, one forward pass.

  A row's real tokens must be contiguous (padding only before and/or after
  them), so that position t + 1 follows position t. Padded positions give
  finite garbage: mask the results, e.g. with `mask[:, 1:] & is_response[:, 1:]`
  to score the response tokens.

  Args:
    graphdef, params: `nnx.split(model)` of a `Qwen2`.
    tokens: [B, L] int32 rows of [prompt | response].
    mask: [B, L] bool, True for real tokens.
    temperature: the sampling temperature the log-probs are taken at.
  Returns:
    TokenStats of [B, L-1] float32 arrays, position t scoring tokens[:, t+1].
  """
  chex.assert_rank([tokens, mask], 2)
  chex.assert_equal_shape([tokens, mask])
  chex.assert_type([tokens, mask], [int, bool])
  model = nnx.merge(graphdef, params)
  hidden = model.hidden_states(tokens, mask)[0][:, :-1]         # [B, L-1, D]
  logp_all = _log_probs(model.logits(hidden), temperature)     # [B, L-1, V]
  logp = jnp.take_along_axis(logp_all, tokens[:, 1:, None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  values = None if model.value_head is None else model.values(hidden)
  return TokenStats(logp, entropy, values)


def scored_logprobs(graphdef: nnx.GraphDef, params: nnx.State, tokens: Array, mask: Array,
                    positions: Array, segments: Array, score_pos: Array, score_token: Array,
                    value_pos: Array | None = None, temperature: float = 1.0,
                    chunk: int = 1024) -> ScoredStats:
  """Log-probs and entropies of chosen tokens only, in bounded memory.

  The train step scores a few hundred response tokens of rows holding up to
  thousands of prompt tokens. The LM head runs only at the scored positions
  (their hidden states are gathered first), `chunk` positions at a time
  under `jax.checkpoint`, so no [rows, length, vocabulary] array exists in
  the forward or the backward pass: peak memory is chunk x V floats.

  Args:
    graphdef, params: `nnx.split(model)` of a `Qwen2`.
    tokens, mask, positions, segments: [R, L] rows (see
      `Qwen2.hidden_states`; segments let one row pack a prompt and several
      responses).
    score_pos: [R, K] int32 column whose hidden state predicts each scored
      token (padding entries may point anywhere).
    score_token: [R, K] int32 the scored tokens.
    value_pos: [R] int32 column whose hidden state the value head reads
      (None: no values).
    temperature: the sampling temperature the log-probs are taken at.
    chunk: positions per LM-head block.
  Returns:
    ScoredStats with [R, K] log-probs and entropies (and [R] values).
  """
  chex.assert_rank([tokens, mask, positions, segments, score_pos, score_token], 2)
  chex.assert_equal_shape([tokens, mask, positions, segments])
  chex.assert_equal_shape([score_pos, score_token])
  model = nnx.merge(graphdef, params)
  hidden = model.hidden_states(tokens, mask, positions=positions, segments=segments)[0]
  r, k = score_pos.shape
  picked = jnp.take_along_axis(hidden, score_pos[..., None], axis=1)   # [R, K, D]
  n = r * k
  size = max(min(chunk, n), 1)
  pad = -n % size
  flat_h = jnp.pad(picked.reshape(n, -1), ((0, pad), (0, 0)))
  flat_y = jnp.pad(score_token.reshape(n), (0, pad))

  @jax.checkpoint  # the backward pass recomputes each block's logits
  def block(args):
    h, y = args
    logp_all = _log_probs(model.logits(h), temperature)                 # [C, V]
    logp = jnp.take_along_axis(logp_all, y[:, None], axis=-1)[:, 0]
    return logp, -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)

  logp, entropy = jax.lax.map(block, (flat_h.reshape(-1, size, flat_h.shape[-1]),
                                      flat_y.reshape(-1, size)))
  unflat = lambda x: x.reshape(-1)[:n].reshape(r, k)
  values = None
  if value_pos is not None and model.value_head is not None:
    values = model.values(jnp.take_along_axis(hidden, value_pos[:, None, None], axis=1)[:, 0])
  return ScoredStats(unflat(logp), unflat(entropy), values)


def draw_tokens(logits: Array, keys: Array, config: SamplingConfig) -> Array:
  """Draws one token per row of [B, V] float32 logits -> [B] int32.

  Greedy when config.temperature == 0; otherwise a categorical draw from
  softmax(logits / temperature) restricted by top_k and top_p. Row b draws
  with its own key keys[b], so a row's token does not depend on which other
  rows share the batch (its padding, bucket or sharding).
  """
  if config.temperature == 0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  scaled = logits / config.temperature
  if config.top_k:
    kth = jax.lax.top_k(scaled, config.top_k)[0][:, -1:]
    scaled = jnp.where(scaled < kth, -jnp.inf, scaled)
  if config.top_p < 1:
    desc = -jnp.sort(-scaled, axis=-1)
    probs = jax.nn.softmax(desc, axis=-1)
    # Keep a token if the mass strictly before it is below top_p (the most
    # likely token is always kept); ties at the threshold are all kept.
    kept = jnp.sum(jnp.cumsum(probs, axis=-1) - probs < config.top_p, axis=-1)
    threshold = jnp.take_along_axis(desc, kept[:, None] - 1, axis=-1)
    scaled = jnp.where(scaled < threshold, -jnp.inf, scaled)
  return jax.vmap(jax.random.categorical)(keys, scaled).astype(jnp.int32)


class _Loop(NamedTuple):
  step: Array           # [] int32, index of the token drawn next
  logits: Array         # [B, V] float32, predicting that token
  cache: qwen2.KVCache
  tokens: Array         # [B, N] int32
  logp: Array           # [B, N] float32
  mask: Array           # [B, N] bool
  done: Array           # [B] bool, stopped by a stop id or stop string
  stop_state: Array     # [B] int32, the stop-string automaton's state


def generate(graphdef: nnx.GraphDef, params: nnx.State, tokens: Array,
             mask: Array, keys: Array, config: SamplingConfig,
             stop_table: Array | None = None, limits: Array | None = None,
             prefill_index: Array | None = None) -> Samples:
  """Samples continuations of a padded batch of prompts with a KV cache.

  The prompts are prefilled in one forward pass into a cache of P + N slots;
  then each step draws one token per row and feeds it back through the
  cache. The loop is a `lax.while_loop` that exits as soon as every row is
  done. Rows whose mask is all False (batch padding) start done.

  Args:
    graphdef, params: `nnx.split(model)` of a `Qwen2`.
    tokens: [B, P] int32 prompts, padded on either side.
    mask: [B, P] bool, True for real prompt tokens.
    keys: [B] PRNG keys, one per row (unused when greedy); token i of row b
      is drawn with fold_in(keys[b], i).
    config: static sampling settings (N = config.max_new_tokens).
    stop_table: [S, V] int32 stop-string automaton (`stopping.stop_table`);
      a row is done right after the token that reaches its last state.
    limits: [B] int32, row b generates at most limits[b] tokens (<= N).
    prefill_index: [B] int32, row b continues prompt prefill_index[b]: then
      tokens and mask hold U distinct prompts [U, P], each prefilled once,
      and their KV caches are copied to the rows that share them. A row's
      tokens are those it would draw from its own copy of the prompt.
  Returns:
    Samples with [B, N] tokens, log-probs, mask and [B] done.
  """
  chex.assert_rank([tokens, mask], 2)
  chex.assert_equal_shape([tokens, mask])
  chex.assert_type([tokens, mask], [int, bool])
  u, p = tokens.shape
  b = u if prefill_index is None else prefill_index.shape[0]
  if keys.shape != (b,):
    raise ValueError(f'keys must hold one PRNG key per row, shape ({b},); got '
                     f'{keys.shape}. Use jax.random.split(key, {b}).')
  model = nnx.merge(graphdef, params)
  n = config.max_new_tokens
  stop_ids = jnp.asarray(config.stop_ids, jnp.int32)
  limits = jnp.full((b,), n, jnp.int32) if limits is None else limits
  accept = -1 if stop_table is None else stop_table.shape[0] - 1

  cache = qwen2.init_cache(model.config, u, p + n)
  hidden, cache = model.hidden_states(tokens, mask, cache, 0)
  last = p - 1 - jnp.argmax(mask[:, ::-1], axis=1)              # last real slot
  logits = model.logits(hidden[jnp.arange(u), last])            # [U, V]
  if prefill_index is not None:
    cache, logits, mask = jax.tree.map(lambda x: x[prefill_index], (cache, logits, mask))

  def active(s: _Loop) -> Array:
    return ~s.done & (s.step < limits)

  def body(s: _Loop) -> _Loop:
    step_keys = jax.vmap(jax.random.fold_in, (0, None))(keys, s.step)
    token = draw_tokens(s.logits, step_keys, config)
    logp = jnp.take_along_axis(_log_probs(s.logits, config.temperature),
                               token[:, None], axis=-1)[:, 0]
    live = active(s)
    token = jnp.where(live, token, config.pad_id)
    stopped = jnp.isin(token, stop_ids)
    stop_state = s.stop_state
    if stop_table is not None:
      stop_state = jnp.where(live, stop_table[stop_state, token], stop_state)
      stopped |= stop_state == accept
    done = s.done | (live & stopped)
    # The last step's forward pass is not needed; skipping it would cost a
    # cond per step for 1/N of the work.
    hidden, cache = model.hidden_states(token[:, None], live[:, None], s.cache,
                                        p + s.step)
    return _Loop(step=s.step + 1, logits=model.logits(hidden[:, 0]),
                 cache=cache,
                 tokens=s.tokens.at[:, s.step].set(token),
                 logp=s.logp.at[:, s.step].set(jnp.where(live, logp, 0.0)),
                 mask=s.mask.at[:, s.step].set(live),
                 done=done, stop_state=stop_state)

  init = _Loop(step=jnp.int32(0), logits=logits, cache=cache,
               tokens=jnp.full((b, n), config.pad_id, jnp.int32),
               logp=jnp.zeros((b, n), jnp.float32),
               mask=jnp.zeros((b, n), bool),
               done=~jnp.any(mask, axis=1),
               stop_state=jnp.zeros((b,), jnp.int32))
  out = jax.lax.while_loop(lambda s: (s.step < n) & jnp.any(active(s)), body, init)
  return Samples(out.tokens, out.logp, out.mask, out.done & jnp.any(mask, axis=1))


def _bucket(size: int, buckets: Sequence[int], name: str) -> int:
  for bucket in buckets:
    if bucket >= size:
      return bucket
  raise ValueError(f'{name} {size} exceeds the largest bucket {buckets[-1]}; '
                   f'truncate the prompts or add a larger bucket.')


class Sampler:
  """Host driver of `generate` on bucketed shapes. Returns numpy arrays.

  Prompts are right-padded to the smallest length bucket that fits the
  longest one, and the batch is padded with empty rows to the smallest batch
  bucket, so each (length bucket, batch bucket) pair compiles once.

  With a mesh, the batch is split over its ('data', 'fsdp') axes; params may
  be sharded any way, e.g. with `sharding.param_shardings`. With several
  processes, every process passes its own prompts (its environments); the
  processes agree on the buckets, the rows are assembled into one global
  batch, and each process gets its own rows back. Each process's share of
  the global batch is then a batch bucket, a multiple of its batch shards.

  `stop_table` (from `g2po_jax.stopping.stop_table`) adds stop strings; it
  is put on the devices once and passed to every call. With `share_prompts`
  the rows of a call that hold the very same prompt (hashed on the host) are
  prefilled once and decode from copies of its KV cache; each row still
  draws with its own key, so the tokens are those drawn without sharing.
  """

  def __init__(self, graphdef: nnx.GraphDef, config: SamplingConfig, *,
               length_buckets: Sequence[int] = DEFAULT_LENGTH_BUCKETS,
               batch_buckets: Sequence[int] = DEFAULT_BATCH_BUCKETS,
               mesh: jax.sharding.Mesh | None = None,
               stop_table: np.ndarray | None = None, share_prompts: bool = False):
    for name, buckets in (('length_buckets', length_buckets),
                          ('batch_buckets', batch_buckets)):
      if not buckets or list(buckets) != sorted(set(buckets)) or buckets[0] < 1:
        raise ValueError(f'{name} must be increasing positive ints; got '
                         f'{buckets}.')
    self.config = config
    self.share_prompts = share_prompts
    self.length_buckets = tuple(length_buckets)
    self._mesh = mesh
    if mesh is not None:
      local_shards = sharding.batch_shards(mesh) // jax.process_count()
      batch_buckets = [b for b in batch_buckets if b % local_shards == 0]
      if not batch_buckets:
        raise ValueError(f'no batch bucket is a multiple of the {local_shards} batch '
                         f'shards of this process.')
    self.batch_buckets = tuple(batch_buckets)
    self._stop_table = None
    if stop_table is not None:
      stop_table = np.asarray(stop_table, np.int32)
      if stop_table.ndim != 2 or stop_table.shape[0] < 2:
        raise ValueError(f'stop_table must be [states >= 2, vocab]; got {stop_table.shape}.')
      self._stop_table = (jax.device_put(stop_table) if mesh is None else
                          jax.make_array_from_process_local_data(
                              NamedSharding(mesh, P()), stop_table))

    def run(params, tokens, mask, rng, row_ids, limits, stop_table, prefill_index=None):
      keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, row_ids)
      return generate(graphdef, params, tokens, mask, keys, config, stop_table, limits,
                      prefill_index)

    self._generate = jax.jit(run)

  @property
  def num_compilations(self) -> int:
    """Programs compiled so far (one per distinct padded shape)."""
    return self._generate._cache_size()  # pylint: disable=protected-access

  def __call__(self, params: nnx.State, tokens: np.ndarray, lengths: np.ndarray,
               rng: Array, row_ids: np.ndarray | None = None,
               limits: np.ndarray | None = None) -> Samples:
    """Samples one continuation per prompt.

    Args:
      params: the model params (device arrays, possibly sharded).
      tokens: [B, L] int prompts, right-padded (`Tokenizer.encode_batch`).
      lengths: [B] int, prompt b is tokens[b, :lengths[b]]; each >= 1. B may
        be 0 (with several processes, one may have nothing left to sample).
      rng: a PRNG key, the same in every process.
      row_ids: [B] int, row b draws with fold_in(rng, row_ids[b]); give each
        trajectory its own id to make its draws independent of the batch
        it shares. Default: 0 .. B-1.
      limits: [B] int, row b generates at most limits[b] tokens (default:
        max_new_tokens); benchmarks use it to fix response lengths.
    Returns:
      Samples of numpy arrays with B rows and N = max_new_tokens columns.
    """
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
      raise ValueError(f'tokens must be [B, L] and lengths [B]; got '
                       f'{tokens.shape} and {lengths.shape}.')
    if not (np.issubdtype(tokens.dtype, np.integer)
            and np.issubdtype(lengths.dtype, np.integer)):
      raise ValueError(f'tokens and lengths must be integer arrays; got '
                       f'{tokens.dtype} and {lengths.dtype}.')
    if lengths.size and (lengths.min() < 1 or lengths.max() > tokens.shape[1]):
      raise ValueError(f'lengths must lie in [1, {tokens.shape[1]}]; got '
                       f'[{lengths.min()}, {lengths.max()}].')
    b = len(lengths)   # may be 0: a process with no live rows still takes part
    row_ids = np.arange(b) if row_ids is None else np.asarray(row_ids)
    if row_ids.shape != (b,):
      raise ValueError(f'row_ids must have shape [{b}]; got {row_ids.shape}.')
    n = self.config.max_new_tokens
    limits = np.full(b, n) if limits is None else np.asarray(limits)
    if limits.shape != (b,) or (b and (limits.min() < 0 or limits.max() > n)):
      raise ValueError(f'limits must be [{b}] ints in [0, {n}]; got {limits!r}.')
    if self.share_prompts:
      keys = graph_lib.hash_tokens(tokens, lengths)
      _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
      prompts, prompt_lengths = tokens[first], lengths[first]
    else:
      prompts, prompt_lengths, inverse = tokens, lengths, None
    u = len(prompt_lengths)
    bb, ub, pb = distributed.agree_max(
        [_bucket(max(b, 1), self.batch_buckets, 'batch size'),
         _bucket(max(u, 1), self.batch_buckets, 'batch size'),
         _bucket(int(lengths.max(initial=1)), self.length_buckets, 'prompt length')])
    rows = bb if inverse is None else ub
    padded = np.full((rows, pb), self.config.pad_id, np.int32)
    width = min(pb, tokens.shape[1])
    padded[:u, :width] = prompts[:, :width]
    mask = np.arange(pb) < np.pad(prompt_lengths, (0, rows - u))[:, None]
    ids = np.pad(row_ids.astype(np.int32), (0, bb - b))
    # Padding rows generate nothing (limit 0); without sharing they also
    # have empty prompts.
    inputs = [padded, mask, ids, np.pad(limits.astype(np.int32), (0, bb - b))]
    if inverse is not None:
      # Row b's prompt in the global batch of distinct prompts.
      offset = jax.process_index() * ub
      inputs.append(np.pad(inverse.reshape(-1).astype(np.int32), (0, bb - b)) + offset)
    if self._mesh is not None:
      inputs = distributed.global_batch(
          inputs, lambda x: sharding.batch_sharding(self._mesh, x.ndim))
    out = self._generate(params, *inputs[:2], rng, *inputs[2:4], self._stop_table,
                         *inputs[4:])
    if self._mesh is not None:
      out = distributed.local_rows(
          out, self._mesh, lambda x: sharding.batch_sharding(self._mesh, x.ndim).spec)
    return Samples(*(np.asarray(x)[:b] for x in jax.device_get(out)))
