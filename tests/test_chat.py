"""Chat templates: our Jinja2 rendering against `transformers.apply_chat_template`."""

import json

import pytest
import tokenizers as hf_tokenizers

from g2po_jax import chat
from g2po_jax import qwen_tokenizer
from g2po_jax import tokenizers

transformers = pytest.importorskip('transformers')

SYSTEM = {'role': 'system', 'content': 'You are a careful household agent.'}
TURNS = [
    {'role': 'user', 'content': 'Task: put a clean apple in fridge.\nObservation: You arrive.'},
    {'role': 'assistant', 'content': '<think>Find the apple.</think>\n<action>go to '
                                     'countertop 1</action>'},
    {'role': 'user', 'content': 'You arrive at countertop 1. You see an apple 1 (é, 苹果).'},
    {'role': 'assistant', 'content': '<think>Take it.</think>\n<action>take apple 1</action>'},
    {'role': 'user', 'content': '  Now what?  \n\n'},
]
CONVERSATIONS = {
    'one_user_turn': TURNS[:1],
    'system_and_user': [SYSTEM] + TURNS[:1],
    'several_turns': TURNS,
    'several_turns_with_system': [SYSTEM] + TURNS,
    'system_mid_conversation': TURNS[:2] + [SYSTEM] + TURNS[2:3],
}
TOOLS = [{'type': 'function', 'function': {
    'name': 'look', 'description': 'Looks <around> & "reports"',
    'parameters': {'type': 'object', 'properties': {'where': {'type': 'string'}}}}}]
TOOL_CALLS = [
    {'role': 'user', 'content': 'Where am I?'},
    {'role': 'assistant', 'content': '', 'tool_calls': [
        {'type': 'function', 'function': {'name': 'look', 'arguments': {'where': 'kitchen'}}}]},
    {'role': 'tool', 'content': 'A kitchen.'},
    {'role': 'tool', 'content': 'A fridge 1.'},
    {'role': 'assistant', 'content': 'In the kitchen.'},
    {'role': 'user', 'content': 'Thanks.'},
]

# A template that exercises what Qwen's does not: bos/eos from the context,
# trim_blocks/lstrip_blocks around indented tags, tojson of non-ASCII and
# HTML characters, {% generation %}, loop controls and raise_exception.
GENERIC_TEMPLATE = """{{- bos_token }}
{% for m in messages %}
    {% if m.role == 'system' %}
<<SYS>>{{ m.content }}<</SYS>>
    {% elif m.role == 'assistant' %}
assistant: {% generation %}{{ m.content | trim }}{% endgeneration %}{{ eos_token }}
    {% elif m.role == 'user' %}
{{ m.role }}: {{ m.content }} {{ {'n': loop.index, 'text': '<é> & "q"'} | tojson }}
    {% else %}
{{ raise_exception('unknown role ' + m.role) }}
    {% endif %}
    {% if loop.index >= 5 %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
assistant:
{% endif %}"""


def _small_dir(path, template):
  """A byte-level BPE tokenizer directory with <s>, </s> and a chat template."""
  tok = hf_tokenizers.Tokenizer(hf_tokenizers.models.BPE())
  tok.pre_tokenizer = hf_tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = hf_tokenizers.decoders.ByteLevel()
  trainer = hf_tokenizers.trainers.BpeTrainer(
      vocab_size=500, special_tokens=['<s>', '</s>', '<pad>'],
      initial_alphabet=hf_tokenizers.pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator([m['content'] for m in TURNS] * 3, trainer)
  tok.save(str(path / 'tokenizer.json'))
  (path / 'tokenizer_config.json').write_text(json.dumps(
      {'bos_token': '<s>', 'eos_token': '</s>', 'pad_token': '<pad>', 'chat_template': template}))
  return str(path)


@pytest.fixture(name='small_dir', scope='module')
def _small(tmp_path_factory):
  return _small_dir(tmp_path_factory.mktemp('small'), GENERIC_TEMPLATE)


@pytest.fixture(name='qwen_pair', scope='module')
def _qwen_pair(qwen_dir):
  return (tokenizers.load_tokenizer(qwen_dir),
          transformers.AutoTokenizer.from_pretrained(qwen_dir))


def _assert_same(ours, theirs, messages):
  text = ours.apply_chat_template(messages, add_generation_prompt=True)
  assert text == theirs.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  ids = theirs.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                   return_dict=False)
  assert ours.encode(text) == list(ids)
  no_prompt = ours.apply_chat_template(messages, add_generation_prompt=False)
  assert no_prompt == theirs.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=False)
  return text


@pytest.mark.parametrize('name', CONVERSATIONS)
def test_qwen_template_matches_transformers(qwen_pair, name):
  text = _assert_same(*qwen_pair, CONVERSATIONS[name])
  assert text.endswith('<|im_start|>assistant\n')
  has_system = CONVERSATIONS[name][0]['role'] == 'system'
  assert (qwen_tokenizer.DEFAULT_SYSTEM in text) != has_system


def test_qwen_template_with_tools_matches_transformers(qwen_pair):
  ours, theirs = qwen_pair
  for messages in (TOOL_CALLS, [SYSTEM] + TOOL_CALLS):
    text = chat.render_chat(ours.chat_template, messages, tools=TOOLS, eos_token='<|im_end|>')
    assert text == theirs.apply_chat_template(messages, tools=TOOLS, tokenize=False,
                                              add_generation_prompt=True)
    assert '"description": "Looks <around> & \\"reports\\""' in text   # JSON, not HTML
    assert ours.encode(text) == list(theirs.apply_chat_template(
        messages, tools=TOOLS, add_generation_prompt=True, return_dict=False))
  _assert_same(ours, theirs, TOOL_CALLS)     # tool calls without the tools list


@pytest.mark.parametrize('name', CONVERSATIONS)
def test_generic_template_matches_transformers(small_dir, name):
  ours = tokenizers.load_tokenizer(small_dir)
  theirs = transformers.AutoTokenizer.from_pretrained(small_dir)
  text = _assert_same(ours, theirs, CONVERSATIONS[name] * 2)
  assert text.startswith('<s>') and '"<é> & \\"q\\""' in text
  shown = sum(text.count(mark) for mark in ('<<SYS>>', 'assistant: ', '{"n": '))
  assert shown == min(len(CONVERSATIONS[name]) * 2, 5)           # {% break %} after 5


def test_render_chat_features():
  out = chat.render_chat(GENERIC_TEMPLATE, [SYSTEM, TURNS[1]], bos_token='B', eos_token='E')
  assert out == (f'B\n<<SYS>>{SYSTEM["content"]}<</SYS>>\n'
                 f'assistant: {TURNS[1]["content"]}E\nassistant:\n')
  assert chat.render_chat('{{ messages[0].x is defined }}', [{'role': 'u', 'x': None}]) == 'False'
  assert chat.render_chat('{{ tools }}{{ documents }}{{ flag }}', [TURNS[0]], flag=1) == \
      'NoneNone1'
  assert chat.render_chat('{{ add_generation_prompt }}', TURNS) == 'True'
  assert len(chat.render_chat("{{ strftime_now('%Y') }}", TURNS)) == 4


def test_render_chat_errors():
  with pytest.raises(ValueError, match='refused the conversation: unknown role tool'):
    chat.render_chat(GENERIC_TEMPLATE, [{'role': 'tool', 'content': 'x'}], bos_token='')
  with pytest.raises(ValueError, match='does not parse'):
    chat.render_chat('{% if %}', TURNS)
  with pytest.raises(ValueError, match='non-empty list of dicts'):
    chat.render_chat(GENERIC_TEMPLATE, [])
  with pytest.raises(ValueError, match='non-empty list of dicts'):
    chat.render_chat(GENERIC_TEMPLATE, 'hello')
  with pytest.raises(ValueError, match='must be a dict'):
    chat.render_chat(GENERIC_TEMPLATE, ['hello'])
  # The sandbox: templates are untrusted code.
  with pytest.raises(ValueError, match='refused'):
    chat.render_chat("{{ messages.__class__.__subclasses__() }}", TURNS)
  with pytest.raises(ValueError, match='refused'):
    chat.render_chat("{{ messages.append(1) }}", TURNS)
