"""The carry as a model part: a learned initial state, and the full carry at every step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells.base import Unwrapped, WrappedCell
from jaxrnn.core.checks import fail
from jaxrnn.core.composites import (
    Bidirectional,
    Composite,
    Stack,
    contains_bidirectional,
    map_cells,
)
from jaxrnn.core.methods import Run
from jaxrnn.core.params import params_class
from jaxrnn.core.unrolling import check_carry, init_carry, step

__all__ = ["CarryOutputs", "LearnedInit", "learned_init", "with_carry_outputs"]


@params_class
class LearnedInit(WrappedCell):
    """A cell whose initial carry is a parameter; see [`learned_init`][jaxrnn.carries.learned_init].

    ``initial_carry`` (hence [`init_carry`][jaxrnn.init_carry] and ``unroll(params, None, xs)``)
    gives ``carry0`` broadcast to the batch shape instead of zeros.
    """

    cell: Any  # params of the wrapped cell
    carry0: Any  # the cell's carry for one sequence: init_carry(cell, ())'s structure

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return jax.tree.map(
            lambda c: jnp.broadcast_to(c.astype(dtype), (*batch_shape, *c.shape)), self.carry0
        )

    def input_projection(self, x: jax.Array) -> Any:
        return self.cell.input_projection(x)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        return self.cell.recurrence(carry, projected)

    def unwrap(self, xs: Any, key: jax.Array | None) -> Unwrapped:
        # The initial carry is already in `carry`; from here on the wrapped cell runs.
        return Unwrapped(self.cell, xs, None, key)


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
      ``params`` with each cell wrapped in a [`LearnedInit`][jaxrnn.carries.LearnedInit].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.carries.learned_init(jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4))
      >>> params.carry0.h.shape, jaxrnn.init_carry(params, (2,)).h.shape
      ((4,), (2, 4))
      >>> loss = lambda p: jnp.sum(jaxrnn.unroll(p, None, jnp.ones((5, 2, 3)))[1])
      >>> bool(jnp.any(jax.grad(loss)(params).carry0.h != 0))
      True
    """
    if not hasattr(params, "initial_carry"):
        fail("learned_init", "params", "be jaxrnn params", type(params).__name__, TypeError)
    if carry0 is None:
        carry0 = init_carry(params, ())
    else:
        check_carry("learned_init", params, carry0, (), argument="carry0")
    return map_cells(LearnedInit, params, carry0)


@params_class
class CarryOutputs(Composite, WrappedCell):
    """Params whose output at each step is their whole new carry; see
    [`with_carry_outputs`][jaxrnn.carries.with_carry_outputs].

    It runs ``cell`` as usual with ``Run.carry_outputs`` set: then every cell's run also
    returns its carry after every step, and the composites gather them in the carry's
    structure (``jaxrnn.core.methods.unroll_parts``).
    """

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
        if contains_bidirectional(self.cell):
            fail(
                "cell_step",
                "params",
                "be a cell or a stack of unidirectional layers (a bidirectional RNN needs "
                "the whole sequence: use unroll)",
                f"CarryOutputs({type(self.cell).__name__})",
            )
        carry, _ = step(self.cell, carry, x)
        return carry, carry

    def unroll_parts(self, carry: Any, xs: Any, run: Run) -> tuple[Any, Any]:
        run = run._replace(carry_outputs=True)
        carry, (_, carries) = run.method.unroll_params(self.cell, carry, xs, run)
        return carry, carries


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
      params: a cell, possibly wrapped by [`learned_init`][jaxrnn.carries.learned_init] or
        [`regularize`][jaxrnn.regularization.regularize] (zoneout and recurrent dropout act as
        usual; output dropout acts on ``y``, so only on what a layer feeds the next, not on
        carries), an attention decoder with its memory (the carries are an
        [`AttentionState`][jaxrnn.attention.AttentionState] of time-stacked fields), or a stack or
        bidirectional composite of such cells. The result has no ``output_size``, so it
        cannot itself be a layer of a composite: wrap the whole composite.

    Returns:
      A [`CarryOutputs`][jaxrnn.carries.CarryOutputs] params pytree, with the params as its leaves.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> lstm = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> _, carries = jaxrnn.unroll(jaxrnn.carries.with_carry_outputs(lstm), None,
      ...                            jnp.ones((5, 2, 3)))
      >>> carries.c.shape
      (5, 2, 4)
      >>> bool(jnp.allclose(carries.h, jaxrnn.unroll(lstm, None, jnp.ones((5, 2, 3)))[1]))
      True
      >>> deep = jaxrnn.init_params(jax.random.key(1), "lstm", 3, 4, num_layers=2,
      ...                           bidirectional=True)
      >>> _, carries = jaxrnn.unroll(jaxrnn.carries.with_carry_outputs(deep), None,
      ...                            jnp.ones((5, 2, 3)))
      >>> len(carries), carries[1].backward.c.shape
      (2, (5, 2, 4))
    """
    if not hasattr(params, "initial_carry"):
        fail("with_carry_outputs", "params", "be jaxrnn params", type(params).__name__, TypeError)
    if _contains_carry_outputs(params):
        fail(
            "with_carry_outputs",
            "params",
            "not contain CarryOutputs (apply with_carry_outputs once, to the outermost params)",
            type(params).__name__,
        )
    return CarryOutputs(params)
