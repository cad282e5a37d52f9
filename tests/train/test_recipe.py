"""The papers' recipe end to end at CPU size: the published config's and the
reasoning recipe's `:runlocal`, and the format-error metric."""

import os

import jax
import numpy as np
import pytest

from configs import household_small_think
from configs import qwen2_5_1_5b_alfworld_like
from g2po_jax import bpe
from g2po_jax import envs
from g2po_jax import protocol
from g2po_jax import sampling
from g2po_jax import tokenizers
from g2po_jax.train import evaluate
from g2po_jax.train import loop
from g2po_jax.train import rollout
from tests.train.test_loop import read_scalars


@pytest.mark.slow
def test_runlocal_recipe_finishes_an_iteration(tmp_path):
  c = qwen2_5_1_5b_alfworld_like.get_config('runlocal')
  assert c.rollout.protocol == 'think_action' and c.model.tokenizer == 'qwen2.5'
  values = loop.train(c, str(tmp_path))
  assert os.path.isdir(tmp_path / 'checkpoints' / '0')
  scalars = read_scalars(str(tmp_path))
  for tag in ('rollout/format_error_rate', 'rollout/response_length', 'rollout/truncation_rate',
              'rollout/response_length_max', 'train/loss', 'train/kl'):
    assert 1 in scalars[tag], tag
  # A random model writes no <action> block: every response is a format
  # error and runs to the token limit.
  assert values['rollout/format_error_rate'] == 1.0
  assert values['rollout/truncation_rate'] == 1.0
  assert values['rollout/response_length'] == c.rollout.max_new_tokens
  assert np.isfinite(values['train/loss'])
  saved = tokenizers.load_tokenizer(str(tmp_path / 'tokenizer'))
  assert saved.vocab_size == 151665 and saved.chat_template


def test_the_published_config_keeps_its_defaults():
  c = qwen2_5_1_5b_alfworld_like.get_config()
  assert (c.rollout.max_new_tokens, c.rollout.prompt_len, c.rollout.history) == (512, 2048, 2)
  assert (c.rollout.num_tasks, c.rollout.group_size) == (16, 8)
  assert c.model.preset == 'qwen2.5-1.5b' and c.model.remat
  assert qwen2_5_1_5b_alfworld_like.get_config('init_from=/x').model.init_from == '/x'


@pytest.mark.slow
def test_think_runlocal_finishes_an_iteration_on_the_bpe_tokenizer(tmp_path):
  for credit in ('g2po', 'grpo'):
    c = household_small_think.get_config(f'runlocal,credit={credit}')
    assert c.credit.name == credit
  assert c.rollout.protocol == 'think_action' and c.model.tokenizer == 'bpe'
  values = loop.train(c, str(tmp_path))
  assert os.path.isdir(tmp_path / 'checkpoints' / '0')
  assert np.isfinite(values['train/loss'])
  assert 0.0 <= values['rollout/format_error_rate'] <= 1.0
  saved = tokenizers.load_tokenizer(str(tmp_path / 'tokenizer'))
  assert saved.vocab_size <= bpe.VOCAB_SIZE and saved.chat_template


def test_format_error_rate_counts_replies_without_an_action_block_only():
  """Five one-step episodes: two format errors, one inadmissible action."""
  with envs.make('household-small') as env:
    tok = bpe.for_env(env)
    p = protocol.make_protocol('think_action', env.name)
    seed = envs.split_seeds('train', 1)
    admissible = env.reset(seed)[0].admissible[0]
    replies = [f'<think>ok</think>\n<action>{admissible}</action>',   # valid
               '<action>fly to the moon</action>',                    # inadmissible
               f'<action>{admissible}</action>',                      # no <think>: fine
               admissible,                                            # no tags
               f'<think>I will {admissible}.</think>']                # no action block
    encoded = tok.encode_many(replies)
    n = max(map(len, encoded))

    def sample_fn(ids, lengths, rng, rows):
      del ids, lengths, rng
      tokens = np.zeros((len(rows), n), np.int32)
      mask = np.zeros((len(rows), n), bool)
      for j, row in enumerate(rows):
        tokens[j, :len(encoded[row])] = encoded[row]
        mask[j, :len(encoded[row])] = True
      return sampling.Samples(tokens, np.zeros((len(rows), n), np.float32), mask,
                              np.ones(len(rows), bool))

    r = rollout.collect(env, np.repeat(seed, 5), sample_fn, tok, p, jax.random.key(0),
                        max_steps=1, history=1, prompt_len=512, success_reward=10.0)
  np.testing.assert_array_equal(r.format_error[:, 0], [False, False, False, True, True])
  np.testing.assert_array_equal(r.valid[:, 0], [True, False, True, False, False])
  values = evaluate.episode_metrics('eval', r)
  assert values['eval/format_error_rate'] == 2 / 5
  assert values['eval/invalid_rate'] == 1 / 5
