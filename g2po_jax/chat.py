"""Hugging Face chat templates, rendered with Jinja2 as `transformers` does.

Host only: never imports jax.

A checkpoint's `chat_template` (tokenizer_config.json, or chat_template.jinja
beside it) is a Jinja2 program that turns a list of messages into the prompt
text the model was tuned on. `render_chat` runs it in the same environment
`transformers.PreTrainedTokenizerBase.apply_chat_template` builds (5.x): a
sandbox (templates from the Hub are untrusted code), trim_blocks and
lstrip_blocks, the loop-control extension, a `tojson` filter that does not
escape HTML, `raise_exception` and `strftime_now`, and the transparent
`{% generation %}` block some templates mark assistant text with. The caller
passes the tokenizer's named special tokens (bos_token, eos_token, ...) as
context, as `apply_chat_template` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import datetime
import functools
import json

import jinja2
from jinja2 import ext as jinja2_ext
from jinja2 import nodes as jinja2_nodes
from jinja2 import sandbox as jinja2_sandbox


class _Generation(jinja2_ext.Extension):
  """`{% generation %}...{% endgeneration %}` renders its body unchanged.

  transformers uses the block to find assistant tokens; rendering ignores it.
  """
  tags = {'generation'}

  def parse(self, parser):
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(('name:endgeneration',), drop_needle=True)
    return jinja2_nodes.CallBlock(self.call_method('_body'), [], [], body).set_lineno(lineno)

  def _body(self, caller):
    return caller()


def _raise_exception(message):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  # Jinja's own tojson escapes <, >, & and ' for HTML; chat templates want JSON.
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                    sort_keys=sort_keys)


def _strftime_now(fmt):
  return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
  env = jinja2_sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2_ext.loopcontrols])
  env.filters['tojson'] = _tojson
  env.globals['raise_exception'] = _raise_exception
  env.globals['strftime_now'] = _strftime_now
  return env.from_string(template)


def render_chat(template: str, messages: Sequence[Mapping], *, add_generation_prompt: bool = True,
                **context) -> str:
  """The text a chat template makes of a conversation.

  Args:
    template: the Jinja2 source of a Hugging Face `chat_template`.
    messages: dicts with at least 'role' and 'content', oldest first. Keys
      whose value is None are dropped, as `apply_chat_template` does.
    add_generation_prompt: end with the header of an assistant turn, so the
      model's continuation is its reply.
    **context: more template variables: the tokenizer's named special tokens
      (bos_token='<s>', eos_token=...), tools=[json schemas], documents, or a
      template's own switches (e.g. enable_thinking=False). tools and
      documents default to None.
  Returns:
    The rendered text; tokenize it without adding special tokens.
  Raises:
    ValueError: no messages, a message that is not a dict, a template that
      does not parse, or one that calls raise_exception (the message says why).
  """
  if isinstance(messages, (str, bytes)) or not messages:
    raise ValueError(f'messages must be a non-empty list of dicts; got {messages!r}.')
  bad = [m for m in messages if not isinstance(m, Mapping)]
  if bad:
    raise ValueError(f'every message must be a dict with role and content; got {bad[0]!r}.')
  messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
  try:
    compiled = _compile(template)
  except jinja2.exceptions.TemplateSyntaxError as e:
    raise ValueError(f'the chat template does not parse: {e} (line {e.lineno}).') from None
  context = {'tools': None, 'documents': None, **context}
  try:
    return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           **context)
  except jinja2.exceptions.TemplateError as e:
    raise ValueError(f'the chat template refused the conversation: {e}') from None
