"""A CPU-sized subword tokenizer that takes a Qwen2.5 checkpoint's code path.

Host only: never imports jax.

`for_env` trains a byte-level BPE (the `tokenizers` library) on an
environment's think_action texts: the user messages and the demonstrated
responses (`g2po_jax.demos`) of noisy-oracle episodes, and the chat
template's headers. The tokenizer is Qwen2.5's in everything but its merges:
the same pre-tokenizer regex, NFC and ByteLevel pipeline
(`qwen_tokenizer.set_pipeline`), the ChatML tokens <|endoftext|> (pad),
<|im_start|> and <|im_end|> (eos) as ids 0-2, and Qwen2.5-Instruct's chat
template in its tokenizer_config.json. So prompts go through
`HFTokenizer.apply_chat_template`, and sampling stops through the stop-string
automaton, exactly as for the real checkpoint; saved, the directory loads
with `tokenizers.load_tokenizer` (and `transformers.AutoTokenizer`).

With a vocabulary of a few thousand tokens the LM head of a small model costs
about as much as its layers; with Qwen2.5's 151,665 it would dominate a CPU
step. The same inputs give the same tokenizer (a test checks).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tokenizers as hf_tokenizers

from g2po_jax import demos
from g2po_jax import envs
from g2po_jax import protocol as protocol_lib
from g2po_jax import qwen_tokenizer
from g2po_jax import tokenizers

VOCAB_SIZE = 2048
# The ChatML tokens, special (dropped when decoding), as ids 0, 1, 2.
ADDED_TOKENS = (('<|endoftext|>', True), ('<|im_start|>', True), ('<|im_end|>', True))


def train(texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> tokenizers.HFTokenizer:
  """A byte-level BPE with ChatML tokens and Qwen2.5's chat template.

  Args:
    texts: the training texts.
    vocab_size: tokens in all: the 3 ChatML tokens, the 256 bytes, merges.
  """
  if vocab_size <= len(ADDED_TOKENS) + 256:
    raise ValueError(f'vocab_size must exceed the 3 ChatML tokens and 256 bytes; got '
                     f'{vocab_size}.')
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  qwen_tokenizer.set_pipeline(tok)
  trainer = hf_tokenizers.trainers.BpeTrainer(
      vocab_size=vocab_size, show_progress=False,
      special_tokens=[hf_tokenizers.AddedToken(content, special=special, normalized=False)
                      for content, special in ADDED_TOKENS],
      initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(texts, trainer)
  config = qwen_tokenizer.tokenizer_config(ADDED_TOKENS, first_id=0)
  template = config.pop('chat_template')     # HFTokenizer keeps it apart from the rest
  return tokenizers.HFTokenizer(tok, qwen_tokenizer.EOS, qwen_tokenizer.PAD,
                                chat_template=template, config=config)


def corpus(env: envs.BatchEnv, *, num_tasks: int = 200, history: int = 2) -> list[str]:
  """The think_action texts of `num_tasks` noisy-oracle episodes of `env`
  (fixed train seeds), as the chat template splits them around its ChatML
  tokens."""
  protocol = protocol_lib.make_protocol('think_action', env.name)
  rng = np.random.default_rng(0)
  seeds = envs.split_seeds('train', num_tasks, start=700_000_000)   # not SFT's or RL's
  texts = [f'system\n{qwen_tokenizer.DEFAULT_SYSTEM}', '\n']
  for d in demos.play(env, seeds, noise=0.3, max_steps=env.max_steps, rng=rng):
    message = protocol.message(task=d.task, history=d.history, observation=d.observation,
                               admissible=d.admissible, step=d.step, max_history=history)
    response = protocol.render(d.plan[0], demos.reasoning(d.task, d.plan, rng))
    texts += [f'user\n{message}', f'assistant\n{response}']
  return texts


def for_env(env: envs.BatchEnv, vocab_size: int = VOCAB_SIZE) -> tokenizers.HFTokenizer:
  """The BPE tokenizer of `env`'s think_action texts (see the module doc)."""
  return train(corpus(env), vocab_size)
