"""Shardings for running jaxrnn on many devices with JAX's own SPMD machinery.

jaxrnn functions are plain ``jax.jit``-able functions of arrays, so they need nothing
special to run on a ``jax.sharding.Mesh``: put the inputs' batch axis on a mesh
axis, replicate the params, and ``jit`` partitions the whole ``lax.scan`` so that each
device runs the recurrence on its slice of the batch (data parallelism; gradients are
summed by one all-reduce). These helpers name the shardings that do that, and the
tensor-parallel alternative that splits the gate dimension of the weights. See
``docs/scaling.md`` and ``examples/data_parallel.py``.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrnn.core.checks import fail

__all__ = ["batch_sharding", "gate_sharding", "replicated"]

#: Fields whose last axis is ``gates * hidden_size`` in every cell.
_GATE_FIELDS = ("w_x", "w_h", "b_x", "b_h")


def _check_axis(where: str, mesh: Mesh, axis: str) -> None:
    if axis not in mesh.axis_names:
        fail(where, "axis", f"be an axis of the mesh {tuple(mesh.axis_names)}", repr(axis))


def batch_sharding(mesh: Mesh, axis: str = "data", batch_dim: int = 1) -> NamedSharding:
    """Split an array's batch dimension over the mesh axis ``axis``; replicate the rest.

    For time-major ``xs`` of shape ``(time, batch, features)`` the batch is dimension 1
    (the default); for per-sequence arrays (``lengths``, labels) it is dimension 0.

    Args:
      mesh: the device mesh.
      axis: name of the mesh axis that holds the data-parallel replicas.
      batch_dim: which dimension of the array is the batch.

    Returns:
      ``NamedSharding(mesh, PartitionSpec(None, ..., axis))`` with ``axis`` at
      ``batch_dim``.

    Example:
      >>> import jax
      >>> mesh = jax.make_mesh((1,), ("data",))
      >>> batch_sharding(mesh).spec
      P(None, 'data')
    """
    _check_axis("batch_sharding", mesh, axis)
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_dim), axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full array on every device of ``mesh`` (params in data parallelism).

    Example:
      >>> import jax
      >>> replicated(jax.make_mesh((1,), ("data",))).spec
      P()
    """
    return NamedSharding(mesh, PartitionSpec())


def gate_sharding(params: Any, mesh: Mesh, axis: str = "model") -> Any:
    """Shardings that split every cell's gate dimension over the mesh axis ``axis``.

    Tensor parallelism: ``w_x``, ``w_h`` (columns) and ``b_x``, ``b_h`` are split along
    their last axis, ``gates * hidden_size``, into ``mesh.shape[axis]`` contiguous
    blocks; an LSTM projection ``w_proj`` is replicated. Each device computes its block
    of the gates' pre-activations; the step then needs the whole new ``h`` on every
    device, so ``jit`` inserts an all-gather of ``h`` (and collectives for the gate
    split) at every time step. That pays only when the weights dominate (large
    ``hidden_size``, so each device's matmul block is big) and the interconnect is fast;
    for most RNNs data parallelism is cheaper. Results are the same either way.

    Args:
      params: cell or composite params.
      mesh: the device mesh.
      axis: the mesh axis to split the gates over; ``gates * hidden_size`` of every cell
        must be divisible by its size.

    Returns:
      A pytree like ``params`` with a ``NamedSharding`` at each array, for
      ``jax.device_put(params, shardings)`` or ``jit``'s ``in_shardings``.

    Example:
      >>> import jax, jaxrnn
      >>> mesh = jax.make_mesh((1,), ("model",))
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> gate_sharding(params, mesh).w_h.spec
      P(None, 'model')
    """
    _check_axis("gate_sharding", mesh, axis)
    size = mesh.shape[axis]

    def sharding(path: tuple, leaf: jax.Array) -> NamedSharding:
        name = getattr(path[-1], "name", None)
        if name not in _GATE_FIELDS:
            return replicated(mesh)
        if leaf.shape[-1] % size:
            where = jax.tree_util.keystr(path)
            fail(
                "gate_sharding",
                "params",
                f"have gate dimensions divisible by mesh axis {axis!r} of size {size}",
                f"{where} of shape {tuple(leaf.shape)}",
            )
        return NamedSharding(mesh, PartitionSpec(*([None] * (leaf.ndim - 1)), axis))

    return jax.tree_util.tree_map_with_path(sharding, params)
