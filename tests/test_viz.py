"""Tests for g2po_jax/viz.py: the graph of a task group and its picture."""

import io
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from g2po_jax import credit
from g2po_jax import graph as graph_lib
from g2po_jax import viz

# The spec's worked example (section 10): A->B->SUCCESS, A->B->C (fail),
# A->D->E (fail), A->B->SUCCESS.
A, B, C, D, E, END = 1, 2, 3, 4, 5, 99
STATE = np.array([[A, B], [A, B], [A, D], [A, B]], np.uint64)
NEXT = np.array([[B, END], [B, C], [D, E], [B, END]], np.uint64)
REWARD = np.array([[0, 10], [0, 0], [0, 0], [0, 10]], np.float32)
VALID = np.ones((4, 2), bool)
MASK = np.ones((4, 2), bool)
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _advantages(state, next_state, reward, valid, mask, name='g2po'):
  return np.asarray(credit.estimate(name, group=np.zeros(len(mask), np.int32), state=state,
                                    next_state=next_state, reward=reward, valid=valid,
                                    mask=mask))


def _image(png: bytes) -> Image.Image:
  assert png.startswith(PNG_MAGIC)
  image = Image.open(io.BytesIO(png))
  image.load()
  return image


def test_worked_example_graph():
  adv = _advantages(STATE, NEXT, REWARD, VALID, MASK)
  g = viz.group_graph(STATE, NEXT, REWARD, VALID, MASK, adv, success_reward=10.0, gamma=0.95)
  assert set(g.nodes) == {A, B, C, D, E, viz.SUCCESS}    # END: successes go to SUCCESS
  assert {n: g.nodes[n]['visits'] for n in g} == {A: 4, B: 3, C: 0, D: 1, E: 0,
                                                 viz.SUCCESS: 2}
  # V = mean over visits of gamma^(T - j) * R (spec 5.1-5.2).
  assert g.nodes[A]['value'] == pytest.approx(2 * 0.95**2 * 10 / 4)
  assert g.nodes[B]['value'] == pytest.approx(2 * 0.95 * 10 / 3)
  assert np.isnan(g.nodes[C]['value']) and np.isnan(g.nodes[E]['value'])
  assert {n: g.nodes[n]['layer'] for n in g} == {A: 0, B: 1, D: 1, C: 2, E: 2,
                                                 viz.SUCCESS: 3}
  edges = {(u, v, k): d['steps'] for u, v, k, d in g.edges(keys=True, data=True)}
  assert edges == {(A, B, 'success'): 2, (A, B, 'fail'): 1, (B, viz.SUCCESS, 'success'): 2,
                   (B, C, 'fail'): 1, (A, D, 'fail'): 1, (D, E, 'fail'): 1}
  assert g.edges[A, B, 'success']['advantage'] == pytest.approx(adv[0, 0])
  assert g.edges[B, C, 'fail']['advantage'] == pytest.approx(adv[1, 1])


def test_node_values_match_the_estimators():
  rng = np.random.default_rng(3)
  state = rng.integers(0, 5, (6, 7)).astype(np.uint64)
  next_state = rng.integers(0, 5, (6, 7)).astype(np.uint64)
  lengths = rng.integers(1, 8, 6)
  mask = np.arange(7)[None] < lengths[:, None]
  reward = np.zeros((6, 7), np.float32)
  reward[np.arange(6), lengths - 1] = rng.choice([0.0, 10.0], 6)
  adv = np.zeros((6, 7), np.float32)
  g = viz.group_graph(state, next_state, reward, mask, mask, adv, success_reward=10.0,
                      gamma=0.9)
  graph = graph_lib.build_graph(np.zeros(6), state, next_state, mask, pad=False)
  expected = np.asarray(credit.node_values(reward, mask, graph, gamma=0.9))
  for b, t in zip(*np.nonzero(mask)):
    assert g.nodes[int(state[b, t])]['value'] == pytest.approx(
        expected[graph.node[b, t]], rel=1e-5)


def test_renders_the_worked_example():
  adv = _advantages(STATE, NEXT, REWARD, VALID, MASK)
  image = _image(viz.render_group_graph(STATE, NEXT, REWARD, VALID, MASK, adv,
                                        success_reward=10.0, title='worked example'))
  assert image.width > 400 and image.height > 300


@pytest.mark.parametrize('case', ['self_loops', 'singleton', 'all_fail', 'one_step'])
def test_renders_degenerate_groups(case):
  if case == 'self_loops':        # invalid actions keep the state: loops, revisits
    state = np.array([[A, A, A, B], [A, B, B, B]], np.uint64)
    next_state = np.array([[A, A, B, END], [B, B, B, C]], np.uint64)
    valid = np.array([[False, False, True, True], [True, False, False, True]])
    reward = np.array([[0, 0, 0, 10], [0, 0, 0, 0]], np.float32)
    mask = np.ones((2, 4), bool)
  elif case == 'singleton':       # one attempt
    state, next_state = STATE[:1], NEXT[:1]
    reward, valid, mask = REWARD[:1], VALID[:1], MASK[:1]
  elif case == 'all_fail':        # SUCCESS unreached; padding after short attempts
    state, next_state = STATE[1:3], NEXT[1:3]
    reward, valid = REWARD[1:3], VALID[1:3]
    mask = np.array([[True, True], [True, False]])
  else:                           # the first action wins
    state, next_state = np.array([[A]], np.uint64), np.array([[END]], np.uint64)
    reward = np.array([[10.0]], np.float32)
    valid = mask = np.ones((1, 1), bool)
  adv = _advantages(state, next_state, reward, valid, mask)
  image = _image(viz.render_group_graph(state, next_state, reward, valid, mask, adv,
                                        success_reward=10.0, dpi=60))
  assert image.width > 100
  g = viz.group_graph(state, next_state, reward, valid, mask, adv, success_reward=10.0)
  assert viz.SUCCESS in g
  if case == 'self_loops':
    assert g.edges[A, A, 'success']['steps'] == 2 and g.edges[A, A, 'success']['invalid'] == 2
    assert g.edges[B, B, 'fail']['steps'] == 2
  if case == 'all_fail':
    assert g.in_degree(viz.SUCCESS) == 0 and g.nodes[viz.SUCCESS]['visits'] == 0


def test_rejects_bad_input():
  adv = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match='next_key must be'):
    viz.render_group_graph(STATE, NEXT[:3], REWARD, VALID, MASK, adv, success_reward=10.0)
  with pytest.raises(ValueError, match='prefix'):
    viz.group_graph(STATE, NEXT, REWARD, VALID, np.array([[False, True]] * 4), adv,
                    success_reward=10.0)
  with pytest.raises(ValueError, match='advantages is NaN'):
    viz.group_graph(STATE, NEXT, REWARD, VALID, MASK, np.full((4, 2), np.nan),
                    success_reward=10.0)
  with pytest.raises(ValueError, match='no real steps'):
    viz.group_graph(STATE, NEXT, REWARD, VALID, np.zeros((4, 2), bool), adv,
                    success_reward=10.0)


def _batch(**kwargs) -> viz.Batch:
  # Two task groups: the worked example (2 of 4 succeed), and 2 successes.
  fields = dict(
      group=np.array([7, 7, 7, 7, 3, 3]),
      state_key=np.concatenate([STATE, STATE[:1], STATE[:1]]),
      next_key=np.concatenate([NEXT, NEXT[:1], NEXT[:1]]),
      reward=np.concatenate([REWARD, REWARD[:1], REWARD[:1]]),
      valid=np.ones((6, 2), bool), mask=np.ones((6, 2), bool),
      advantages=np.linspace(-1, 1, 12, dtype=np.float32).reshape(6, 2),
      success_reward=10.0, gamma=0.95, estimator='g2po', iteration=12)
  return viz.Batch(**{**fields, **kwargs})


def test_save_load_round_trip(tmp_path):
  batch = _batch()
  path = viz.batch_path(str(tmp_path), 12)
  viz.save_batch(path, batch)
  loaded = viz.load_batch(path)
  for field in viz.Batch._fields:
    np.testing.assert_array_equal(getattr(loaded, field), getattr(batch, field))
  assert loaded.state_key.dtype == np.uint64 and loaded.mask.dtype == bool
  assert loaded.estimator == 'g2po' and loaded.iteration == 12


def test_render_batch_picks_the_mixed_group():
  batch = _batch()
  assert list(viz.groups(batch.group)) == [7, 3]
  assert viz.interesting_group(batch) == 0         # 2 of 4 succeeded, not 2 of 2
  _image(viz.render_batch(batch))
  _image(viz.render_batch(batch, 1, dpi=50))
  with pytest.raises(ValueError, match=r'group index must lie in \[0, 2\)'):
    viz.render_batch(batch, 2)


def test_save_rejects_malformed_batches(tmp_path):
  with pytest.raises(ValueError, match='reward must be'):
    viz.save_batch(str(tmp_path / 'b.npz'), _batch(reward=np.zeros((6, 3))))
  with pytest.raises(ValueError, match='group must be'):
    viz.save_batch(str(tmp_path / 'b.npz'), _batch(group=np.zeros((6, 1))))
  np.savez(tmp_path / 'other.npz', x=np.zeros(3))
  with pytest.raises(ValueError, match='missing'):
    viz.load_batch(str(tmp_path / 'other.npz'))


def test_import_stays_light():
  code = ('import sys, g2po_jax.viz; heavy = {"matplotlib", "networkx", "jax"} & '
          'set(sys.modules); assert not heavy, heavy')
  subprocess.run([sys.executable, '-c', code], check=True)
