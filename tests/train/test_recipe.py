"""The papers' recipe end to end at CPU size: the published config's `:runlocal`."""

import os

import numpy as np
import pytest

from configs import qwen2_5_1_5b_alfworld_like
from g2po_jax import tokenizers
from g2po_jax.train import loop
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
