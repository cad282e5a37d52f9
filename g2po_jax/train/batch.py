"""Rollouts -> the fixed-shape arrays of the train step (host: numpy, plus the
cross-process gathers of `g2po_jax.distributed`).

Trajectory arrays pad B and T to `graph.bucket_size` buckets (fixed per
run). Samples are shuffled and cut into `count` mini-batches that hold only
real samples: the rows, the prompt width and the response width are each
rounded up to a bucket, so a run compiles the train step a handful of times
whatever its batches hold.
"""

from typing import NamedTuple

import jax
import numpy as np

from g2po_jax import distributed
from g2po_jax import graph as graph_lib
from g2po_jax.graph import Graph
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


def sample_rows(prompt_ids: np.ndarray, prompt_lengths: np.ndarray, response_ids: np.ndarray,
                response_mask: np.ndarray, width: int) -> dict[str, np.ndarray]:
  """Lays samples out one per row: the prompt left-padded to end at column
  P-1 (P = `width`), then the response.

  Args:
    prompt_ids: [S, P0] int right-padded prompts; prompt_lengths [S] int.
    response_ids, response_mask: [S, N] response tokens and which are real.
    width: P, at least the longest prompt.
  Returns:
    tokens, token_mask, positions, segments ([S, P+N]; segment 0 is the
    prompt, 1 the response), score_pos, score_token, score_mask ([S, N]:
    column P-1+j predicts response token j) and value_pos ([S], P-1).
  """
  s, n = response_ids.shape
  cols = np.arange(width)[None, :] - (width - prompt_lengths)[:, None]
  live = cols >= 0
  prompt = np.where(live, np.take_along_axis(
      prompt_ids, np.clip(cols, 0, prompt_ids.shape[1] - 1), 1), 0)
  tokens = np.concatenate([prompt, np.where(response_mask, response_ids, 0)], 1)
  token_mask = np.concatenate([live, response_mask], 1)
  positions = np.maximum(np.cumsum(token_mask, 1) - 1, 0)
  segments = np.concatenate([np.zeros((s, width), np.int32), np.ones((s, n), np.int32)], 1)
  return dict(tokens=tokens.astype(np.int32), token_mask=token_mask,
              positions=positions.astype(np.int32), segments=segments,
              score_pos=np.broadcast_to(width - 1 + np.arange(n, dtype=np.int32), (s, n)),
              score_token=tokens[:, width:].astype(np.int32), score_mask=response_mask.copy(),
              value_pos=np.full(s, width - 1, np.int32))


class Plan(NamedTuple):
  """Shapes every process lays its mini-batches out with (agreed values)."""
  count: int      # mini-batches per epoch
  rows: int       # rows of each (this process's piece)
  prompt: int     # prompt columns P
  response: int   # response columns N


def plan(r: Rollouts, *, minibatch_size: int, prompt_cap: int, shards: int) -> Plan:
  """The mini-batch shapes for these rollouts, agreed over processes.

  Mini-batches hold about `minibatch_size` samples (globally), as evenly as
  the count allows, rounded up to a row bucket that is a multiple of this
  process's batch `shards`; padding rows exist only to reach the bucket.
  """
  s = len(r.sample_index)
  longest_response = int(r.response_mask.sum(1).max(initial=1))
  size = max(minibatch_size // jax.process_count(), 1)
  count, most, longest_prompt, longest_response = distributed.agree_max(
      [max(-(-s // size), 1), s, int(r.prompt_lengths.max(initial=1)), longest_response])
  per = -(-most // count)
  rows = graph_lib.bucket_size(per, 1)
  rows = -(-rows // shards) * shards
  return Plan(count, rows, prompt_width(longest_prompt, prompt_cap),
              min(_pow2(longest_response, MIN_RESPONSE), r.response_ids.shape[1]))


def minibatches(r: Rollouts, p: Plan, *, rng: np.random.Generator, padded_steps: int,
                row_offset: int = 0) -> tuple[list[Minibatch], list[np.ndarray]]:
  """Shuffled mini-batches covering every sample once, without advantages.

  Args:
    r: the iteration's rollouts.
    p: the agreed shapes (`plan`).
    rng: the shuffle.
    padded_steps: T of the padded trajectory arrays.
    row_offset: padded trajectory row of r's first trajectory in the whole
      batch.
  Returns:
    (mini-batches of numpy arrays with zero advantages, and for each its
    [rows, 1] int64 flat index (row_offset + b) * padded_steps + t of each
    sample's step into the whole batch's [B, T] arrays, -1 on padding).
    `with_advantages` fills the advantages in.
  """
  s = len(r.sample_index)
  order = rng.permutation(s)
  t = r.mask.shape[1]
  index = r.sample_index[order].astype(np.int64)
  flat = (row_offset + index // t) * padded_steps + index % t
  out, where = [], []
  for chunk, ids in zip(np.array_split(order, p.count), np.array_split(flat, p.count)):
    k = len(chunk)
    if k > p.rows:
      raise ValueError(f'{k} samples exceed the planned {p.rows} rows.')
    pick = np.concatenate([chunk, np.zeros(p.rows - k, np.int64)])
    real = np.arange(p.rows) < k
    fields = sample_rows(r.prompt_ids[pick], np.where(real, r.prompt_lengths[pick], 0),
                         r.response_ids[pick, :p.response],
                         r.response_mask[pick, :p.response] & real[:, None], p.prompt)
    out.append(Minibatch(
        **fields, score_sample=np.zeros((p.rows, p.response), np.int32),
        old_logp=np.where(fields['score_mask'], r.response_logp[pick, :p.response],
                          0.0).astype(np.float32),
        advantage=np.zeros((p.rows, 1), np.float32), sample_mask=real[:, None],
        value_target=None))
    where.append(np.where(real, np.pad(ids, (0, p.rows - k)), -1)[:, None])
  return out, where


def with_advantages(mb: Minibatch, where: np.ndarray, advantages: np.ndarray,
                    targets: np.ndarray | None = None) -> Minibatch:
  """`mb` with each sample's advantage (and value target) from [B, T] arrays."""
  real = where >= 0
  take = lambda x: np.where(real, x.reshape(-1)[np.maximum(where, 0)], 0.0).astype(np.float32)
  return mb._replace(advantage=take(advantages),
                     value_target=None if targets is None else take(targets))
