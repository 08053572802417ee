"""The carry as a model part: a learned initial state, and the full carry at every step."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn._cellwise import is_composite, map_cells
from jaxrnn._checks import check_tree_like, fail
from jaxrnn._pytree import params_class, static_field
from jaxrnn.cells._base import Cell
from jaxrnn.regularization import Regularized, training_steps
from jaxrnn.unrolling import Run, init_carry, register_unroller, unroll_params

__all__ = ["CarryOutputs", "LearnedInit", "learned_init", "with_carry_outputs"]


@params_class
class LearnedInit(Cell):
    """A cell whose initial carry is a parameter; see [`learned_init`][jaxrnn.learned_init].

    ``zero_carry`` (hence [`init_carry`][jaxrnn.init_carry] and ``unroll(params, None, xs)``)
    gives ``carry0`` broadcast to the batch shape instead of zeros.
    """

    cell: Any  # params of the wrapped cell
    carry0: Any  # the cell's carry for one sequence: init_carry(cell, ())'s structure

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.cell.input_shape

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def zero_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return jax.tree.map(
            lambda c: jnp.broadcast_to(c.astype(dtype), (*batch_shape, *c.shape)), self.carry0
        )

    def input_projection(self, x: jax.Array) -> Any:
        return self.cell.input_projection(x)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        return self.cell.recurrence(carry, projected)


def _unroll_learned_init(params: LearnedInit, carry: Any, xs: jax.Array, run: Run):
    # The initial carry is already in `carry`; from here on the wrapped cell runs as usual.
    return unroll_params(params.cell, carry, xs, run)


register_unroller(LearnedInit, _unroll_learned_init)


def learned_init(params: Any, carry0: Any = None) -> Any:
    """Make the initial carry of every cell of ``params`` a learnable parameter.

    Equivalent to replacing the zero state: ``unroll(params, None, xs)`` starts from
    ``carry0`` broadcast to the batch shape of ``xs``, and ``jax.grad`` with respect to
    the params includes the gradient with respect to ``carry0``:

        carry = jax.tree.map(lambda c: jnp.broadcast_to(c, (*batch_shape, *c.shape)), carry0)

    Args:
      params: a cell, or a stack or bidirectional composite (each cell gets its own).
      carry0: the initial carry for one sequence, with the structure and shapes of
        ``init_carry(params, ())``; ``None`` starts from zeros.

    Returns:
      ``params`` with each cell wrapped in a [`LearnedInit`][jaxrnn.LearnedInit].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.learned_init(jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4))
      >>> params.carry0.h.shape, jaxrnn.init_carry(params, (2,)).h.shape
      ((4,), (2, 4))
      >>> loss = lambda p: jnp.sum(jaxrnn.unroll(p, None, jnp.ones((5, 2, 3)))[1])
      >>> bool(jnp.any(jax.grad(loss)(params).carry0.h != 0))
      True
    """
    if not hasattr(params, "zero_carry"):
        fail("learned_init", "params", "be jaxrnn params", type(params).__name__, TypeError)
    expected = init_carry(params, ())
    if carry0 is None:
        carry0 = expected
    else:
        check_tree_like("learned_init", "carry0", carry0, expected, "init_carry(params, ())")
    return map_cells(LearnedInit, params, carry0)


@params_class
class CarryOutputs(Cell):
    """A cell whose output at each step is its whole new carry; see
    [`with_carry_outputs`][jaxrnn.with_carry_outputs]."""

    cell: Any  # params of the wrapped cell (possibly LearnedInit or Regularized)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.cell.input_shape

    @property
    def output_size(self) -> int:
        # Asked for by stack, bidirectional and readouts, none of which can take carries.
        raise TypeError(
            "CarryOutputs has no output_size: its outputs are carries, not features, so it "
            "cannot feed a layer; apply with_carry_outputs to a cell that is unrolled alone"
        )

    def zero_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return self.cell.zero_carry(batch_shape, dtype)

    def step(self, carry: Any, x: jax.Array) -> tuple[Any, Any]:
        carry, _ = self.cell.step(carry, x)
        return carry, carry


@params_class
class _FlatCarryOutputs(Cell):
    """``cell`` with its new carry, flattened into one feature vector, as output.

    The unroll methods mask and stack array outputs; flattening lets any method run it.
    """

    cell: Any
    carry_shapes: tuple[tuple[int, ...], ...] = static_field()  # trailing shape of each leaf

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.cell.input_shape

    @property
    def output_size(self) -> int:
        return sum(math.prod(shape) for shape in self.carry_shapes)

    def zero_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return self.cell.zero_carry(batch_shape, dtype)

    def input_projection(self, x: jax.Array) -> Any:
        return self.cell.input_projection(x)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        carry, _ = self.cell.recurrence(carry, projected)
        flat = [
            leaf.reshape((*leaf.shape[: leaf.ndim - len(shape)], -1))
            for leaf, shape in zip(jax.tree.leaves(carry), self.carry_shapes, strict=True)
        ]
        return carry, jnp.concatenate(flat, axis=-1)


def _unroll_carry_outputs(params: CarryOutputs, carry: Any, xs: jax.Array, run: Run):
    cell = params.cell
    while isinstance(cell, LearnedInit):  # its initial carry is already in `carry`
        cell = cell.cell
    batch_ndim = xs.ndim - 1 - len(cell.input_shape)
    if isinstance(cell, Regularized) and run.key is not None:
        cell, xs, _ = training_steps(cell, xs, run.key)  # output dropout acts on y, unused
    leaves, treedef = jax.tree.flatten(carry)
    shapes = tuple(tuple(leaf.shape[batch_ndim:]) for leaf in leaves)
    carry, flat = unroll_params(_FlatCarryOutputs(cell, shapes), carry, xs, run._replace(key=None))
    sizes = [math.prod(shape) for shape in shapes]
    parts = jnp.split(flat, [sum(sizes[:i]) for i in range(1, len(sizes))], axis=-1)
    ys = [
        part.reshape((*part.shape[:-1], *shape)) for part, shape in zip(parts, shapes, strict=True)
    ]
    dtypes = [leaf.dtype for leaf in leaves]
    return carry, jax.tree.unflatten(
        treedef, [y.astype(d) for y, d in zip(ys, dtypes, strict=True)]
    )


register_unroller(CarryOutputs, _unroll_carry_outputs)


def with_carry_outputs(params: Any) -> CarryOutputs:
    """Make a cell output its whole carry at every step (e.g. an LSTM's ``c_t`` too).

    ``unroll`` then returns ``(carry, carries)`` where ``carries`` has the carry's
    structure with a leading time axis: for an LSTM, ``carries.h[t]`` and
    ``carries.c[t]`` are ``h_t`` and ``c_t`` (the usual ``ys`` is ``carries.h``). Lengths
    and ``reverse`` act as for ``ys``: steps ``t >= lengths`` hold zeros. Equivalent to:

        carries = []
        for t in range(xs.shape[0]):
            carry, _ = cell_step(cell, carry, xs[t])
            carries.append(carry)
        return carry, jax.tree.map(lambda *c: jnp.stack(c), *carries)

    Args:
      params: a cell, possibly wrapped by [`learned_init`][jaxrnn.learned_init] or
        [`regularize`][jaxrnn.regularize] (zoneout and recurrent dropout act as usual; output
        dropout, which acts on ``y``, does not apply to carries). Not a stack or a
        bidirectional pair: their outputs feed layers and must stay arrays.

    Returns:
      A [`CarryOutputs`][jaxrnn.CarryOutputs] params pytree, with the cell's params as its leaves.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> lstm = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> _, carries = jaxrnn.unroll(jaxrnn.with_carry_outputs(lstm), None,
      ...                            jnp.ones((5, 2, 3)))
      >>> carries.c.shape
      (5, 2, 4)
      >>> bool(jnp.allclose(carries.h, jaxrnn.unroll(lstm, None, jnp.ones((5, 2, 3)))[1]))
      True
    """
    if not hasattr(params, "zero_carry"):
        fail("with_carry_outputs", "params", "be jaxrnn params", type(params).__name__, TypeError)
    if is_composite(params) or isinstance(params, CarryOutputs):
        fail(
            "with_carry_outputs",
            "params",
            "be a cell (wrap the cells of a stack or bidirectional pair and unroll them "
            "one by one)",
            type(params).__name__,
        )
    return CarryOutputs(params)
