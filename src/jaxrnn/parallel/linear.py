"""Linear recurrences as parallel scans: [`linear_scan`][jaxrnn.parallel.linear_scan] and
``unroll(..., method="parallel")`` ([`Parallel`][jaxrnn.parallel.Parallel]) for the cells that
are linear in their state (``"mingru"``, ``"minlstm"``, ``"lru"``, ``"rglru"``), and for the
cells with a parallel form of their own (``ParallelFormCell``: ``"mlstm"``).

If ``h_t = a_t * h_{t-1} + b_t``, a step is the affine map ``h -> a_t h + b_t``, and
composing two of them gives another one: ``(a_2, b_2) ∘ (a_1, b_1) = (a_2 a_1, a_2 b_1 +
b_2)``. Composition is associative, so all prefixes ``h_1 ... h_T`` follow from
``jax.lax.associative_scan`` in ``O(log T)`` depth.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.cells.linear import LinearCell, ParallelFormCell
from jaxrnn.core.checks import check_array, check_bool, check_choice, check_int, fail, shape_text
from jaxrnn.core.methods import Method, Run, expand_mask, scan_cell

__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Parallel", "linear_scan"]

STRATEGIES = ("tree", "chunked")


# --------------------------------------------------------------------------------------
# The scan of a linear recurrence
# --------------------------------------------------------------------------------------


def compose_elementwise(first, second):
    a1, b1 = first
    a2, b2 = second
    return a2 * a1, a2 * b1 + b2


def compose_matrix(first, second):
    a1, b1 = first
    a2, b2 = second
    return a2 @ a1, jnp.einsum("...ij,...j->...i", a2, b1) + b2


def _chunked_scan(a: jax.Array, b: jax.Array, chunk_size: int) -> jax.Array:
    """``h_t = a_t h_{t-1} + b_t`` from ``h_{-1} = 0``: sequential inside chunks, all
    chunks at once, then a short sequential pass over the chunk ends."""
    num_steps = a.shape[0]
    num_chunks = -(-num_steps // chunk_size)
    pad = num_chunks * chunk_size - num_steps
    # Padding steps are identity steps (a=1, b=0): they change nothing.
    a = jnp.concatenate([a, jnp.ones((pad, *a.shape[1:]), a.dtype)])
    b = jnp.concatenate([b, jnp.zeros((pad, *b.shape[1:]), b.dtype)])
    # (time, ...) -> (chunk_size, num_chunks, ...): the scan runs over positions in a chunk.
    a = jnp.swapaxes(a.reshape(num_chunks, chunk_size, *a.shape[1:]), 0, 1)
    b = jnp.swapaxes(b.reshape(num_chunks, chunk_size, *b.shape[1:]), 0, 1)

    def within(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    _, local = jax.lax.scan(within, jnp.zeros_like(b[0]), (a, b))
    decay = jnp.cumprod(a, axis=0)  # product of a within the chunk up to each position

    def across(h, ends):
        h = ends[0] * h + ends[1]
        return h, h

    _, ends = jax.lax.scan(across, jnp.zeros_like(b[0, 0]), (decay[-1], local[-1]))
    starts = jnp.concatenate([jnp.zeros_like(ends[:1]), ends[:-1]])
    h = local + decay * starts[None]
    return jnp.swapaxes(h, 0, 1).reshape(num_chunks * chunk_size, *b.shape[2:])[:num_steps]


def linear_scan(
    a: ArrayLike,
    b: ArrayLike,
    h0: ArrayLike | None = None,
    *,
    reverse: bool = False,
    strategy: str = "tree",
    chunk_size: int | None = None,
) -> jax.Array:
    """All states of the elementwise linear recurrence ``h_t = a_t * h_{t-1} + b_t``.

    Equivalent to:

        h = h0
        for t in range(time):              # reversed(range(time)) with reverse=True
            h = a[t] * h + b[t]
            hs[t] = h

    Args:
      a: coefficients ``(time, ...)``, real or complex.
      b: inputs ``(time, ...)``, same shape as ``a``.
      h0: initial state ``(...)``; ``None`` for zeros.
      reverse: run from ``t = time - 1`` down to ``0``.
      strategy: ``"tree"``: ``jax.lax.associative_scan``, ``O(log T)`` depth and
        ``O(T)`` work; ``"chunked"``: a sequential scan inside chunks of ``chunk_size``
        steps, all chunks at once, then a sequential pass over the ``T / chunk_size``
        chunk ends (``O(sqrt T)`` sequential steps of wider arrays with the default size).
      chunk_size: steps per chunk for ``"chunked"``; default ``ceil(sqrt(time))``.

    Returns:
      ``hs`` of the shape of ``b``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn.parallel import linear_scan
      >>> linear_scan(jnp.full(4, 0.5), jnp.ones(4), h0=jnp.array(8.0)).tolist()
      [5.0, 3.5, 2.75, 2.375]
    """
    a = check_array("linear_scan", "a", a)
    b = check_array("linear_scan", "b", b)
    if a.shape != b.shape or a.ndim == 0:
        fail("linear_scan", "a", f"have the shape of b {b.shape} with a time axis", str(a.shape))
    for name, x in (("a", a), ("b", b)):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            fail("linear_scan", name, "have a floating or complex dtype", str(x.dtype), TypeError)
    check_choice("linear_scan", "strategy", strategy, STRATEGIES)
    check_bool("linear_scan", "reverse", reverse)
    chunk_size = check_int("linear_scan", "chunk_size", chunk_size, optional=True)
    if h0 is not None:
        h0 = check_array("linear_scan", "h0", h0)
        if h0.shape != b.shape[1:]:
            expected = f"have the shape of one step of b {shape_text(b.shape[1:])} or be None"
            fail("linear_scan", "h0", expected, shape_text(h0.shape))
    if reverse:
        a, b = a[::-1], b[::-1]
    if h0 is not None:
        # h_0 = a_0 h0 + b_0: fold the initial state into the first step.
        b = b.at[0].add(a[0] * jnp.asarray(h0, b.dtype))
    if strategy == "tree":
        _, hs = jax.lax.associative_scan(compose_elementwise, (a, b))
    else:
        size = chunk_size or max(1, math.isqrt(a.shape[0] - 1) + 1)
        hs = _chunked_scan(a, b, int(size))
    return hs[::-1] if reverse else hs


#: How ``method="parallel"`` scans, per backend. Measured on a 2-core CPU
#: (benchmarks/parallel_in_time.py, docs/parallel.md): the tree scan beat the chunked scan
#: at 46 of 64 (cell, T, n, forward/grad) points. Accelerators were not measured; the tree
#: scan is the usual choice there too. ``linear_scan(..., strategy="chunked")`` remains.
DEFAULT_STRATEGY: dict[str, str] = {}


def _default_strategy() -> str:
    return DEFAULT_STRATEGY.get(jax.default_backend(), "tree")


# --------------------------------------------------------------------------------------
# method="parallel": cells linear in their state
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Parallel(Method):
    """``unroll(..., method="parallel")``: cells linear in their state (``LinearCell``:
    ``"mingru"``, ``"minlstm"``, ``"lru"``, ``"rglru"``) as one
    [`linear_scan`][jaxrnn.parallel.linear_scan] over time, and cells with a parallel form of
    their own (``ParallelFormCell``: ``"mlstm"``) by their ``parallel_form``; any other cell
    raises ``MethodError``.

    Args:
      strategy: ``"tree"``: all steps at once (the tree scan of ``linear_scan``; a
        ``ParallelFormCell``'s fully parallel form, the mLSTM's quadratic form); or
        ``"chunked"``: chunks of ``chunk_size`` steps at once, sequential over chunks (the
        chunked scan; the mLSTM's chunkwise form). ``None``: the backend's default
        (``DEFAULT_STRATEGY``, ``"tree"``).
      chunk_size: steps per chunk for ``"chunked"``; ``None``: ``ceil(sqrt(time))``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn.parallel import Parallel
      >>> params = jaxrnn.init_params(jax.random.key(0), "mingru", 2, 4)
      >>> xs = jnp.ones((16, 2))
      >>> _, ys = jaxrnn.unroll(params, None, xs, method=Parallel(strategy="chunked"))
      >>> bool(jnp.allclose(ys, jaxrnn.unroll(params, None, xs, method="sequential")[1],
      ...                   atol=1e-5))
      True
    """

    strategy: str | None = None
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        if self.strategy is not None:
            check_choice("Parallel", "strategy", self.strategy, STRATEGIES)
        check_int("Parallel", "chunk_size", self.chunk_size, optional=True)

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, jax.Array]:
        if isinstance(cell, LinearCell | ParallelFormCell) and jax.tree.leaves(xs)[0].shape[0] == 0:
            return scan_cell(cell, carry, xs, run.valid, run.reverse)  # no steps: nothing to scan
        if isinstance(cell, ParallelFormCell):
            return self.unroll_parallel_form(cell, carry, xs, run)
        if not isinstance(cell, LinearCell):
            raise self.cannot_run(
                cell,
                "be a cell that is linear in its state",
                "mingru, minlstm, lru, rglru and mlstm are; use method='sequential', or "
                "'deer'/'quasi_deer' for a nonlinear cell",
            )
        projected = cell.input_projection(xs)
        a, b = cell.linear_coefficients(projected)
        h0 = cell.state_from_carry(carry)
        if run.valid is not None:
            valid = expand_mask(run.valid, a)
            a = jnp.where(valid, a, jnp.ones_like(a))
            b = jnp.where(valid, b, jnp.zeros_like(b))
        strategy = self.strategy or _default_strategy()
        hs = linear_scan(
            a, b, h0, reverse=run.reverse, strategy=strategy, chunk_size=self.chunk_size
        )
        last = hs[0] if run.reverse else hs[-1]  # masked steps copy the state to the end
        new_carry = jax.tree.map(lambda n, o: n.astype(o.dtype), cell.carry_from_state(last), carry)
        ys = cell.readout(hs, projected)
        if run.valid is not None:
            ys = jnp.where(expand_mask(run.valid, ys), ys, jnp.zeros_like(ys))
        return new_carry, ys

    def unroll_parallel_form(
        self, cell: ParallelFormCell, carry: Any, xs: Any, run: Run
    ) -> tuple[Any, jax.Array]:
        """A ``ParallelFormCell``'s run: its ``parallel_form`` over the (for ``reverse``,
        time-flipped) projected inputs; outputs of masked steps zeroed, carry dtypes kept."""
        projected = cell.input_projection(xs)
        valid = run.valid
        if run.reverse:  # the forward run of the flipped sequence: its padding comes first
            projected = jax.tree.map(lambda a: a[::-1], projected)
            valid = None if valid is None else valid[::-1]
        chunk_size = None
        if (self.strategy or _default_strategy()) == "chunked":
            num_steps = jax.tree.leaves(xs)[0].shape[0]
            chunk_size = self.chunk_size or math.isqrt(max(num_steps - 1, 0)) + 1
        new_carry, ys = cell.parallel_form(carry, projected, valid, chunk_size)
        if valid is not None:
            ys = jnp.where(expand_mask(valid, ys), ys, jnp.zeros_like(ys))
        if run.reverse:
            ys = ys[::-1]
        new_carry = jax.tree.map(lambda n, o: n.astype(o.dtype), new_carry, carry)
        return new_carry, ys
