"""Rollouts -> the fixed-shape arrays of the train step (host: numpy, plus the
cross-process gathers of `g2po_jax.distributed`).

Trajectory arrays pad B and T to `graph.bucket_size` buckets (fixed per
run); samples are shuffled and cut into mini-batches of a fixed size, the
last one padded, with prompts padded to a power-of-two length up to the
configured limit. So the train step compiles once or twice per run.
"""

import jax
import numpy as np

from g2po_jax import distributed
from g2po_jax import graph as graph_lib
from g2po_jax.graph import Graph
from g2po_jax.train.rollout import Rollouts
from g2po_jax.train.step import Minibatch, Trajectories


def trajectories(r: Rollouts, history: int | None) -> Trajectories:
  """The estimators' view of this process's rollouts (values 0; PPO fills them in).

  Args:
    r: the iteration's rollouts.
    history: build HGPO's context levels for this prompt history (None: skip).
  """
  g = graph_lib.build_graph(r.seeds, r.state_key, r.next_key, r.mask, history=history)
  bp, tp = g.node.shape
  b, t = r.mask.shape
  pad = lambda x: np.pad(x, [(0, bp - b), (0, tp - t)])
  return Trajectories(reward=pad(r.reward), valid=pad(r.valid), mask=pad(r.mask), graph=g,
                      values=np.zeros((bp, tp), np.float32))


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
                        (traj.reward, traj.valid, traj.mask)), graph=graph,
                      values=distributed.gather_rows(traj.values))


def token_rows(prompt_ids: np.ndarray, prompt_lengths: np.ndarray, response_ids: np.ndarray,
               response_mask: np.ndarray, response_logp: np.ndarray, prompt_cap: int,
               longest: int | None = None) -> tuple[np.ndarray, ...]:
  """Lays samples out as [prompt | response] rows for `sampling.token_logprobs`.

  Prompts are left-padded to end at column P-1, with P a power of two that
  fits the longest prompt (at most `prompt_cap` unless a prompt is longer);
  responses start at column P.

  Args:
    prompt_ids: [S, P0] int right-padded prompts; prompt_lengths [S] int.
    response_ids, response_mask, response_logp: [S, N] response tokens, which
      of them are real, and their sampler log-probs.
    prompt_cap: the configured prompt limit.
    longest: the prompt length P must fit (default: the longest given).
  Returns:
    (tokens [S, P+N] int32, token_mask [S, P+N] bool, score_mask [S, P+N-1]
    bool marking the positions that predict a response token, old_logp
    [S, P+N-1] float32 holding the sampler's log-probs there).
  """
  s = len(prompt_lengths)
  longest = int(prompt_lengths.max(initial=1)) if longest is None else longest
  p = min(1 << max(longest - 1, 0).bit_length(), max(prompt_cap, longest))
  n = response_ids.shape[1]
  cols = np.arange(p)[None, :] - (p - prompt_lengths)[:, None]
  live = cols >= 0
  prompt = np.where(live, np.take_along_axis(prompt_ids, np.clip(cols, 0, prompt_ids.shape[1] - 1),
                                             1), 0)
  tokens = np.concatenate([prompt, np.where(response_mask, response_ids, 0)], 1)
  token_mask = np.concatenate([live, response_mask], 1)
  score_mask = np.zeros((s, p + n - 1), bool)
  old_logp = np.zeros((s, p + n - 1), np.float32)
  score_mask[:, p - 1:] = response_mask
  old_logp[:, p - 1:] = np.where(response_mask, response_logp, 0.0)
  return tokens.astype(np.int32), token_mask, score_mask, old_logp


def minibatch_needs(r: Rollouts, size: int) -> tuple[int, int]:
  """(mini-batches, longest prompt) these rollouts need at `size` samples each."""
  return max(-(-len(r.sample_index) // size), 1), int(r.prompt_lengths.max(initial=1))


def minibatches(r: Rollouts, *, size: int, prompt_len: int, padded_steps: int,
                rng: np.random.Generator, count: int | None = None,
                longest: int | None = None, row_offset: int = 0) -> list[Minibatch]:
  """Shuffled mini-batches of `size` samples covering every sample once.

  Args:
    r: the iteration's rollouts.
    size: samples per mini-batch (the last ones are padded with masked rows).
    prompt_len: the configured prompt limit (see `token_rows`).
    padded_steps: T of the padded trajectory arrays.
    rng: the shuffle.
    count, longest: the number of mini-batches and the prompt length to lay
      out for (default `minibatch_needs`); processes pass agreed values so
      their pieces of each global mini-batch have one shape.
    row_offset: padded trajectory row of r's first trajectory in the whole
      batch; `sample_index` = (row_offset + b) * padded_steps + t.
  """
  s = len(r.sample_index)
  need, most = minibatch_needs(r, size)
  count = need if count is None else count
  if count < need:
    raise ValueError(f'{s} samples need {need} mini-batches of {size}; got count={count}.')
  order = np.concatenate([rng.permutation(s), np.zeros(count * size - s, np.int64)])
  real = np.arange(count * size) < s
  rows = token_rows(r.prompt_ids[order], np.where(real, r.prompt_lengths[order], 0),
                    r.response_ids[order], r.response_mask[order] & real[:, None],
                    r.response_logp[order], prompt_len, most if longest is None else longest)
  t = r.mask.shape[1]
  index = r.sample_index[order]
  sample_index = np.where(real, (row_offset + index // t) * padded_steps + index % t, 0)
  fields = (*rows, sample_index.astype(np.int32), real)
  return [Minibatch(*(f[i * size:(i + 1) * size] for f in fields)) for i in range(count)]
