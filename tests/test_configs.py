"""Every experiment config builds, validates, and so does every sweep member."""

import importlib
import pathlib

import pytest

from g2po_jax.train import config as config_lib

CONFIGS = sorted(p.stem for p in pathlib.Path(__file__).parent.parent.glob('configs/*.py')
                 if p.stem not in ('__init__', 'common'))
# Arguments a config is checked with (besides none).
ARGS = {'qwen2_5_1_5b_alfworld_like': 'init_from=/models/Qwen2.5-1.5B-Instruct',
        'household_small_think': 'init_from=/runs/think_sft/policy,credit=grpo'}


@pytest.mark.parametrize('name', CONFIGS)
def test_config_and_its_sweep_validate(name):
  module = importlib.import_module(f'configs.{name}')
  config_lib.validate(module.get_config())
  config_lib.validate(module.get_config(ARGS.get(name)))
  sweeps = [getattr(module, f) for f in dir(module) if f.startswith('sweep')]
  assert sweeps, 'the config declares no sweep'
  for sweep in sweeps:
    members = []
    sweep(members.append)
    assert members, f'{sweep.__name__} declares no member'
    for overrides in members:
      c = module.get_config(ARGS.get(name))
      c.update_from_flattened_dict(overrides)
      config_lib.validate(c)


def test_runlocal_args_and_typos():
  module = importlib.import_module('configs.household_small_g2po')
  assert module.get_config('runlocal').num_iterations < module.get_config().num_iterations
  with pytest.raises(ValueError, match='runlcal'):
    module.get_config('runlcal')
  with pytest.raises(ValueError, match='init_frm'):
    importlib.import_module('configs.qwen2_5_1_5b_alfworld_like').get_config('init_frm=/x')
