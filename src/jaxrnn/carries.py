"""The carry as a model part: a learned initial state, and the full carry at every step."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells.base import WrappedCell
from jaxrnn.core.checks import check_tree_like, fail
from jaxrnn.core.composites import Bidirectional, BidirectionalState, Stack, map_cells
from jaxrnn.core.dropout import dropout
from jaxrnn.core.params import params_class, static_field
from jaxrnn.core.unrolling import (
    Run,
    Unwrapped,
    _contains_bidirectional,
    _step,
    init_carry,
    register_unroller,
    register_wrapper,
    stack_keys,
    unroll_params,
    unwrapped,
)

__all__ = ["CarryOutputs", "LearnedInit", "learned_init", "with_carry_outputs"]


@params_class
class LearnedInit(WrappedCell):
    """A cell whose initial carry is a parameter; see [`learned_init`][jaxrnn.learned_init].

    ``zero_carry`` (hence [`init_carry`][jaxrnn.init_carry] and ``unroll(params, None, xs)``)
    gives ``carry0`` broadcast to the batch shape instead of zeros.
    """

    cell: Any  # params of the wrapped cell
    carry0: Any  # the cell's carry for one sequence: init_carry(cell, ())'s structure

    def zero_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return jax.tree.map(
            lambda c: jnp.broadcast_to(c.astype(dtype), (*batch_shape, *c.shape)), self.carry0
        )

    def input_projection(self, x: jax.Array) -> Any:
        return self.cell.input_projection(x)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        return self.cell.recurrence(carry, projected)


def _unwrap_learned_init(params: LearnedInit, xs: jax.Array, key: jax.Array | None) -> Unwrapped:
    # The initial carry is already in `carry`; from here on the wrapped cell runs as usual.
    return Unwrapped(params.cell, xs, None, key)


register_wrapper(LearnedInit, _unwrap_learned_init)


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
class CarryOutputs(WrappedCell):
    """Params whose output at each step is their whole new carry; see
    [`with_carry_outputs`][jaxrnn.with_carry_outputs]."""

    cell: Any  # the wrapped params: a cell (possibly LearnedInit or Regularized) or composite

    @property
    def output_size(self) -> int:
        # Asked for by stack, bidirectional and readouts, none of which can take carries.
        raise TypeError(
            "CarryOutputs has no output_size: its outputs are carries, not features, so it "
            "cannot feed a layer; apply with_carry_outputs to the whole stack or "
            "bidirectional pair instead"
        )

    def step(self, carry: Any, x: jax.Array) -> tuple[Any, Any]:
        if _contains_bidirectional(self.cell):
            fail(
                "cell_step",
                "params",
                "be a cell or a stack of unidirectional layers (a bidirectional RNN needs "
                "the whole sequence: use unroll)",
                f"CarryOutputs({type(self.cell).__name__})",
            )
        carry, _ = _step(self.cell, carry, x)
        return carry, carry


@params_class
class _FlatCarryOutputs(WrappedCell):
    """``cell`` with its output and its new carry, flattened into one feature vector, as
    output.

    The unroll methods mask and stack array outputs; flattening lets any method run it.
    """

    cell: Any
    # Trailing (non-batch) shape of the output y, then of each carry leaf.
    shapes: tuple[tuple[int, ...], ...] = static_field()

    @property
    def output_size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def input_projection(self, x: jax.Array) -> Any:
        return self.cell.input_projection(x)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        carry, y = self.cell.recurrence(carry, projected)
        flat = [
            leaf.reshape((*leaf.shape[: leaf.ndim - len(shape)], -1))
            for leaf, shape in zip([y, *jax.tree.leaves(carry)], self.shapes, strict=True)
        ]
        return carry, jnp.concatenate(flat, axis=-1)


def _unroll_cell_with_carries(cell: Any, carry: Any, xs: jax.Array, run: Run):
    """``(carry, ys, carries)`` of one cell: its outputs as a plain unroll gives them, and its
    carry after every step. A cell draws no masks, so ``run.key`` is not used."""
    batch_ndim = xs.ndim - 1 - len(cell.input_shape)
    y_spec = jax.eval_shape(lambda c, x: _step(cell, c, x)[1], carry, xs[0])
    leaves, treedef = jax.tree.flatten(carry)
    specs = [y_spec, *leaves]
    shapes = tuple(tuple(spec.shape[batch_ndim:]) for spec in specs)
    carry, flat = unroll_params(_FlatCarryOutputs(cell, shapes), carry, xs, run._replace(key=None))
    sizes = [math.prod(shape) for shape in shapes]
    parts = jnp.split(flat, [sum(sizes[:i]) for i in range(1, len(sizes))], axis=-1)
    ys, *outs = [
        part.reshape((*part.shape[:-1], *shape)).astype(spec.dtype)
        for part, shape, spec in zip(parts, shapes, specs, strict=True)
    ]
    return carry, ys, jax.tree.unflatten(treedef, outs)


def _unroll_with_carries(params: Any, carry: Any, xs: jax.Array, run: Run):
    """``(carry, ys, carries)``: ``unroll_params``'s ``(carry, ys)``, and the carry of every
    cell after every step in the carry's structure. Composites split keys and apply
    dropout exactly as their plain unrollers in ``jaxrnn.core.unrolling`` do, so ``ys`` and
    ``carry`` match a plain unroll with the same key; wrappers are unwrapped as ``unroll``
    unwraps them (``register_wrapper``), drawing the same masks."""
    inner = unwrapped(params, xs, run.key)
    if inner is not None:
        inner_run = run._replace(key=inner.key)
        carry, ys, carries = _unroll_with_carries(inner.params, carry, inner.xs, inner_run)
        return carry, ys if inner.output_mask is None else ys * inner.output_mask, carries
    if isinstance(params, Stack):
        n = len(params.layers)
        layer_keys, dropout_keys = stack_keys(run.key, n)
        new_carry, carries = [], []
        for i, (layer, layer_carry) in enumerate(zip(params.layers, carry, strict=True)):
            layer_run = run._replace(key=layer_keys[i])
            layer_carry, xs, layer_carries = _unroll_with_carries(layer, layer_carry, xs, layer_run)
            dropout_key = dropout_keys[i]
            if dropout_key is not None and i < n - 1 and params.dropout > 0:
                xs = dropout(dropout_key, xs, params.dropout)
            new_carry.append(layer_carry)
            carries.append(layer_carries)
        return tuple(new_carry), xs, tuple(carries)
    if isinstance(params, Bidirectional):
        kf, kb = (None, None) if run.key is None else jax.random.split(run.key)
        carry_f, ys_f, carries_f = _unroll_with_carries(
            params.forward, carry.forward, xs, run._replace(key=kf)
        )
        backward_run = run._replace(key=kb, reverse=not run.reverse)
        carry_b, ys_b, carries_b = _unroll_with_carries(
            params.backward, carry.backward, xs, backward_run
        )
        return (
            BidirectionalState(carry_f, carry_b),
            params.merge_outputs(ys_f, ys_b),
            BidirectionalState(carries_f, carries_b),
        )
    return _unroll_cell_with_carries(params, carry, xs, run)


def _unroll_carry_outputs(params: CarryOutputs, carry: Any, xs: jax.Array, run: Run):
    carry, _, carries = _unroll_with_carries(params.cell, carry, xs, run)
    return carry, carries


register_unroller(CarryOutputs, _unroll_carry_outputs)


def _contains_carry_outputs(params: Any) -> bool:
    if isinstance(params, Stack):
        return any(map(_contains_carry_outputs, params.layers))
    if isinstance(params, Bidirectional):
        return _contains_carry_outputs(params.forward) or _contains_carry_outputs(params.backward)
    return isinstance(params, CarryOutputs)


def with_carry_outputs(params: Any) -> CarryOutputs:
    """Make params output their whole carry at every step (e.g. an LSTM's ``c_t`` too).

    ``unroll`` then returns ``(carry, carries)`` where ``carries`` has the carry's
    structure with a leading time axis: for an LSTM, ``carries.h[t]`` and
    ``carries.c[t]`` are ``h_t`` and ``c_t`` (the usual ``ys`` is ``carries.h``). Lengths
    and ``reverse`` act as for ``ys``: steps ``t >= lengths`` hold zeros. For a cell,
    equivalent to:

        carries = []
        for t in range(xs.shape[0]):
            carry, _ = cell_step(cell, carry, xs[t])
            carries.append(carry)
        return carry, jax.tree.map(lambda *c: jnp.stack(c), *carries)

    Composites keep running as usual, each layer feeding its outputs ``y`` (after the
    stack's dropout, when ``unroll`` gets a key) to the next; only what is returned
    changes. For a [`stack`][jaxrnn.stack], ``carries`` is a tuple with one entry per layer,
    ``carries[i] = unroll(with_carry_outputs(layer_i), carry[i], xs_i)[1]`` where ``xs_i`` is
    the plain stack's input to layer ``i``; for a [`bidirectional`][jaxrnn.bidirectional]
    pair it is ``BidirectionalState(forward, backward)``, the backward carries at their
    input positions (as ``reverse=True`` aligns them). With ``batch_shape`` and ``time``
    from ``xs``, every leaf has shape ``(time, *batch_shape, *state_shape)``, and the final
    carry is the plain unroll's. [`cell_step`][jaxrnn.cell_step] returns ``(carry, carry)``
    (for a cell or a stack of unidirectional layers).

    With a ``key``, every mask is the one ``unroll(params, ..., key=key)`` draws: the
    final carry is the plain unroll's and the carries are the states it went through.

    Args:
      params: a cell, possibly wrapped by [`learned_init`][jaxrnn.learned_init] or
        [`regularize`][jaxrnn.regularize] (zoneout and recurrent dropout act as usual; output
        dropout acts on ``y``, so only on what a layer feeds the next, not on carries), an
        attention decoder with its memory (the carries are an
        [`AttentionState`][jaxrnn.AttentionState] of time-stacked fields), or a stack or
        bidirectional composite of such cells. The result has no ``output_size``, so it
        cannot itself be a layer of a composite: wrap the whole composite.

    Returns:
      A [`CarryOutputs`][jaxrnn.CarryOutputs] params pytree, with the params as its leaves.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> lstm = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> _, carries = jaxrnn.unroll(jaxrnn.with_carry_outputs(lstm), None,
      ...                            jnp.ones((5, 2, 3)))
      >>> carries.c.shape
      (5, 2, 4)
      >>> bool(jnp.allclose(carries.h, jaxrnn.unroll(lstm, None, jnp.ones((5, 2, 3)))[1]))
      True
      >>> deep = jaxrnn.init_params(jax.random.key(1), "lstm", 3, 4, num_layers=2,
      ...                           bidirectional=True)
      >>> _, carries = jaxrnn.unroll(jaxrnn.with_carry_outputs(deep), None,
      ...                            jnp.ones((5, 2, 3)))
      >>> len(carries), carries[1].backward.c.shape
      (2, (5, 2, 4))
    """
    if not hasattr(params, "zero_carry"):
        fail("with_carry_outputs", "params", "be jaxrnn params", type(params).__name__, TypeError)
    if _contains_carry_outputs(params):
        fail(
            "with_carry_outputs",
            "params",
            "not contain CarryOutputs (apply with_carry_outputs once, to the outermost params)",
            type(params).__name__,
        )
    return CarryOutputs(params)
