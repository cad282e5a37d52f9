"""Rollouts -> the fixed-shape arrays of the train step (host, numpy).

Trajectory arrays pad B and T to `graph.bucket_size` buckets (fixed per
run); samples are shuffled and cut into mini-batches of a fixed size, the
last one padded, with prompts padded to a power-of-two length up to the
configured limit. So the train step compiles once or twice per run.
"""

import numpy as np

from g2po_jax import graph as graph_lib
from g2po_jax.train.rollout import Rollouts
from g2po_jax.train.step import Minibatch, Trajectories


def trajectories(r: Rollouts, history: int | None) -> Trajectories:
  """The estimators' view of the rollouts (values 0; PPO fills them in).

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


def token_rows(prompt_ids: np.ndarray, prompt_lengths: np.ndarray, response_ids: np.ndarray,
               response_mask: np.ndarray, response_logp: np.ndarray, prompt_cap: int
               ) -> tuple[np.ndarray, ...]:
  """Lays samples out as [prompt | response] rows for `sampling.token_logprobs`.

  Prompts are left-padded to end at column P-1, with P a power of two that
  fits the longest prompt (at most `prompt_cap` unless a prompt is longer);
  responses start at column P.

  Args:
    prompt_ids: [S, P0] int right-padded prompts; prompt_lengths [S] int.
    response_ids, response_mask, response_logp: [S, N] response tokens, which
      of them are real, and their sampler log-probs.
    prompt_cap: the configured prompt limit.
  Returns:
    (tokens [S, P+N] int32, token_mask [S, P+N] bool, score_mask [S, P+N-1]
    bool marking the positions that predict a response token, old_logp
    [S, P+N-1] float32 holding the sampler's log-probs there).
  """
  s = len(prompt_lengths)
  longest = int(prompt_lengths.max(initial=1))
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


def minibatches(r: Rollouts, *, size: int, prompt_len: int, padded_steps: int,
                rng: np.random.Generator) -> list[Minibatch]:
  """Shuffled mini-batches of `size` samples covering every sample once.

  Args:
    r: the iteration's rollouts.
    size: samples per mini-batch (the last is padded with masked rows).
    prompt_len: the configured prompt limit (see `token_rows`).
    padded_steps: T of the padded trajectory arrays (sample_index = b*T + t).
    rng: the shuffle.
  """
  s = len(r.sample_index)
  count = max(-(-s // size), 1)
  order = np.concatenate([rng.permutation(s), np.zeros(count * size - s, np.int64)])
  real = np.arange(count * size) < s
  rows = token_rows(r.prompt_ids[order], np.where(real, r.prompt_lengths[order], 0),
                    r.response_ids[order], r.response_mask[order] & real[:, None],
                    r.response_logp[order], prompt_len)
  t = r.mask.shape[1]
  index = r.sample_index[order]
  sample_index = np.where(real, (index // t) * padded_steps + index % t, 0).astype(np.int32)
  fields = (*rows, sample_index, real)
  return [Minibatch(*(f[i * size:(i + 1) * size] for f in fields)) for i in range(count)]
