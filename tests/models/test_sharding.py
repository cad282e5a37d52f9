"""Sharding rules, and a forward pass / sampler on a 2x4 CPU mesh vs one device."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

from g2po_jax.models import sharding

P = jax.sharding.PartitionSpec

# Runs in a fresh process: the fake device count must be set before JAX starts
# and must not leak into other tests.
_MESH_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from g2po_jax import models, sampling
    from g2po_jax.models import sharding

    assert jax.device_count() == 8
    config = models.ModelConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                                num_kv_heads=2, head_dim=8, intermediate_size=64,
                                tie_embeddings=False, value_head=True)
    mesh = sharding.make_mesh(data=2, fsdp=4)
    graphdef, single = nnx.split(models.init_model(config, 0))
    _, sharded = nnx.split(models.init_model(config, 0, mesh))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), single, sharded)
    q = sharded['layers'][0]['attn']['q_kernel'][...]
    assert q.sharding.spec == jax.P('fsdp', None, None), q.sharding
    assert len(q.addressable_shards) == 8 and q.addressable_shards[0].data.shape == (8, 4, 8)

    rng = np.random.RandomState(0)
    tokens = rng.randint(0, 64, (8, 12)).astype(np.int32)
    mask = np.ones((8, 12), bool)
    mask[::2, :3] = False
    mask[1::2, 9:] = False
    data = sharding.batch_sharding(mesh)
    stats = jax.jit(sampling.token_logprobs, static_argnums=0)
    one = stats(graphdef, single, jnp.asarray(tokens), jnp.asarray(mask))
    many = stats(graphdef, sharded, *jax.device_put((tokens, mask), data))
    for a, b in zip(one, many):
      np.testing.assert_allclose(a, b, atol=1e-5)

    loss = lambda p, t, m: stats(graphdef, p, t, m).logp.mean()
    g1 = jax.jit(jax.grad(loss))(single, jnp.asarray(tokens), jnp.asarray(mask))
    g8 = jax.jit(jax.grad(loss))(sharded, *jax.device_put((tokens, mask), data))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g1, g8)

    config = sampling.SamplingConfig(max_new_tokens=5, temperature=0.0)
    lengths = mask.sum(1)
    prompts = np.zeros_like(tokens)
    for row in range(8):
      prompts[row, :lengths[row]] = tokens[row][mask[row]]
    kw = dict(length_buckets=(16,), batch_buckets=(4, 8))
    a = sampling.Sampler(graphdef, config, **kw)(single, prompts, lengths, jax.random.key(0))
    b = sampling.Sampler(graphdef, config, mesh=mesh, **kw)(sharded, prompts, lengths,
                                                            jax.random.key(0))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_allclose(a.logp, b.logp, atol=1e-5)
    print('MESH OK')
''')


@pytest.mark.slow
def test_forward_and_sampling_on_a_2x4_mesh_match_one_device():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _MESH_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=600, check=False,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'MESH OK' in out.stdout


def test_logical_spec_and_rules():
  assert sharding.logical_spec(('batch', None)) == P(('data', 'fsdp'), None)
  assert sharding.logical_spec(('embed', 'mlp')) == P('fsdp', None)
  with pytest.raises(ValueError, match='no rule'):
    sharding.logical_spec(('experts',))


def test_make_mesh():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == sharding.MESH_AXES and mesh.devices.size == jax.device_count()
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
  assert sharding.batch_shards(mesh) == jax.device_count()
  with pytest.raises(ValueError, match='at most one -1'):
    sharding.make_mesh(data=-1, fsdp=-1)
  with pytest.raises(ValueError, match='exactly'):
    sharding.make_mesh(data=jax.device_count() + 1, fsdp=1)
