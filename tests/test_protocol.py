"""Tests of the prompt protocols: layouts, stop settings and the tag rules."""

import subprocess
import sys

import pytest

from g2po_jax import envs
from g2po_jax import protocol
from g2po_jax import tokenizers

TASK = 'put a clean apple in fridge.'
HISTORY = [('You are in the middle of a room.', 'go to countertop 1'),
           ('You arrive at countertop 1. You see an apple 1.', 'take apple 1 from countertop 1'),
           ('You pick up the apple 1.', 'go to sinkbasin 1')]
OBSERVATION = 'You arrive at sinkbasin 1.'
ADMISSIBLE = ['clean apple 1 with sinkbasin 1', 'go to fridge 1', 'look']


class _Chat(tokenizers.WordTokenizer):
  """A word tokenizer with a one-line-per-message chat template (no files)."""

  @property
  def chat_template(self):
    return 'unused'

  def apply_chat_template(self, messages, add_generation_prompt=True):
    text = ''.join(f'[{m["role"]}]{m["content"]}[/{m["role"]}]' for m in messages)
    return text + ('[assistant]' if add_generation_prompt else '')


@pytest.fixture(name='chat')
def _chat():
  return _Chat(tokenizers.WordTokenizer.SPECIALS)


def _prompt(p, tok, **kw):
  args = dict(task=TASK, history=HISTORY, observation=OBSERVATION, admissible=ADMISSIBLE,
              step=len(HISTORY), max_history=2)
  return p.prompt(tok, **{**args, **kw})


@pytest.mark.parametrize('response, action', [
    ('<think>The apple is dirty.</think>\n<action>clean apple 1 with sinkbasin 1</action>',
     'clean apple 1 with sinkbasin 1'),
    ('<think>\nmulti\nline\n</think>\n\n<action>look</action>', 'look'),
    ('<action>   go to\n  fridge 1 \n</action>', 'go to fridge 1'),     # whitespace collapses
    ('<action>look</action>\n', 'look'),                               # the stop token's tail
    ('<action>look</action> and more text', 'look'),                   # text after the block
    ('<action>look</action></think>', 'look'),
    ('<action>look</action>', 'look'),                                 # no <think>: allowed
    ('<think>unclosed reasoning <action>look</action>', 'look'),       # unclosed <think>
    ('</think><action>look</action>', 'look'),
    ('<action>Go To Fridge 1</action>', 'Go To Fridge 1'),             # case is the env's
    ('<action>take <b>apple</b></action>', 'take <b>apple</b>'),
])
def test_well_formed_actions(response, action):
  parsed = protocol.make_protocol('think_action', 'household').parse(response)
  assert parsed == protocol.Parsed(action, False)
  assert parsed.env_action == action


@pytest.mark.parametrize('response', [
    '',
    'go to fridge 1',                                          # missing tags
    '<think>I should look.</think>',
    '<action></action>',                                       # empty
    '<action>  \n </action>',                                  # blank
    '<action>look',                                            # unclosed (cut at max tokens)
    '<think>hmm</think><action>look around the room',
    'look</action>',                                           # closing alone
    '</action>look<action>',                                   # closing first
    '<action>look</action><action>go to fridge 1</action>',    # repeated
    '<action><action>look</action></action>',                  # nested
    '<action>look<action>go</action>',
    '<think>I will answer with <action>x</action></think><action>look</action>',
    '<ACTION>look</ACTION>',                                   # upper case
    '<Action>look</Action>',
    '<action>look</ACTION>',
    '< action>look</ action>',
])
def test_format_errors(response):
  parsed = protocol.make_protocol('think_action', 'shop').parse(response)
  assert parsed == protocol.Parsed(None, True)
  assert parsed.env_action == ''


def test_format_error_action_is_inadmissible_in_every_environment():
  """'' (what a format error sends) is a no-op with valid=False everywhere."""
  for name in ('household-small', 'shop-small'):
    with envs.make(name) as env:
      before = env.reset([3])[0]
      after = env.step([protocol.Parsed(None, True).env_action])[0]
      assert not after.valid and not after.done
      assert after.state_key == before.state_key, name


def test_line_protocol_is_todays_prompt_and_first_line(chat):
  p = protocol.make_protocol('line', 'household-small')
  assert (p.stop_strings, p.stop_at_newline) == ((), True)
  assert _prompt(p, chat) == tokenizers.format_prompt(TASK, HISTORY, OBSERVATION, ADMISSIBLE,
                                                      max_history=2)
  assert p.parse(' go to fridge 1\n<think>') == protocol.Parsed('go to fridge 1', False)
  assert p.parse('') == protocol.Parsed('', False)


def test_think_action_message_layout(chat):
  p = protocol.make_protocol('think_action', 'household')
  assert (p.stop_strings, p.stop_at_newline) == (('</action>',), False)
  message = p.message(task=TASK, history=HISTORY, observation=OBSERVATION,
                      admissible=ADMISSIBLE, step=3, max_history=2)
  lines = message.split('\n')
  assert lines[0].endswith(f'Your task is to: {TASK}')
  assert lines[1].startswith('Before this step you took 3 step(s). Your last 2 ')
  assert lines[2:6] == [f'Observation 2: {HISTORY[1][0]}', f'Action 2: {HISTORY[1][1]}',
                        f'Observation 3: {HISTORY[2][0]}', f'Action 3: {HISTORY[2][1]}']
  assert lines[6] == f'You are now at step 4 and your current observation is: {OBSERVATION}'
  assert lines[8:11] == ADMISSIBLE
  assert '<think> </think>' in lines[-1] and '<action> </action>' in lines[-1]
  assert 'exactly one admissible action' in lines[-1]
  # The first step, and a prompt without history, show no history.
  for kw in (dict(history=[], step=0), dict(max_history=0)):
    args = dict(task=TASK, history=HISTORY, observation=OBSERVATION, admissible=ADMISSIBLE,
                step=3, max_history=2)
    text = p.message(**{**args, **kw})
    assert 'Observation 1' not in text and 'Before this step' not in text
  # A step whose reply was a format error ('' sent to the environment).
  text = p.message(task=TASK, history=[('o', '')], observation='o', admissible=[], step=1,
                   max_history=2)
  assert 'Action 1: (none: the reply had no well-formed <action> block)' in text
  # The whole prompt is the user message under the chat template.
  assert _prompt(p, chat) == f'[user]{message}[/user][assistant]'


def test_system_prompt_comes_first(chat):
  p = protocol.make_protocol('think_action', 'twx-coin', system_prompt='Be terse.')
  assert _prompt(p, chat).startswith('[system]Be terse.[/system][user]You are an expert '
                                     'player of Coin Collector')
  for empty in (None, ''):   # the template's own default then applies
    p = protocol.make_protocol('think_action', 'twx-coin', system_prompt=empty)
    assert _prompt(p, chat).startswith('[user]')


def test_per_environment_wording():
  assert set(protocol.WORDINGS) == set(envs.NAMES)
  texts = {name: protocol.make_protocol('think_action', name).message(
      task='t', history=[], observation='o', admissible=['search[...]', 'look'], step=0,
      max_history=2) for name in envs.NAMES}
  assert 'household' in texts['household'] and texts['household'] == texts['household-small']
  assert 'web shop' in texts['shop'] and 'write your own query' in texts['shop']
  assert 'buying the right product' in texts['shop-small']
  assert 'CookingWorld' in texts['twx-cooking'] and 'Your goal: t' in texts['twx-cooking']
  assert 'TextWorld Commonsense' in texts['twx-twc']
  assert 'write your own query' not in texts['household']


def test_errors(chat):
  with pytest.raises(ValueError, match='protocol must be one of line, think_action'):
    protocol.make_protocol('react', 'household')
  with pytest.raises(ValueError, match='env_name must be one of'):
    protocol.make_protocol('think_action', 'webarena')
  with pytest.raises(ValueError, match='env_name must be one of'):
    protocol.make_protocol('line', 'webarena')
  with pytest.raises(ValueError, match='think_action protocol only'):
    protocol.make_protocol('line', 'household', system_prompt='x')
  p = protocol.make_protocol('think_action', 'household')
  with pytest.raises(ValueError, match='max_history must be >= 0'):
    _prompt(p, chat, max_history=-1)
  with pytest.raises(ValueError, match=r'cannot be below len\(history\)'):
    _prompt(p, chat, step=1)
  word = tokenizers.WordTokenizer.from_vocabulary(['look'])
  with pytest.raises(ValueError, match='WordTokenizer has no chat template'):
    _prompt(p, word)


def test_protocol_module_does_not_import_jax():
  code = 'import sys, g2po_jax.protocol; print("jax" in sys.modules)'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == 'False'


@pytest.mark.parametrize('name', protocol.PROTOCOLS)
def test_render_parses_back_and_rejects_what_would_not(name):
  p = protocol.make_protocol(name, 'household')
  for action in ('go to fridge 1', 'take <b>apple</b>', '  look  '):
    assert p.parse(p.render(action, 'The apple is in the fridge.')) == protocol.Parsed(
        action.strip(), False)
  for bad in ('', '  ', 'go to\nfridge 1', '<action>look</action>', 'look</action>'):
    with pytest.raises(ValueError, match='one non-blank line'):
      p.render(bad, '')
  if name == 'think_action':
    assert p.render('look', ' Why not. ') == '<think>Why not.</think>\n<action>look</action>'
    with pytest.raises(ValueError, match='reasoning must not hold'):
      p.render('look', 'I will write <action>look</action>')
