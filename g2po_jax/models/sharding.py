"""Where arrays live on a device mesh: the one table of logical axis rules.

Model code names only logical axes ('embed', 'mlp', ...). `RULES` maps them
to the mesh axes ('data', 'fsdp'): the batch is split over both (data
parallel x fully-sharded data parallel) and every weight matrix is split over
'fsdp' along its model-width dimension, so each device holds 1/fsdp of the
parameters and XLA gathers them layer by layer. fsdp=1 is plain data
parallelism. This module is the only place that names mesh axes.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx
import jax
import numpy as np

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding

MESH_AXES = ('data', 'fsdp')

RULES = (
    ('batch', ('data', 'fsdp')),
    ('embed', 'fsdp'),
    ('vocab', None),
    ('mlp', None),
    ('heads', None),
    ('kv_heads', None),
    ('head_dim', None),
    ('norm', None),
)


def make_mesh(data: int = -1, fsdp: int = 1,
              devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A ('data', 'fsdp') mesh with Auto axes; -1 on one axis means 'the rest'.

  Auto axis types keep plain jit + NamedSharding code working outside
  `jax.set_mesh` (jax 0.10's make_mesh defaults to Explicit axes).
  """
  devices = list(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(np.asarray(devices).reshape(mesh_shape(data, fsdp, len(devices))),
                           MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)


def mesh_shape(data: int, fsdp: int, num_devices: int) -> tuple[int, int]:
  """(data, fsdp) sizes of a mesh over `num_devices`; -1 on one axis: the rest.

  Raises:
    ValueError: a size below -1 or 0, two -1s, or sizes whose product is not
      `num_devices`.
  """
  if (data == -1) + (fsdp == -1) > 1 or min(data, fsdp) == 0 or min(data, fsdp) < -1:
    raise ValueError(f'data and fsdp must be positive, with at most one -1; '
                     f'got data={data}, fsdp={fsdp}.')
  shape = (num_devices // fsdp if data == -1 else data,
           num_devices // data if fsdp == -1 else fsdp)
  if shape[0] * shape[1] != num_devices:
    raise ValueError(f'mesh data={shape[0]} x fsdp={shape[1]} does not use the {num_devices} '
                     f'devices exactly.')
  return shape


def logical_spec(axes: Sequence[str | None]) -> P:
  """The PartitionSpec of an array whose dimensions have these logical names."""
  rules = dict(RULES)
  unknown = [a for a in axes if a is not None and a not in rules]
  if unknown:
    raise ValueError(f'logical axes {unknown} have no rule; known: {sorted(rules)}.')
  return P(*(None if a is None else rules[a] for a in axes))


def batch_sharding(mesh: jax.sharding.Mesh, ndim: int = 2) -> NamedSharding:
  """Sharding of a [B, ...] array whose leading dimension is the batch."""
  return NamedSharding(mesh, logical_spec(('batch',) + (None,) * (ndim - 1)))


def batch_shards(mesh: jax.sharding.Mesh) -> int:
  """How many pieces the batch dimension is cut into (B must divide by it)."""
  axes = dict(RULES)['batch']
  return int(np.prod([mesh.shape[a] for a in axes]))


def param_shardings(params: nnx.State, mesh: jax.sharding.Mesh) -> nnx.State:
  """NamedShardings for a params State (concrete or from `nnx.eval_shape`).

  The result has the structure of `params`, so it can be passed as
  `in_shardings`/`out_shardings` of a jit that takes or returns them.
  """
  with nnx.logical_axis_rules(RULES):
    return nnx.get_named_sharding(params, mesh)
