"""Cells whose state update is linear in the state, and the helpers they share.

Such a cell's step is ``h_t = a_t * h_{t-1} + b_t`` (elementwise), where ``a_t`` and
``b_t`` depend on the input ``x_t`` only. The sequential step below and the parallel
scan of [`jaxrnn.parallel`][jaxrnn.parallel] both use ``linear_coefficients``, so the
two methods compute the same recurrence; only the order of the arithmetic differs.

A cell whose run has another closed form over the whole sequence (the mLSTM's matrix
memory: an attention-like quadratic form) says so by subclassing ``ParallelFormCell``
and writing that form in ``parallel_form``; ``method="parallel"`` then calls it.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp

from jaxrnn.cells.base import Cell, affine


class LinearCell(Cell):
    """Interface of a cell that is linear in its state (minGRU, minLSTM, LRU).

    $$
    h_t = a_t \\odot h_{t-1} + b_t, \\qquad y_t = \\mathrm{readout}(h_t, p_t),
    \\qquad (a_t, b_t) = \\mathrm{linear\\_coefficients}(p_t)
    $$

    with ``p_t = input_projection(x_t)``. The state ``h`` may be complex (LRU); the carry
    is always a real pytree, converted by ``state_from_carry`` / ``carry_from_state``.
    """

    def linear_coefficients(self, projected: Any) -> tuple[jax.Array, jax.Array]:
        """``(a, b)``, each of shape ``(..., state_size)``, from ``input_projection(x)``."""
        raise NotImplementedError

    def state_from_carry(self, carry: Any) -> jax.Array:
        return carry

    def carry_from_state(self, state: jax.Array) -> Any:
        return state

    def readout(self, state: jax.Array, projected: Any) -> jax.Array:
        """The output ``y_t`` from the new state ``h_t`` (and the input, for skip terms)."""
        return state

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        a, b = self.linear_coefficients(projected)
        state = a * self.state_from_carry(carry) + b
        return self.carry_from_state(state), self.readout(state, projected)


class ParallelFormCell(Cell):
    """Interface of a cell whose whole run has a parallel form of its own (the mLSTM's
    quadratic, attention-like form): ``unroll(..., method="parallel")`` calls
    ``parallel_form`` instead of scanning ``recurrence``.

    ``unroll`` and [`Parallel`][jaxrnn.parallel.Parallel] keep their part of the contract:
    they compute ``projected = input_projection(xs)`` for all steps, flip time for
    ``reverse=True`` (a reversed run is the forward run of the time-flipped sequence,
    its padding first), zero the outputs of masked steps and give the new carry the old
    carry's dtypes. The cell's part is the forward run, exactly::

        for t in range(time):
            if valid is None or valid[t]:      # per sequence: masked steps keep the carry
                carry, ys[t] = recurrence(carry, projected[t])
        return carry, ys                      # ys[t] of masked steps: anything finite

    computed without that loop. ``chunk_size`` is ``None`` for the fully parallel form
    (``Parallel(strategy="tree")``, the default) and the number of steps per chunk for a
    chunkwise form (``Parallel(strategy="chunked", chunk_size=...)``): all steps of a
    chunk at once, sequential over chunks. A cell without a chunkwise form may ignore it.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn.cells import ParallelFormCell
      >>> @jaxrnn.params_class
      ... class RunningSum(ParallelFormCell):  # h_t = h_{t-1} + x_t W
      ...     w: jax.Array  # shape=(input_size, hidden_size)
      ...     @property
      ...     def input_shape(self): return self.w.shape[:1]
      ...     @property
      ...     def output_size(self): return self.w.shape[1]
      ...     def initial_carry(self, batch_shape, dtype):
      ...         return jnp.zeros((*batch_shape, self.output_size), dtype)
      ...     def input_projection(self, x): return x @ self.w
      ...     def recurrence(self, h, projected): return h + projected, h + projected
      ...     def parallel_form(self, h, projected, valid, chunk_size):
      ...         if valid is not None:  # a masked step adds nothing
      ...             projected = jnp.where(valid[..., None], projected, 0.0)
      ...         hs = h + jnp.cumsum(projected, axis=0)
      ...         return hs[-1], hs
      >>> cell, xs, lengths = RunningSum(w=jnp.ones((3, 2))), jnp.ones((5, 2, 3)), jnp.array([5, 2])
      >>> def run(method):
      ...     return jaxrnn.unroll(cell, None, xs, lengths=lengths, reverse=True, method=method)
      >>> all(bool(jnp.array_equal(a, b)) for a, b in zip(run("parallel"), run("sequential")))
      True
    """

    @abc.abstractmethod
    def parallel_form(
        self, carry: Any, projected: Any, valid: jax.Array | None, chunk_size: int | None
    ) -> tuple[Any, jax.Array]:
        """``(new_carry, ys)`` of the forward run from ``carry`` over ``projected``
        ``(time, *batch, ...)``; ``valid``: ``(time, *batch)`` bool, or ``None`` when
        every step is valid."""


class LogSpaceCell(LinearCell):
    """A linear cell whose input is a vector projected to ``num_blocks`` blocks of
    ``hidden_size`` (``w_x``, ``b_x``) and whose coefficients come from log space, for
    stability (minGRU, minLSTM): ``(a, b) = (exp(log a), exp(log b))``."""

    num_blocks: ClassVar[int]  # blocks of hidden_size in w_x's columns

    if TYPE_CHECKING:  # fields of the subclasses' dataclasses, not of this class
        w_x: jax.Array
        b_x: jax.Array | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.w_x.shape[0],)

    @property
    def hidden_size(self) -> int:
        return self.w_x.shape[1] // self.num_blocks

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.zeros((*batch_shape, self.hidden_size), dtype)

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b_x)

    def log_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log a, log b)``, each of shape ``(..., hidden_size)``."""
        raise NotImplementedError

    def linear_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_a, log_b = self.log_coefficients(projected)
        return jnp.exp(log_a), jnp.exp(log_b)


def g(x: jax.Array) -> jax.Array:
    """minGRU/minLSTM's positive activation: ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below.

    It is continuous at 0 (both sides give 0.5) and keeps candidate states positive, which
    is what lets the paper's log-space scan take ``log h``.
    """
    return jnp.where(x >= 0, jax.nn.relu(x) + 0.5, jax.nn.sigmoid(x))


def log_g(x: jax.Array) -> jax.Array:
    """``log(g(x))`` without forming ``g(x)`` first: ``-softplus(-x)`` below 0."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def init_log_space(
    params_type: Any,
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool,
    kernel_init: Any,
    bias_init: Any,
    dtype: Any,
) -> Any:
    """A log-space cell's params (``params_type``, a ``LogSpaceCell`` params class):
    ``w_x`` of ``num_blocks * hidden_size`` columns and its bias (``None`` without bias),
    from the given initializers."""
    width = params_type.num_blocks * hidden_size
    kx, kb = jax.random.split(key)
    return params_type(
        w_x=kernel_init(kx, (input_size, width), dtype),
        b_x=bias_init(kb, (width,), dtype) if bias else None,
    )
