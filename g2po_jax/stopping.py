"""Stop strings as a token-level automaton the sampler steps on the device.

Host only: numpy, never imports jax.

A stop string such as '</action>' spans several tokens, and a tokenizer can
split it many ways ('</', 'action', '>' or '</action', '>\\n' ...), so no set
of stop ids finds it. Instead the text of the response is run through an
Aho-Corasick automaton over bytes. Running one token's bytes from a state is
a pure function of (state, token), so it is tabulated once per tokenizer:
`table[state, token]` is the state after emitting `token`. The sampler keeps
one int32 state per row and does one gather per generated token; the row is
done when it reaches `ACCEPT` (absorbing), i.e. right after the token that
completes a stop string (that token may hold text after it).
"""

from __future__ import annotations

from collections.abc import Sequence
import functools
import json

import numpy as np

from g2po_jax import protocol as protocol_lib
from g2po_jax import tokenizers


def for_protocol(tokenizer: tokenizers.Tokenizer, protocol: protocol_lib.Protocol
                 ) -> tuple[tuple[int, ...], np.ndarray | None]:
  """(stop ids, stop-string table or None) that end a response of `protocol`.

  The line protocol stops at eos and at every token holding a newline; the
  others at eos or pad (Qwen2.5 ends a turn with <|im_end|> or
  <|endoftext|>) and right after their stop strings.
  """
  if protocol.stop_at_newline:
    ids = tokenizer.stop_ids
  else:
    ids = tuple(sorted({tokenizer.eos_id, tokenizer.pad_id}))
  table = None
  if protocol.stop_strings:
    table = stop_table(token_bytes(tokenizer), protocol.stop_strings)
  return ids, table


def _byte_decoder() -> dict[str, int]:
  """The inverse of GPT-2's byte -> printable character map (ByteLevel BPE)."""
  printable = (list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAC + 1))
               + list(range(0xAE, 0xFF + 1)))
  chars, n = {}, 0
  for b in range(256):
    if b in printable:
      chars[b] = chr(b)
    else:
      chars[b] = chr(256 + n)
      n += 1
  return {c: b for b, c in chars.items()}


def token_bytes(tokenizer: tokenizers.Tokenizer) -> list[bytes]:
  """The bytes each token id writes into the response text.

  Special tokens (eos, pad, chat markers) write nothing. For a word
  tokenizer a token writes its word (the spaces its decoder inserts between
  words are not part of any token, so a stop string is matched on the words
  without spaces).
  """
  if isinstance(tokenizer, tokenizers.HFTokenizer):
    return _hf_token_bytes(tokenizer)
  if isinstance(tokenizer, tokenizers.WordTokenizer):
    out = [t.encode() for t in tokenizer.tokens]
    for i in range(len(tokenizer.SPECIALS)):
      out[i] = b''
    out[tokenizer.NEWLINE], out[tokenizer.SPACE] = b'\n', b' '
    return out
  raise ValueError(f'no token bytes for a {type(tokenizer).__name__}.')


def _hf_token_bytes(tokenizer: tokenizers.HFTokenizer) -> list[bytes]:
  hf = tokenizer.tokenizer
  decoder = json.loads(hf.to_str()).get('decoder') or {}
  byte_level = decoder.get('type') == 'ByteLevel' or any(
      d.get('type') == 'ByteLevel' for d in decoder.get('decoders', ()))
  out = [b''] * tokenizer.vocab_size
  if byte_level:
    inverse = _byte_decoder()
    for text, i in hf.get_vocab(with_added_tokens=False).items():
      out[i] = bytes(inverse[c] for c in text if c in inverse)
  else:  # e.g. SentencePiece-style: decode each token on its own
    texts = hf.decode_batch([[i] for i in range(tokenizer.vocab_size)],
                            skip_special_tokens=False)
    out = [t.encode() for t in texts]
  for i, added in hf.get_added_tokens_decoder().items():
    out[i] = b'' if added.special else added.content.encode()
  return out


def _automaton(strings: Sequence[bytes]) -> np.ndarray:
  """[S, 256] int32 Aho-Corasick transitions; the last state is ACCEPT."""
  goto = [{}]
  terminal = [False]
  for s in strings:
    node = 0
    for b in s:
      if b not in goto[node]:
        goto.append({})
        terminal.append(False)
        goto[node][b] = len(goto) - 1
      node = goto[node][b]
    terminal[node] = True
  n = len(goto)
  delta = np.zeros((n + 1, 256), np.int32)
  fail = [0] * n
  queue = []
  for b in range(256):                       # breadth-first over the trie
    child = goto[0].get(b)
    if child is not None:
      delta[0, b] = child
      queue.append(child)
  while queue:
    node = queue.pop(0)
    terminal[node] |= terminal[fail[node]]
    for b in range(256):
      child = goto[node].get(b)
      if child is None:
        delta[node, b] = delta[fail[node], b]
      else:
        fail[child] = delta[fail[node], b]
        delta[node, b] = child
        queue.append(child)
  accept = n
  # Reaching a node that ends a stop string (directly or via a suffix) accepts.
  delta[np.asarray(terminal + [False])[delta]] = accept
  delta[accept] = accept
  return delta


def stop_table(token_texts: Sequence[bytes], strings: Sequence[str]) -> np.ndarray:
  """The per-token transition table of the automaton of `strings`.

  Args:
    token_texts: [V] the bytes each token writes (`token_bytes`).
    strings: non-empty stop strings.
  Returns:
    [S, V] int32, table[state, token] = the state after emitting token;
    state 0 starts a response, state S-1 is ACCEPT (absorbing).
  """
  if not strings or any(not isinstance(s, str) or not s for s in strings):
    raise ValueError(f'stop strings must be non-empty str; got {list(strings)!r}.')
  return _cached_table(tuple(token_texts), tuple(strings))


@functools.lru_cache(maxsize=8)
def _cached_table(token_texts: tuple[bytes, ...], strings: tuple[str, ...]) -> np.ndarray:
  encoded = [s.encode() for s in strings]
  delta = _automaton(encoded)
  v = len(token_texts)
  # A token holding no byte of any stop string sends every state but ACCEPT
  # back to the start, and an empty one (a special token) keeps it; only the
  # others need stepping.
  alphabet = frozenset(b''.join(encoded))
  relevant = np.fromiter((not alphabet.isdisjoint(t) for t in token_texts), bool, v)
  empty = np.fromiter((not t for t in token_texts), bool, v)
  ids = np.nonzero(relevant)[0]
  texts = [token_texts[i] for i in ids]
  lengths = np.fromiter((len(t) for t in texts), np.int64, len(texts))
  width = int(lengths.max(initial=0))
  data = np.zeros((len(texts), max(width, 1)), np.uint8)
  flat = np.frombuffer(b''.join(texts), np.uint8)
  rows = np.repeat(np.arange(len(texts)), lengths)
  cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
  data[rows, cols] = flat
  # At byte j step only the tokens longer than j (a prefix of the tokens
  # sorted by decreasing length).
  order = np.argsort(-lengths, kind='stable')
  longer = len(texts) - np.searchsorted(np.sort(lengths), np.arange(width), side='right')
  accept = delta.shape[0] - 1
  table = np.zeros((delta.shape[0], v), np.int32)
  table[accept] = accept
  for state in range(accept):
    table[state, empty] = state
    cur = np.full(len(texts), state, np.int32)
    for j in range(width):
      live = order[:longer[j]]
      cur[live] = delta[cur[live], data[live, j]]
    table[state, ids] = cur
  table.setflags(write=False)
  return table


def accept_state(table: np.ndarray) -> int:
  """The absorbing ACCEPT state of a `stop_table`."""
  return table.shape[0] - 1
