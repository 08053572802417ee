"""Many-to-one pooling: one vector per sequence from a padded batch of outputs.

A classifier over sequences (sentiment, digits read row by row) needs one vector per
sequence. The choices, each over *valid* steps only (``t < lengths[b]``):

- [`final_hidden`][jaxrnn.pooling.final_hidden]: the top layer's ``h`` in the carry returned by
  ``unroll`` (with ``lengths``, that is the state after each sequence's last valid step; for a
  bidirectional layer, the backward direction's state after reading the whole sequence);
- [`pool_last`][jaxrnn.pooling.pool_last]: ``ys[lengths - 1]``, the last valid output;
- [`pool_mean`][jaxrnn.pooling.pool_mean] and [`pool_max`][jaxrnn.pooling.pool_max]: the average and
  the maximum over valid steps.

Padding never reaches the result or its gradient: ``unroll`` already gives zeros at
padding, but these functions do not rely on it, so they also work on any ``ys``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_choice,
    check_lengths,
    fail,
    shape_text,
)
from jaxrnn.core.composites import MERGES, BidirectionalState
from jaxrnn.core.params import describe
from jaxrnn.core.unrolling import sequence_mask

__all__ = ["final_hidden", "pool_last", "pool_max", "pool_mean"]


def _cell_hidden(carry: Any) -> jax.Array:
    if isinstance(carry, jax.Array):
        return carry
    if hasattr(carry, "h"):
        return carry.h
    fail(
        "final_hidden",
        "carry",
        "hold the top layer's output: an array h or a state with a field h (for other "
        "cells, e.g. LRU, pool the outputs: pool_last(ys, lengths))",
        describe(carry),
    )


def final_hidden(carry: Any, *, merge: str = "concat") -> jax.Array:
    """The hidden state ``h`` of the top layer of a carry: the classic many-to-one feature.

    Reads the carry's structure: an array is ``h`` itself (``"rnn"``, ``"gru"``); a carry
    with a field ``h`` (``LSTMState``) gives that field; a stack's tuple gives its last
    layer's; a [`BidirectionalState`][jaxrnn.BidirectionalState] merges both directions' ``h``, like
    PyTorch's ``h_n[-2:]``:

        h = carry[-1] if stacked else carry             # top layer
        h = merge(h.forward.h, h.backward.h)            # if bidirectional
        h = h.h if isinstance(h, LSTMState) else h

    An array is taken to be ``h``, so pass the carry, not ``ys`` (for outputs, use
    [`pool_last`][jaxrnn.pooling.pool_last]); a carry whose arrays do not share their batch
    dims (such as ``unroll``'s ``(carry, ys)`` pair) raises ``ValueError``.

    Args:
      carry: the final carry of [`unroll`][jaxrnn.unroll].
      merge: for a bidirectional top layer: ``"concat"`` (forward first), ``"sum"`` or
        ``"mean"``.

    Returns:
      ``(*batch, hidden)`` (``2 * hidden`` for a concatenated bidirectional layer).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4, num_layers=2,
      ...                             bidirectional=True)
      >>> carry, ys = jaxrnn.unroll(params, None, jnp.ones((5, 2, 3)))
      >>> jaxrnn.pooling.final_hidden(carry).shape
      (2, 8)
    """
    check_choice("final_hidden", "merge", merge, MERGES)
    _check_batch_dims(carry)
    return _top_hidden(carry, merge)


def _check_batch_dims(carry: Any) -> None:
    """Every array of a carry has the same batch dims (all but its last axis): what tells
    a carry from ``ys`` or from ``unroll``'s ``(carry, ys)`` pair, which fail here instead
    of as a wrong shape far downstream."""
    shapes = sorted({tuple(np.shape(leaf)) for leaf in jax.tree.leaves(carry)}, key=len)
    if len({shape[:-1] for shape in shapes}) > 1:
        fail(
            "final_hidden",
            "carry",
            "be the carry of unroll (the first of its (carry, ys) results), whose arrays "
            "share their batch dims",
            "arrays of shapes " + ", ".join(shape_text(shape) for shape in shapes),
        )


def _top_hidden(carry: Any, merge: str) -> jax.Array:
    if isinstance(carry, BidirectionalState):
        forward = _top_hidden(carry.forward, merge)
        backward = _top_hidden(carry.backward, merge)
        if merge == "concat":
            return jnp.concatenate([forward, backward], axis=-1)
        return forward + backward if merge == "sum" else (forward + backward) / 2
    if isinstance(carry, tuple) and not hasattr(carry, "_fields"):  # a stack: one per layer
        if not carry:
            fail("final_hidden", "carry", "be a non-empty carry", "()")
        return _top_hidden(carry[-1], merge)
    return _cell_hidden(carry)


def _check_ys(where: str, ys: Any, lengths: Any, time_major: bool) -> tuple[jax.Array, jax.Array]:
    """``ys`` time-major and a mask broadcastable against it (``(time, *batch, 1, ...)``).

    Batch-major ``ys`` have time after the batch axes: at ``lengths.ndim``, or, without
    lengths, just before one feature axis.
    """
    ys = check_array(where, "ys", ys)
    if ys.dtype == jnp.bool_:  # integers pool exactly; a mask is not an output
        fail(where, "ys", "have a numeric dtype (not bool)", "bool", TypeError)
    check_bool(where, "time_major", time_major)
    if not time_major:
        if lengths is not None and not isinstance(lengths, np.ndarray | np.generic):
            lengths = check_array(where, "lengths", lengths)
        time_axis = ys.ndim - 2 if lengths is None else np.ndim(lengths)
        if not 0 <= time_axis < ys.ndim:
            fail(where, "ys", "have shape (..., time, features)", shape_text(ys.shape))
        ys = jnp.moveaxis(ys, time_axis, 0)
    if ys.ndim < 1 or ys.shape[0] == 0:
        fail(where, "ys", "have shape (time >= 1, ..., features)", shape_text(ys.shape))
    if lengths is None:
        return ys, jnp.ones((ys.shape[0],) + (1,) * (ys.ndim - 1), bool)
    if not isinstance(lengths, np.ndarray | np.generic):
        lengths = check_array(where, "lengths", lengths)
    batch_shape = ys.shape[1 : 1 + lengths.ndim]
    lengths = check_lengths(where, lengths, batch_shape, ys.shape[0])
    mask = sequence_mask(lengths, ys.shape[0])
    return ys, mask.reshape(mask.shape + (1,) * (ys.ndim - mask.ndim))


def pool_last(
    ys: ArrayLike, lengths: ArrayLike | None = None, *, time_major: bool = True
) -> jax.Array:
    """The last valid output of each sequence: ``ys[lengths[b] - 1, b]``.

    $$
    \\mathrm{last}_b = y_{\\,\\mathrm{lengths}_b - 1,\\; b}
    \\qquad (0 \\text{ when } \\mathrm{lengths}_b = 0)
    $$

    For a unidirectional RNN this is the same as [`final_hidden`][jaxrnn.pooling.final_hidden] of
    the carry; for a bidirectional one it is not (the backward half of ``ys[lengths - 1]`` has read
    only one step), so prefer [`final_hidden`][jaxrnn.pooling.final_hidden] there.

    Args:
      ys: outputs ``(time, *batch, ...)`` of any numeric dtype (integers pool exactly; a
        bool mask is refused).
      lengths: integer ``batch`` shape (a prefix of ``ys.shape[1:]``); ``None`` means
        every sequence has all ``time`` steps, giving ``ys[-1]``.

      time_major: ``False`` for batch-major ``ys`` ``(*batch, time, features)``, as
        ``unroll(..., time_major=False)`` gives them.

    Returns:
      ``ys.shape[1:]``: ``(*batch, ...)``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> ys = jnp.arange(8.0).reshape(4, 2, 1)        # (time, batch, features)
      >>> jaxrnn.pooling.pool_last(ys, jnp.array([4, 2]))[:, 0]
      Array([6., 3.], dtype=float32)
    """
    ys, mask = _check_ys("pool_last", ys, lengths, time_major)
    if lengths is None:
        return ys[-1]
    # Position of the last valid step from the mask, so lengths are counted in one place.
    last = jnp.sum(mask, axis=0, keepdims=True) - 1  # (1, *batch, 1, ...)
    index = jnp.broadcast_to(jnp.maximum(last, 0), (1, *ys.shape[1:]))
    picked = jnp.take_along_axis(ys, index.astype(jnp.int32), axis=0)[0]
    return jnp.where(last[0] >= 0, picked, jnp.zeros_like(picked))


def pool_mean(
    ys: ArrayLike, lengths: ArrayLike | None = None, *, time_major: bool = True
) -> jax.Array:
    """The average of each sequence's valid outputs.

    $$
    \\mathrm{mean}_b = \\frac{1}{\\max(1, \\mathrm{lengths}_b)}
    \\sum_{t < \\mathrm{lengths}_b} y_{t,b}
    $$

    Args:
      ys: outputs ``(time, *batch, ...)`` of any numeric dtype (integers pool exactly; a
        bool mask is refused).
      lengths: integer ``batch`` shape, or ``None`` for all steps.

      time_major: ``False`` for batch-major ``ys`` ``(*batch, time, features)``, as
        ``unroll(..., time_major=False)`` gives them.

    Returns:
      ``(*batch, ...)``; zeros for a sequence of length 0.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> ys = jnp.array([[1.0], [3.0], [100.0]])[:, :, None]   # (time=3, batch=1, 1)
      >>> float(jaxrnn.pooling.pool_mean(ys, jnp.array([2]))[0, 0])
      2.0
    """
    ys, mask = _check_ys("pool_mean", ys, lengths, time_major)
    total = jnp.sum(jnp.where(mask, ys, jnp.zeros_like(ys)), axis=0)
    count = jnp.maximum(jnp.sum(mask, axis=0), 1).astype(ys.dtype)
    return total / count


def pool_max(
    ys: ArrayLike, lengths: ArrayLike | None = None, *, time_major: bool = True
) -> jax.Array:
    """The elementwise maximum over each sequence's valid outputs.

    $$
    \\mathrm{max}_{b,k} = \\max_{t < \\mathrm{lengths}_b} y_{t,b,k}
    \\qquad (0 \\text{ when } \\mathrm{lengths}_b = 0)
    $$

    Args:
      ys: outputs ``(time, *batch, ...)`` of any numeric dtype (integers pool exactly; a
        bool mask is refused).
      lengths: integer ``batch`` shape, or ``None`` for all steps.

      time_major: ``False`` for batch-major ``ys`` ``(*batch, time, features)``, as
        ``unroll(..., time_major=False)`` gives them.

    Returns:
      ``(*batch, ...)``; the gradient flows only to the arg-max valid step.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> ys = jnp.array([[-1.0], [-3.0], [100.0]])[:, :, None]  # (time=3, batch=1, 1)
      >>> float(jaxrnn.pooling.pool_max(ys, jnp.array([2]))[0, 0])
      -1.0
    """
    ys, mask = _check_ys("pool_max", ys, lengths, time_major)
    info = jnp.finfo if jnp.issubdtype(ys.dtype, jnp.inexact) else jnp.iinfo
    lowest = info(ys.dtype).min
    best = jnp.max(jnp.where(mask, ys, jnp.full_like(ys, lowest)), axis=0)
    any_valid = jnp.any(mask, axis=0)
    return jnp.where(any_valid, best, jnp.zeros_like(best))
