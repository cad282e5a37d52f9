"""The jitted estimators agree with the dict-and-loop reference (1e-4)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from g2po_jax import credit
from tests.credit import reference
from tests.credit.strategies import batches

NORM = st.sampled_from(['mean_std_norm', 'mean_norm'])
UNIT = st.sampled_from([0.5, 0.9, 0.95, 1.0])
WEIGHT = st.sampled_from([0.0, 0.8, 1.0])

OPTIONS = {
    'grpo': st.fixed_dictionaries({'norm': NORM, 'penalty': st.sampled_from([0.0, 0.1]),
                                   'level': st.sampled_from(['step', 'trajectory'])}),
    'rloo': st.just({}),
    'gigpo': st.fixed_dictionaries({'norm': NORM, 'gamma': UNIT, 'step_weight': WEIGHT}),
    'g2po': st.fixed_dictionaries({
        'norm': NORM, 'gamma': UNIT, 'penalty': st.sampled_from([0.0, 0.1]),
        'episode_weight': WEIGHT, 'node_weight': WEIGHT, 'edge_weight': WEIGHT,
        'td_form': st.sampled_from(['code', 'paper']), 'td_gamma': UNIT}),
    'graphgpo': st.fixed_dictionaries({'norm': NORM, 'omega': st.sampled_from([0.1, 0.5]),
                                       'distance_form': st.sampled_from(['next', 'reduction'])}),
    'hgpo': st.fixed_dictionaries({'norm': NORM, 'gamma': UNIT, 'history': st.integers(0, 3),
                                   'alpha': st.sampled_from([0.0, 1.0, 2.0]),
                                   'episode_weight': WEIGHT}),
    'gagpo': st.fixed_dictionaries({'norm': NORM, 'gamma': UNIT, 'lam': UNIT}),
}


def _check(name, batch, options):
  got = np.asarray(credit.estimate(name, **batch, **options))
  want = np.asarray(reference.estimate(name, **batch, **options))
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4,
                             err_msg=f'{name} {options}')
  assert (got[~batch['mask']] == 0).all()


def _agreement_test(name):
  @settings(max_examples=60, deadline=None)
  @given(batch=batches(), options=OPTIONS[name])
  def test(batch, options):
    _check(name, batch, options)
  return test


test_grpo_matches_reference = _agreement_test('grpo')
test_rloo_matches_reference = _agreement_test('rloo')
test_gigpo_matches_reference = _agreement_test('gigpo')
test_g2po_matches_reference = _agreement_test('g2po')
test_graphgpo_matches_reference = _agreement_test('graphgpo')
test_hgpo_matches_reference = _agreement_test('hgpo')
test_gagpo_matches_reference = _agreement_test('gagpo')


@settings(max_examples=15, deadline=None)
@given(batch=batches(max_rows=24, max_steps=12, num_keys=8))
def test_g2po_matches_reference_on_larger_batches(batch):
  _check('g2po', batch, {})
