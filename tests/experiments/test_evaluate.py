"""`python -m experiments.evaluate`: success per task type and the transfer
diagnostics, on a policy directory or a training workdir."""

import json
import os
import subprocess
import sys

import numpy as np

from g2po_jax import envs
from g2po_jax import tokenizers
from g2po_jax.models import qwen2
from g2po_jax.train import checkpoint as ckpt_lib
from g2po_jax.train import evaluate as evaluate_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INTRO = ('-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking '
         'quickly around you, you see a cabinet 2, a cabinet 1, and a sinkbasin 1.\n\nYour '
         'task is to: put a clean mug in cabinet.')


def test_the_room_is_read_from_the_first_observation():
  assert evaluate_lib._room(INTRO) == {'cabinet 2', 'cabinet 1', 'sinkbasin 1'}
  assert evaluate_lib._room('You arrive at cabinet 1. The cabinet 1 is closed.') is None


def test_actions_naming_receptacles_the_room_lacks_are_counted():
  class Fake:
    name, max_steps = 'fake', 5

    def reset(self, seeds):
      return [envs.TimeStep(INTRO, 'put a clean mug in cabinet.', ('go to cabinet 1',),
                            0.0, False, False, True, 'k')] * len(seeds)

    def step(self, actions):
      return [envs.TimeStep('Nothing happens.', '', ('look',), 0.0, False, False, False, 'k')
              for _ in actions]

    def close(self):
      pass

  recorder = evaluate_lib.Recorder(Fake())
  recorder.reset([0])
  for action in ('go to fridge 1', 'go to cabinet 2', 'clean mug 1 with sinkbasin 1',
                 'move mug 1 to countertop 1', 'look'):
    recorder.step([action])
  tokenizer = tokenizers.WordTokenizer.from_vocabulary(['go', 'to', 'cabinet', '1', 'look'])
  r = type('R', (), {'prompt_lengths': np.array([10, 20])})()
  out = evaluate_lib.transfer_metrics(recorder, tokenizer, r, prompt_len=20)
  assert out['absent_receptacle_actions'] == 2 / 5        # fridge 1, countertop 1
  assert out['receptacle_actions'] == 4 / 5               # all but look
  assert out['cut_prompts'] == 0.5
  assert out['unknown_word_tasks'] == 1.0
  assert out['unknown_word_actions'] == 0.0               # 'go to cabinet 1', 'look' x5


def test_a_policy_directory_is_evaluated_per_task_type(tmp_path):
  env = envs.make('household-small')
  tokenizer = tokenizers.make_tokenizer('word', env)
  model = qwen2.init_model(qwen2.make_config('micro', vocab_size=tokenizer.vocab_size), seed=0)
  ckpt_lib.save_policy(str(tmp_path / 'policy'), model, tokenizer)
  out = tmp_path / 'eval.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.evaluate', f'--policy={tmp_path / "policy"}',
       '--env=household-small', '--config=configs/household_small_g2po.py',
       '--config.eval.num_tasks=6', '--config.env.max_steps=3', f'--out={out}'],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr
  results = json.loads(out.read_text())
  assert results['num_tasks'] == 6 and results['env'] == 'household-small'
  assert any(k.startswith('eval/success/') for k in results)
  assert results['unknown_word_actions'] == 0.0           # its own vocabulary
  assert 0.0 <= results['absent_receptacle_actions'] <= 1.0
  assert 'eval/success' in proc.stdout


def test_a_bad_policy_path_is_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.evaluate', f'--policy={tmp_path / "nothing"}',
       '--env=household-small', '--config=configs/household_small_g2po.py'],
      capture_output=True, text=True, cwd=REPO, timeout=600)
  assert proc.returncode == 1
  lines = [l for l in proc.stderr.strip().splitlines() if l]
  assert len(lines) == 1 and 'neither a training workdir' in lines[0], proc.stderr
