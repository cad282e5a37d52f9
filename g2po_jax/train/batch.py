"""Rollouts -> the fixed-shape arrays of the train step (host: numpy, plus the
cross-process gathers of `g2po_jax.distributed`).

Trajectory arrays pad B and T to `graph.bucket_size` buckets (fixed per
run). Samples (alone, or packed by shared prompt) are shuffled and cut into
mini-batches that hold only real samples: the rows, the prompt width and
the response width are each rounded up to a bucket, so a run compiles the
train step a handful of times whatever its batches hold.
"""

from typing import NamedTuple

import jax
import numpy as np

from g2po_jax import demos
from g2po_jax import distributed
from g2po_jax import graph as graph_lib
from g2po_jax import protocol as protocol_lib
from g2po_jax import tokenizers
from g2po_jax.graph import Graph
from g2po_jax.train.rollout import encode_prompts
from g2po_jax.train.rollout import Rollouts
from g2po_jax.train.step import Minibatch, Trajectories

MIN_RESPONSE = 8     # smallest response-width bucket


def trajectories(r: Rollouts, history: int | None) -> Trajectories:
  """The estimators' view of this process's rollouts.

  Args:
    r: the iteration's rollouts.
    history: build HGPO's context levels for this prompt history (None: skip).
  """
  g = graph_lib.build_graph(r.seeds, r.state_key, r.next_key, r.mask, history=history)
  bp, tp = g.node.shape
  b, t = r.mask.shape
  pad = lambda x: np.pad(x, [(0, bp - b), (0, tp - t)])
  return Trajectories(reward=pad(r.reward), valid=pad(r.valid), mask=pad(r.mask), graph=g)


def gather_trajectories(traj: Trajectories) -> Trajectories:
  """Every process's trajectories as one batch, on every process (numpy).

  Process p's padded rows follow process p-1's. Its group, node and context
  ids are shifted past theirs, so ids stay distinct and the estimators see
  the batch exactly as one process holding every group would (task groups
  never straddle processes). A single process gets its input back.
  """
  p, n = jax.process_index(), jax.process_count()
  bp, tp = traj.mask.shape
  g = traj.graph
  num_nodes = g.node_group.shape[0]
  # Unused node slots point one past the last group of the whole batch.
  node_group = np.where(g.node_group < bp, g.node_group + p * bp, n * bp).astype(np.int32)
  context = None
  if g.context is not None:
    shifted = np.moveaxis(g.context + p * bp * tp, 1, 0)           # [B, K+1, T]
    context = np.moveaxis(distributed.gather_rows(shifted), 0, 1)
  graph = Graph(group=distributed.gather_rows(g.group + p * bp),
                node=distributed.gather_rows(g.node + p * num_nodes),
                next_node=distributed.gather_rows(g.next_node + p * num_nodes),
                node_group=distributed.gather_rows(node_group), context=context)
  return Trajectories(*(distributed.gather_rows(x) for x in
                        (traj.reward, traj.valid, traj.mask)), graph=graph)


def _pow2(n: int, minimum: int = 1) -> int:
  return 1 << max(max(n, minimum) - 1, 0).bit_length()


def prompt_width(longest: int, prompt_cap: int) -> int:
  """The prompt columns P of a batch: a power of two that fits the longest
  prompt, at most `prompt_cap` unless a prompt is longer."""
  return min(_pow2(longest), max(prompt_cap, longest))


def pack_rows(prompt_ids: np.ndarray, prompt_lengths: np.ndarray, response_ids: np.ndarray,
              response_mask: np.ndarray, response_logp: np.ndarray, members: np.ndarray, *,
              prompt: int, scored: int) -> dict[str, np.ndarray]:
  """Lays samples out as rows of one prompt and the responses that share it.

  Row r holds the prompt of its samples (members[r] all share one prompt),
  left-padded to end at column P-1 (P = `prompt`), then their responses one
  after the other. A response attends to the prompt and to itself only
  (`segments`), and its positions continue from the prompt's, so each
  response is scored exactly as in a row of its own. With one member per
  row this is the unpacked layout.

  Args:
    prompt_ids: [S, P0] int right-padded prompts; prompt_lengths [S] int.
    response_ids, response_mask, response_logp: [S, N] response tokens (a
      prefix of each row is real) and their sampler log-probs.
    members: [R, J] int sample indices, -1 for an empty slot; a row whose
      first slot is -1 is padding.
    prompt: P, at least the longest prompt.
    scored: K, at least the most response tokens of a row.
  Returns:
    The `Minibatch` layout fields: tokens, token_mask, positions, segments
    ([R, P + K]); score_pos, score_token, score_mask, score_sample, old_logp
    ([R, K]); value_pos ([R], P-1).
  """
  r, j = members.shape
  real = members >= 0
  first = np.maximum(members[:, 0], 0)
  plen = np.where(real[:, 0], prompt_lengths[first], 0)
  cols = np.arange(prompt)[None, :] - (prompt - plen)[:, None]
  live = cols >= 0
  width = prompt + scored
  tokens = np.zeros((r, width), np.int32)
  token_mask = np.zeros((r, width), bool)
  positions = np.zeros((r, width), np.int32)
  segments = np.zeros((r, width), np.int32)
  tokens[:, :prompt] = np.where(live, np.take_along_axis(
      prompt_ids[first], np.clip(cols, 0, prompt_ids.shape[1] - 1), 1), 0)
  token_mask[:, :prompt] = live
  positions[:, :prompt] = np.maximum(cols, 0)
  # Every real response token (row, slot, k), in row-major slot order.
  n = np.where(real, response_mask.sum(1)[np.maximum(members, 0)], 0)        # [R, J]
  start = np.cumsum(n, axis=1) - n                                           # [R, J]
  if n.sum(1).max(initial=0) > scored:
    raise ValueError(f'a row holds {n.sum(1).max()} response tokens; scored={scored}.')
  rows, slots = np.nonzero(n)
  count = n[rows, slots]
  rr, jj = np.repeat(rows, count), np.repeat(slots, count)
  k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
  ss = members[rr, jj]
  q = start[rr, jj] + k                                   # the token's scored slot
  col = prompt + q
  tokens[rr, col] = response_ids[ss, k]
  token_mask[rr, col] = True
  positions[rr, col] = plen[rr] + k
  segments[rr, col] = jj + 1
  score_pos = np.zeros((r, scored), np.int32)
  score_token = np.zeros((r, scored), np.int32)
  score_mask = np.zeros((r, scored), bool)
  score_sample = np.zeros((r, scored), np.int32)
  old_logp = np.zeros((r, scored), np.float32)
  score_pos[rr, q] = np.where(k == 0, prompt - 1, col - 1)   # the prompt's end starts each
  score_token[rr, q] = response_ids[ss, k]
  score_mask[rr, q] = True
  score_sample[rr, q] = jj
  old_logp[rr, q] = response_logp[ss, k]
  return dict(tokens=tokens, token_mask=token_mask, positions=positions, segments=segments,
              score_pos=score_pos, score_token=score_token, score_mask=score_mask,
              score_sample=score_sample, old_logp=old_logp,
              value_pos=np.full(r, prompt - 1, np.int32))


def sample_rows(prompt_ids: np.ndarray, prompt_lengths: np.ndarray, response_ids: np.ndarray,
                response_mask: np.ndarray, width: int) -> dict[str, np.ndarray]:
  """`pack_rows` with one sample per row and K = N (warm starts, benchmarks)."""
  s, n = response_ids.shape
  return pack_rows(prompt_ids, prompt_lengths, response_ids, response_mask,
                   np.zeros((s, n), np.float32), np.arange(s)[:, None], prompt=width, scored=n)


def demonstration_rows(played: list[demos.Demo], tokenizer: tokenizers.Tokenizer,
                       protocol: protocol_lib.Protocol, *, history: int, prompt_len: int,
                       rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """The warm start's rows: each state's prompt, labelled with the protocol's
  rendering of the oracle's next action (think_action: with a reasoning from
  the oracle's plan, `demos.reasoning`) and eos.

  Prompts are encoded as the rollouts encode them (too long: fewer history
  steps, then cut from the left).

  Returns:
    prompt ids [S, P], lengths [S], label ids [S, N], label mask [S, N].
  """
  render = lambda i, shown: protocol.prompt(
      tokenizer, task=played[i].task, history=played[i].history,
      observation=played[i].observation, admissible=played[i].admissible, step=played[i].step,
      max_history=shown)
  ids, lengths = encode_prompts(tokenizer, render, range(len(played)), history, prompt_len)
  responses = [protocol.render(d.plan[0], demos.reasoning(d.task, d.plan, rng)) for d in played]
  encoded = [e + [tokenizer.eos_id] for e in tokenizer.encode_many(responses)]
  n = max(len(e) for e in encoded)
  label_ids = np.zeros((len(encoded), n), np.int32)
  label_mask = np.zeros((len(encoded), n), bool)
  for row, e in enumerate(encoded):
    label_ids[row, :len(e)] = e
    label_mask[row, :len(e)] = True
  return ids, lengths, label_ids, label_mask


class Packing(NamedTuple):
  """What packing shared prompts saved in an iteration's update (this process)."""
  samples: int          # samples (one per environment step)
  rows: int             # rows they fill (distinct prompts, longer ones split)
  tokens: int           # real tokens the update reads per epoch
  tokens_unpacked: int  # the same samples one per row


def _rows_of(r: Rollouts, pack: bool, cap: int) -> list[np.ndarray]:
  """The samples of each row: alone, or grouped by identical prompt (hashed),
  a group split where its responses would pass `cap` tokens."""
  s = len(r.sample_index)
  if not pack:
    return [np.array([i]) for i in range(s)]
  keys = graph_lib.hash_tokens(r.prompt_ids, r.prompt_lengths)
  order = np.argsort(keys, kind='stable')
  groups = np.split(order, np.flatnonzero(np.diff(keys[order])) + 1)
  groups.sort(key=lambda g: g[0])       # by first sample: no duplicates, no change
  n = r.response_mask.sum(1)
  rows = []
  for group in groups:
    row, total = [], 0
    for i in group:
      if row and total + n[i] > cap:
        rows.append(np.array(row))
        row, total = [], 0
      row.append(i)
      total += n[i]
    rows.append(np.array(row))
  return rows


def _cheapest_packing(r: Rollouts, prompt: int) -> list[np.ndarray]:
  """`_rows_of` with the response cap that reads the fewest columns.

  Every row of a mini-batch is P + K columns wide, K the bucket of the most
  response tokens in any row, so a few long packed rows would widen every
  row. Caps from the unpacked K (rows never wider than without packing)
  up to P are tried; the one with the fewest rows x (P + K) wins, the
  smallest on ties.
  """
  n = r.response_mask.sum(1)
  cap = _pow2(int(n.max(initial=1)), MIN_RESPONSE)
  best, best_cost = None, None
  while best is None or cap <= _pow2(prompt):
    rows = _rows_of(r, True, cap=cap)
    width = _pow2(max(int(n[m].sum()) for m in rows), MIN_RESPONSE) if rows else 0
    cost = len(rows) * (prompt + width)
    if best_cost is None or cost < best_cost:
      best, best_cost = rows, cost
    cap *= 2
  return best


def minibatches(r: Rollouts, *, minibatch_size: int, prompt_cap: int, shards: int,
                rng: np.random.Generator, padded_steps: int, row_offset: int = 0,
                pack: bool = False) -> tuple[list[Minibatch], list[np.ndarray], Packing]:
  """Shuffled mini-batches covering every sample once, without advantages.

  Mini-batches hold about `minibatch_size` samples (globally), as evenly as
  whole rows allow. Their rows, prompt width P, scored tokens K and samples
  per row J are rounded up to buckets (rows to a multiple of this process's
  batch `shards`) and agreed over processes, so every mini-batch of every
  process has one shape and the step compiles a handful of times per run.

  Args:
    r: the iteration's rollouts.
    minibatch_size: samples per mini-batch, over all processes.
    prompt_cap: the configured prompt limit (see `prompt_width`).
    shards: this process's batch shards of the mesh.
    rng: the shuffle.
    padded_steps: T of the padded trajectory arrays.
    row_offset: padded trajectory row of r's first trajectory in the whole
      batch.
    pack: samples with the same prompt share a row (`pack_rows`), so the
      prompt is read once; the response tokens per row are capped where
      the mini-batches read the fewest columns (`_cheapest_packing`).
  Returns:
    (mini-batches of numpy arrays with zero advantages; for each its [R, J]
    int64 flat index (row_offset + b) * padded_steps + t of each sample's
    step into the whole batch's [B, T] arrays, -1 on empty slots;
    what packing saved). `with_advantages` fills the advantages in.
  """
  s = len(r.sample_index)
  n = r.response_mask.sum(1)
  size = max(minibatch_size // jax.process_count(), 1)
  longest_prompt = distributed.agree_max([int(r.prompt_lengths.max(initial=1))])[0]
  p = prompt_width(longest_prompt, prompt_cap)
  rows = _cheapest_packing(r, p) if pack else _rows_of(r, False, cap=0)
  rows = [rows[i] for i in rng.permutation(len(rows))]
  count = distributed.agree_max([max(min(-(-s // size), len(rows)), 1)])[0]
  # Each shuffled row goes to the least-filled mini-batch: about s / count
  # samples each, none empty while there are rows enough.
  groups, load = [[] for _ in range(count)], np.zeros(count, np.int64)
  for m in rows:
    i = int(np.argmin(load))
    groups[i].append(m)
    load[i] += len(m)
  most_rows = max((len(g) for g in groups), default=1)
  most_members = max((len(m) for m in rows), default=1)
  most_tokens = max((int(n[m].sum()) for m in rows), default=1)
  most_rows, most_members, most_tokens = distributed.agree_max(
      [most_rows, most_members, most_tokens])
  num_rows = -(-graph_lib.bucket_size(max(most_rows, 1), 1) // shards) * shards
  num_members = _pow2(most_members)
  scored = _pow2(most_tokens, MIN_RESPONSE)
  if most_members == 1:                  # one response per row: at most N columns
    scored = min(scored, r.response_ids.shape[1])
  t = r.mask.shape[1]
  index = r.sample_index.astype(np.int64)
  flat = (row_offset + index // t) * padded_steps + index % t
  out, where = [], []
  for group in groups:
    members = np.full((num_rows, num_members), -1, np.int64)
    for row, m in enumerate(group):
      members[row, :len(m)] = m
    fields = pack_rows(r.prompt_ids, r.prompt_lengths, r.response_ids, r.response_mask,
                       r.response_logp, members, prompt=p, scored=scored)
    real = members >= 0
    out.append(Minibatch(**fields, advantage=np.zeros(members.shape, np.float32),
                         sample_mask=real, value_target=None))
    where.append(np.where(real, flat[np.maximum(members, 0)], -1))
  lengths = r.prompt_lengths.astype(np.int64)
  packing = Packing(samples=s, rows=len(rows),
                    tokens=int(sum(lengths[m[0]] + n[m].sum() for m in rows)),
                    tokens_unpacked=int(lengths.sum() + n.sum()))
  return out, where, packing


def with_advantages(mb: Minibatch, where: np.ndarray, advantages: np.ndarray,
                    targets: np.ndarray | None = None) -> Minibatch:
  """`mb` with each sample's advantage (and value target) from [B, T] arrays."""
  real = where >= 0
  take = lambda x: np.where(real, x.reshape(-1)[np.maximum(where, 0)], 0.0).astype(np.float32)
  return mb._replace(advantage=take(advantages),
                     value_target=None if targets is None else take(targets))
