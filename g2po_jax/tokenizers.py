"""Tokenizers behind one interface, and the plain-text agent prompt.

Host only: never imports jax.

  WordTokenizer  one token per word or punctuation mark of an environment's
                 vocabulary (`BatchEnv.vocabulary()`), for models trained from
                 scratch. Decoding restores the exact action strings.
  HFTokenizer    a Hugging Face tokenizer.json (e.g. Qwen2.5's), through the
                 `tokenizers` library, for pretrained models.

`format_prompt` writes the agent's prompt without a chat template, so the
same text works with either tokenizer. The model answers with the action and
then eos. With a BPE tokenizer, encode the response as ' ' + action so its
first word keeps its leading-space token.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
import json
import os

import numpy as np
import tokenizers as hf_tokenizers

from g2po_jax.envs import split_words

# ----------------------------------------------------------------------------
# The prompt
# ----------------------------------------------------------------------------

_TASK, _OBSERVATION, _ACTION, _ADMISSIBLE = (
    'Task:', 'Observation:', 'Action:', 'Admissible actions:')

# Words the prompt adds to an environment's texts.
PROMPT_WORDS = tuple(sorted(set(split_words(' '.join(
    (_TASK, _OBSERVATION, _ACTION, _ADMISSIBLE))))))


def format_prompt(task: str, history: Sequence[tuple[str, str]],
                  observation: str, admissible: Sequence[str],
                  max_history: int = 3) -> str:
  """The agent's prompt: task, recent steps, observation, actions, a cue.

    Task: put a clean apple in fridge.
    Observation: You arrive at countertop 1. ...      (last max_history
    Action: take apple 1 from countertop 1             steps, oldest first)
    Observation: You pick up the apple 1 ...
    Admissible actions:
    go to cabinet 1
    ...
    Action:

  Args:
    task: the task description.
    history: (observation, action) pairs of the earlier steps, oldest first.
    observation: the current observation.
    admissible: the actions admissible now, one per line.
    max_history: how many of the most recent pairs to show (>= 0).
  Returns:
    The prompt; the model continues it with the action.
  """
  if max_history < 0:
    raise ValueError(f'max_history must be >= 0; got {max_history}.')
  lines = [f'{_TASK} {task.strip()}']
  for obs, action in (history[-max_history:] if max_history else ()):
    lines += [f'{_OBSERVATION} {obs.strip()}', f'{_ACTION} {action.strip()}']
  lines += [f'{_OBSERVATION} {observation.strip()}', _ADMISSIBLE]
  lines += [a.strip() for a in admissible]
  lines.append(_ACTION)
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# The interface
# ----------------------------------------------------------------------------


class Tokenizer(abc.ABC):
  """Text <-> token ids, with the special ids the model and sampler need."""

  @property
  @abc.abstractmethod
  def vocab_size(self) -> int:
    """Number of token ids (ids lie in [0, vocab_size))."""

  @property
  @abc.abstractmethod
  def pad_id(self) -> int:
    """Id used to pad batches."""

  @property
  @abc.abstractmethod
  def eos_id(self) -> int:
    """Id the model writes after an action (a stop id for sampling)."""

  @property
  def stop_ids(self) -> tuple[int, ...]:
    """Ids that end an action: eos, and every token whose text holds a newline
    (an action is one line; `action_text` cuts at the newline)."""
    return (self.eos_id,)

  @abc.abstractmethod
  def encode(self, text: str) -> list[int]:
    """Token ids of text, without special tokens."""

  @abc.abstractmethod
  def decode(self, ids: Iterable[int]) -> str:
    """Text of ids; pad and eos (and other special tokens) are dropped."""

  @abc.abstractmethod
  def save(self, directory: str) -> None:
    """Writes the tokenizer so that `load_tokenizer(directory)` restores it."""

  def action_text(self, ids: Iterable[int]) -> str:
    """The action a response writes: its decoded first line, stripped."""
    return self.decode(ids).split('\n', 1)[0].strip()

  def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
    """`encode` of each text."""
    return [self.encode(t) for t in texts]

  def encode_batch(self, texts: Sequence[str], max_length: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Encodes texts into a right-padded array, keeping each text's end.

    Args:
      texts: B strings.
      max_length: width L; longer encodings lose their first tokens (a
        prompt keeps its most recent part and its cue).
    Returns:
      ids [B, L] int32 (row b is ids[b, :lengths[b]] then pad_id) and
      lengths [B] int32.
    """
    if max_length < 1:
      raise ValueError(f'max_length must be positive; got {max_length}.')
    ids = np.full((len(texts), max_length), self.pad_id, np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for row, seq in enumerate(self.encode_many(texts)):
      seq = seq[-max_length:]
      ids[row, :len(seq)] = seq
      lengths[row] = len(seq)
    return ids, lengths


# ----------------------------------------------------------------------------
# Word tokenizer
# ----------------------------------------------------------------------------

# Default spacing between two units when decoding: one space, except before
# closing punctuation and '[' (click[buy now]), after opening brackets, and
# on both sides of / - ' (in/on, x-large, There's). Text that differs from
# the default gets an explicit <sp> / <nosp> token, so decoding is exact
# while typical environment text needs none.
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}[/-'")
_NO_SPACE_AFTER = frozenset("([{/-'")


def _default_space(prev: str, word: str) -> bool:
  return word not in _NO_SPACE_BEFORE and prev not in _NO_SPACE_AFTER


class WordTokenizer(Tokenizer):
  """One token per word/punctuation unit of `g2po_jax.envs.split_words`.

  decode(encode(text)) == text for every text whose words are in the
  vocabulary, whose units are separated by at most one space and whose
  lines have no leading or trailing spaces (other whitespace is normalized
  to that form). Unknown words encode to <unk>.
  """

  SPECIALS = ('<pad>', '<eos>', '<unk>', '<nl>', '<sp>', '<nosp>')
  FILE = 'word_vocab.json'
  PAD, EOS, UNK, NEWLINE, SPACE, NO_SPACE = range(len(SPECIALS))

  def __init__(self, tokens: Sequence[str]):
    """tokens: every token by id, starting with SPECIALS (as `save` writes)."""
    tokens = tuple(tokens)
    if tokens[:len(self.SPECIALS)] != self.SPECIALS:
      raise ValueError(f'tokens must start with {self.SPECIALS}; got '
                       f'{tokens[:len(self.SPECIALS)]}.')
    if len(set(tokens)) != len(tokens):
      raise ValueError('tokens contain duplicates.')
    self.tokens = tokens
    self._ids = {t: i for i, t in enumerate(tokens)}

  @classmethod
  def from_vocabulary(cls, words: Iterable[str]) -> WordTokenizer:
    """The tokenizer of an environment's `vocabulary()` plus PROMPT_WORDS."""
    words = set(words) | set(PROMPT_WORDS)
    bad = sorted(w for w in words if split_words(w) != [w])
    if bad:
      raise ValueError(f'vocabulary entries must be single split_words units; '
                       f'got {bad[:5]}.')
    return cls(cls.SPECIALS + tuple(sorted(words)))

  @classmethod
  def load(cls, directory: str) -> WordTokenizer:
    with open(os.path.join(directory, cls.FILE)) as f:
      return cls(json.load(f))

  def save(self, directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, self.FILE), 'w') as f:
      json.dump(list(self.tokens), f, indent=0)

  @property
  def vocab_size(self) -> int:
    return len(self.tokens)

  @property
  def stop_ids(self) -> tuple[int, ...]:
    return (self.EOS, self.NEWLINE)

  @property
  def pad_id(self) -> int:
    return self.PAD

  @property
  def eos_id(self) -> int:
    return self.EOS

  def encode(self, text: str) -> list[int]:
    ids = []
    for i, line in enumerate(text.split('\n')):
      if i:
        ids.append(self.NEWLINE)
      cursor, prev = 0, None
      for word in split_words(line):
        start = line.index(word, cursor)      # only whitespace is skipped
        token = self._ids.get(word, self.UNK)
        if prev is not None:
          spaced = start > cursor
          if spaced != _default_space(self.tokens[prev], self.tokens[token]):
            ids.append(self.SPACE if spaced else self.NO_SPACE)
        ids.append(token)
        cursor, prev = start + len(word), token
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    parts, prev, spaced = [], None, None
    for i in ids:
      i = int(i)
      if not 0 <= i < len(self.tokens):
        raise ValueError(f'token id {i} is outside [0, {len(self.tokens)}).')
      if i in (self.PAD, self.EOS):
        continue
      if i == self.NEWLINE:
        parts.append('\n')
        prev, spaced = None, None
      elif i in (self.SPACE, self.NO_SPACE):
        spaced = i == self.SPACE
      else:
        word = self.tokens[i]
        if prev is not None and (_default_space(prev, word) if spaced is None else spaced):
          parts.append(' ')
        parts.append(word)
        prev, spaced = word, None
    return ''.join(parts)


# ----------------------------------------------------------------------------
# Hugging Face tokenizer
# ----------------------------------------------------------------------------


def _token_content(entry) -> str | None:
  # tokenizer_config.json writes special tokens as strings or AddedToken dicts.
  return entry.get('content') if isinstance(entry, dict) else entry


class HFTokenizer(Tokenizer):
  """A `tokenizers.Tokenizer` (tokenizer.json) with named eos and pad tokens."""

  FILE = 'tokenizer.json'
  CONFIG_FILE = 'tokenizer_config.json'

  def __init__(self, tokenizer: hf_tokenizers.Tokenizer, eos_token: str,
               pad_token: str | None = None):
    """pad_token defaults to eos_token (Qwen2.5 pads with <|endoftext|>)."""
    self.tokenizer = tokenizer
    self.eos_token = eos_token
    self.pad_token = eos_token if pad_token is None else pad_token
    self._eos_id = self._special_id('eos_token', self.eos_token)
    self._pad_id = self._special_id('pad_token', self.pad_token)
    vocab = range(self.vocab_size)
    texts = tokenizer.decode_batch([[i] for i in vocab], skip_special_tokens=False)
    self._stop_ids = (self._eos_id,) + tuple(
        i for i, text in zip(vocab, texts) if '\n' in text and i != self._eos_id)

  def _special_id(self, name: str, token: str) -> int:
    i = self.tokenizer.token_to_id(token)
    if i is None:
      raise ValueError(f'{name} {token!r} is not in the tokenizer vocabulary.')
    return i

  @classmethod
  def from_dir(cls, directory: str) -> HFTokenizer:
    """Reads tokenizer.json, and eos/pad tokens from tokenizer_config.json."""
    path = os.path.join(directory, cls.FILE)
    if not os.path.isfile(path):
      raise ValueError(f'{directory!r} has no {cls.FILE}.')
    config_path = os.path.join(directory, cls.CONFIG_FILE)
    config = {}
    if os.path.isfile(config_path):
      with open(config_path) as f:
        config = json.load(f)
    eos = _token_content(config.get('eos_token'))
    if eos is None:
      raise ValueError(f'{config_path} does not name an eos_token; build '
                       f'HFTokenizer(tokenizers.Tokenizer.from_file(...), '
                       f'eos_token=...) instead.')
    return cls(hf_tokenizers.Tokenizer.from_file(path), eos,
               _token_content(config.get('pad_token')))

  def save(self, directory: str) -> None:
    """Writes tokenizer.json and sets eos/pad in tokenizer_config.json."""
    os.makedirs(directory, exist_ok=True)
    self.tokenizer.save(os.path.join(directory, self.FILE))
    config_path = os.path.join(directory, self.CONFIG_FILE)
    config = {}
    if os.path.isfile(config_path):
      with open(config_path) as f:
        config = json.load(f)
    config.update(eos_token=self.eos_token, pad_token=self.pad_token)
    with open(config_path, 'w') as f:
      json.dump(config, f, indent=2)

  @property
  def vocab_size(self) -> int:
    return self.tokenizer.get_vocab_size(with_added_tokens=True)

  @property
  def pad_id(self) -> int:
    return self._pad_id

  @property
  def eos_id(self) -> int:
    return self._eos_id

  @property
  def stop_ids(self) -> tuple[int, ...]:
    return self._stop_ids

  def encode(self, text: str) -> list[int]:
    return self.tokenizer.encode(text, add_special_tokens=False).ids

  def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
    return [e.ids for e in self.tokenizer.encode_batch(list(texts),
                                                        add_special_tokens=False)]

  def decode(self, ids: Iterable[int]) -> str:
    return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def load_tokenizer(directory: str) -> Tokenizer:
  """The tokenizer saved in directory (a WordTokenizer or an HFTokenizer)."""
  if os.path.isfile(os.path.join(directory, WordTokenizer.FILE)):
    return WordTokenizer.load(directory)
  if os.path.isfile(os.path.join(directory, HFTokenizer.FILE)):
    return HFTokenizer.from_dir(directory)
  raise ValueError(f'{directory!r} holds no tokenizer ({WordTokenizer.FILE} or '
                   f'{HFTokenizer.FILE}).')
