"""Shardings for running jaxrnn on many devices with JAX's own SPMD machinery.

jaxrnn functions are plain ``jax.jit``-able functions of arrays, so they need nothing
special to run on a ``jax.sharding.Mesh``: put the inputs' batch axis on a mesh
axis, replicate the params, and ``jit`` partitions the whole ``lax.scan`` so that each
device runs the recurrence on its slice of the batch (data parallelism; gradients are
summed by one all-reduce). These helpers name the shardings that do that, the
tensor-parallel alternative that splits the gate dimension of the weights, and the
optimizer state's shardings that go with either. See ``docs/scaling.md`` and
``examples/data_parallel.py``.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrnn.core.checks import check_int, fail

__all__ = ["batch_sharding", "gate_sharding", "optimizer_sharding", "replicated"]

#: Fields whose last axis is ``gates * hidden_size`` in every cell.
_GATE_FIELDS = ("w_x", "w_h", "b_x", "b_h")


def _check_mesh(where: str, mesh: Any) -> None:
    if not isinstance(mesh, Mesh):
        expected = "be a jax.sharding.Mesh (jax.make_mesh(...))"
        fail(where, "mesh", expected, type(mesh).__name__, TypeError)


def _check_axis(where: str, mesh: Mesh, axis: str) -> None:
    _check_mesh(where, mesh)
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
    batch_dim = check_int("batch_sharding", "batch_dim", batch_dim, minimum=0)
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_dim), axis))


def replicated(mesh: Mesh) -> NamedSharding:
    """The same full array on every device of ``mesh`` (params in data parallelism).

    Example:
      >>> import jax
      >>> replicated(jax.make_mesh((1,), ("data",))).spec
      P()
    """
    _check_mesh("replicated", mesh)
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
    if not hasattr(params, "initial_carry"):
        fail("gate_sharding", "params", "be jaxrnn params", type(params).__name__, TypeError)
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


def optimizer_sharding(
    optimizer: optax.GradientTransformation, params: Any, params_sharding: Any, mesh: Mesh
) -> Any:
    """Shardings for ``optimizer.init(params)`` that match the params' shardings.

    The parts of the state shaped like the params (Adam's ``mu`` and ``nu``, momentum)
    get ``params_sharding``: under :func:`gate_sharding` each device keeps the moments of
    its own block of the gates. Everything else, such as optax's step ``count`` (a
    scalar), is replicated on every device of ``mesh``. Left to itself it would not be:
    ``optimizer.init`` creates ``count`` on the default device (with several processes, a
    different one in each), and ``jax.jit(optimizer.init)`` without ``out_shardings``
    puts the whole state on one device (on a ``Mesh`` with the default axis types),
    since the state depends only on the params' shapes. Create the state in place
    instead::

        shardings = optimizer_sharding(optimizer, params, params_sharding, mesh)
        opt_state = jax.jit(optimizer.init, out_shardings=shardings)(params)

    and pass ``shardings`` as the state's ``in_shardings`` and ``out_shardings`` of the
    jitted train step. Uses ``optax.tree_map_params``, so the optimizer must build its
    state from the params' structure (``optax.masked`` needs its own mapping).

    Args:
      optimizer: the optax transformation.
      params: the params, or their ``jax.ShapeDtypeStruct``s (``jax.eval_shape``).
      params_sharding: a ``Sharding`` for each leaf of ``params``, or for whole subtrees
        (a pytree prefix of ``params``, e.g. ``{"rnn": gate_sharding(...), "head":
        replicated(mesh)}``).
      mesh: the device mesh; the state's other leaves are replicated over all of it.

    Returns:
      A pytree like ``optimizer.init(params)`` with a ``Sharding`` at each array.

    Example:
      >>> import jax, optax, jaxrnn
      >>> mesh = jax.make_mesh((1,), ("model",))
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> shardings = optimizer_sharding(
      ...     optax.adam(1e-3), params, gate_sharding(params, mesh), mesh)
      >>> adam = shardings[0]
      >>> adam.count.spec, adam.mu.w_h.spec
      (P(), P(None, 'model'))
    """
    _check_mesh("optimizer_sharding", mesh)
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        fail(
            "optimizer_sharding",
            "optimizer",
            "be an optax optimizer (optax.adam(1e-3), ...)",
            type(optimizer).__name__,
            TypeError,
        )
    leaf_shardings = jax.tree.map(
        lambda sharding, subtree: jax.tree.map(lambda _: sharding, subtree),
        params_sharding,
        params,
    )
    return optax.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        jax.eval_shape(optimizer.init, params),
        leaf_shardings,
        transform_non_params=lambda _: replicated(mesh),
    )
