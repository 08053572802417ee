"""Long sequences: truncated BPTT, and carries that persist across calls (streaming).

**Truncated backpropagation through time.** Full BPTT over ``T`` steps stores every step
for the backward pass and lets gradients travel through all ``T`` steps. Truncated BPTT
(Williams and Peng, 1990; Sutskever, 2013) cuts the sequence into chunks of ``k`` steps:
the *state* flows from chunk to chunk, but the *gradient* stops at each chunk's start::

    for chunk in chunks:                                   # chunks of k steps
        carry = jax.lax.stop_gradient(carry)                # the cut
        (loss, carry), grads = value_and_grad(loss_fn, has_aux=True)(params, carry, chunk)

Memory is that of one chunk, and no gradient spans more than ``k`` steps.
[`truncated_bptt`][jaxrnn.long_sequences.truncated_bptt] runs this loop as one ``lax.scan`` and sums
the gradients (one update per sequence); to update after every chunk, call a train step per chunk
instead (see [`make_train_step`][jaxrnn.train.make_train_step] with ``has_aux=True``).

**Streaming.** A model that reads an endless stream (or many streams in a batch) keeps
its carry between calls; when stream ``b`` starts a new sequence, its carry alone is reset
([`reset_carry`][jaxrnn.long_sequences.reset_carry]). Within a chunk,
[`unroll_with_resets`][jaxrnn.long_sequences.unroll_with_resets] resets at given steps, like Haiku's
``ResetCore``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_array,
    check_callable,
    check_features,
    check_floating,
    check_int,
    fail,
    shape_text,
)
from jaxrnn.core.params import describe
from jaxrnn.core.unrolling import cell_step, check_carry, check_params, init_carry

__all__ = [
    "chunk_lengths",
    "reset_carry",
    "split_chunks",
    "truncated_bptt",
    "unroll_with_resets",
]


def split_chunks(xs: Any, chunk_size: int) -> Any:
    """Cut time-major sequences into consecutive chunks of ``chunk_size`` steps.

    $$
    \\mathrm{chunks}[i, t] = xs[i \\cdot k + t], \\qquad 0 \\le t < k
    $$

    Args:
      xs: an array ``(time, ...)`` or a pytree of them (inputs and targets together),
        all with the same ``time``, a multiple of ``chunk_size``.
      chunk_size: ``k``, steps per chunk.

    Returns:
      The same pytree with leaves ``(time // k, k, ...)``: ready for ``lax.scan`` over
      chunks.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> xs, ys = jnp.zeros((12, 2, 3)), jnp.zeros((12, 2), int)
      >>> xs_chunks, ys_chunks = jaxrnn.long_sequences.split_chunks((xs, ys), 4)
      >>> xs_chunks.shape, ys_chunks.shape
      ((3, 4, 2, 3), (3, 4, 2))
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        fail("split_chunks", "chunk_size", "be a positive int", repr(chunk_size), TypeError)

    def split(x: Any) -> jax.Array:
        x = check_array("split_chunks", "xs", x)
        if x.ndim < 1 or x.shape[0] % chunk_size:
            fail(
                "split_chunks",
                "xs",
                f"have a time axis that is a multiple of chunk_size={chunk_size}",
                shape_text(x.shape),
            )
        return x.reshape(x.shape[0] // chunk_size, chunk_size, *x.shape[1:])

    return jax.tree.map(split, xs)


def chunk_lengths(lengths: ArrayLike, num_chunks: int, chunk_size: int) -> jax.Array:
    """Valid steps of each sequence within each chunk, for masking chunk by chunk.

    $$
    \\mathrm{lengths}_{i,b} = \\min(k, \\max(0, \\mathrm{lengths}_b - i k))
    $$

    Args:
      lengths: integer ``batch`` shape: valid steps of each whole sequence.
      num_chunks: number of chunks.
      chunk_size: ``k``.

    Returns:
      Integer ``(num_chunks, *batch)``: pass ``lengths[i]`` to ``unroll`` and the losses
      for chunk ``i``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> jaxrnn.long_sequences.chunk_lengths(jnp.array([10, 3]), num_chunks=3, chunk_size=4).T
      Array([[4, 4, 2],
             [3, 0, 0]], dtype=int32)
    """
    lengths = check_array("chunk_lengths", "lengths", lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        fail("chunk_lengths", "lengths", "have an integer dtype", str(lengths.dtype), TypeError)
    num_chunks = check_int("chunk_lengths", "num_chunks", num_chunks)
    chunk_size = check_int("chunk_lengths", "chunk_size", chunk_size)
    starts = (jnp.arange(num_chunks) * chunk_size).reshape((num_chunks,) + (1,) * lengths.ndim)
    return jnp.clip(lengths - starts, 0, chunk_size).astype(lengths.dtype)


def truncated_bptt(
    loss_fn: Callable[[Any, Any, Any], tuple[jax.Array, Any]],
    params: Any,
    carry: Any,
    chunks: Any,
) -> tuple[Any, jax.Array, Any]:
    """Gradients of a long sequence's loss, truncated at chunk boundaries.

    With chunk losses ``L_i`` and carries ``s_i`` (``s_0 = carry``):

    $$
    (L_i, s_{i+1}) = \\mathrm{loss\\_fn}(\\theta, \\mathrm{sg}(s_i), \\mathrm{chunk}_i),
    \\qquad g = \\sum_i \\frac{\\partial L_i}{\\partial \\theta}
    $$

    where ``sg`` is ``jax.lax.stop_gradient``: the gradient of ``L_i`` sees only the steps
    of chunk ``i``. Equivalent to:

        grads = zeros_like(params); losses = []
        for chunk in chunks:                       # iterate over the leading axis
            carry = jax.lax.stop_gradient(carry)
            (loss, carry), g = jax.value_and_grad(loss_fn, has_aux=True)(params, carry, chunk)
            grads = grads + g; losses.append(loss)
        return carry, stack(losses), grads

    Args:
      loss_fn: ``loss_fn(params, carry, chunk) -> (loss, carry)``: run the model over one
        chunk from ``carry`` (e.g. with [`unroll`][jaxrnn.unroll]) and return the chunk's
        scalar loss and final carry.
      params: the parameters to differentiate.
      carry: the state before the first chunk (e.g. ``init_carry(params, (batch,))``).
      chunks: a pytree whose leaves have a leading ``num_chunks`` axis, e.g.
        ``split_chunks((xs, targets), k)``; ``loss_fn`` gets one slice at a time.

    Returns:
      ``(carry, losses, grads)``: the carry after the last chunk, the ``(num_chunks,)``
      chunk losses, and the summed truncated gradient (same structure as ``params``).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 1, 8)
      >>> xs = jnp.sin(jnp.linspace(0, 12, 65))[:, None, None]     # (time, batch, 1)
      >>> def loss_fn(params, carry, chunk):
      ...     inputs, targets = chunk
      ...     carry, ys = jaxrnn.unroll(params, carry, inputs)
      ...     return jnp.mean((ys[..., :1] - targets) ** 2), carry
      >>> chunks = jaxrnn.long_sequences.split_chunks((xs[:-1], xs[1:]), 16)  # 4 chunks of 16
      >>> carry, losses, grads = jaxrnn.long_sequences.truncated_bptt(
      ...     loss_fn, params, jaxrnn.init_carry(params, (1,)), chunks)
      >>> losses.shape, grads.w_h.shape
      ((4,), (8, 24))
    """
    check_callable("truncated_bptt", "loss_fn", loss_fn)
    leaves = jax.tree.leaves(chunks)
    arrays = all(isinstance(leaf, jax.Array | np.ndarray) for leaf in leaves)
    leading = {jnp.shape(leaf)[:1] for leaf in leaves}
    if not arrays or len(leading) != 1 or () in leading:
        fail(
            "truncated_bptt",
            "chunks",
            "be a pytree of arrays with one leading num_chunks axis (see split_chunks)",
            describe(chunks),
            ValueError if arrays else TypeError,
        )
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def body(state, chunk):
        carry, grads = state
        (loss, carry), chunk_grads = grad_fn(params, jax.lax.stop_gradient(carry), chunk)
        return (carry, jax.tree.map(jnp.add, grads, chunk_grads)), loss

    zero_grads = jax.tree.map(jnp.zeros_like, params)
    (carry, grads), losses = jax.lax.scan(body, (carry, zero_grads), chunks)
    return carry, losses, grads


def _where_batch(mask: jax.Array, on_true: Any, on_false: Any) -> Any:
    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree.map(pick, on_true, on_false)


def reset_carry(params: Any, carry: Any, reset_mask: ArrayLike, initial: Any | None = None) -> Any:
    """Reset the carries of the sequences flagged in ``reset_mask``; keep the others.

    $$
    \\begin{aligned}
    s_b \\leftarrow \\begin{cases} s^{init}_b & \\text{if reset}_b \\\\
    s_b & \\text{otherwise} \\end{cases}
    \\end{aligned}
    $$

    The building block of stateful (streaming) RNNs: call ``unroll`` chunk after chunk,
    passing the returned carry back in, and reset a stream's carry when its sequence
    ends.

    Args:
      params: the params the carry belongs to.
      carry: a carry with batch shape ``batch``.
      reset_mask: boolean ``batch``: ``True`` where the sequence starts afresh.
      initial: the state to reset to, a carry of the same batch shape; ``None`` for the
        zero state ``init_carry(params, batch)``.

    Returns:
      A carry like ``carry``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> carry, _ = jaxrnn.unroll(params, None, jnp.ones((5, 2, 3)))
      >>> carry = jaxrnn.long_sequences.reset_carry(params, carry, jnp.array([True, False]))
      >>> bool(jnp.all(carry.c[0] == 0)), bool(jnp.any(carry.c[1] != 0))
      (True, True)
    """
    check_params("reset_carry", params)
    reset_mask = check_array("reset_carry", "reset_mask", reset_mask)
    if reset_mask.dtype != jnp.bool_:
        fail("reset_carry", "reset_mask", "have dtype bool", str(reset_mask.dtype), TypeError)
    batch_shape = tuple(reset_mask.shape)
    check_carry("reset_carry", params, carry, batch_shape)
    if initial is None:
        initial = init_carry(params, batch_shape)
    else:
        check_carry("reset_carry", params, initial, batch_shape)
    initial = jax.tree.map(lambda i, c: i.astype(c.dtype), initial, carry)
    return _where_batch(reset_mask, initial, carry)


def unroll_with_resets(
    params: Any,
    carry: Any,
    xs: ArrayLike,
    resets: ArrayLike,
    initial: Any | None = None,
) -> tuple[Any, jax.Array]:
    """Unroll, resetting sequence ``b``'s carry right before each step ``t`` with
    ``resets[t, b]``: many back-to-back sequences in one stream.

    Equivalent to:

        for t in range(time):
            carry = reset_carry(params, carry, resets[t], initial)
            carry, ys[t] = cell_step(params, carry, xs[t])

    Args:
      params: a cell or a stack of unidirectional layers.
      carry: the state before ``xs[0]`` (``None``: zero state).
      xs: inputs ``(time, *batch, input_size)``.
      resets: boolean ``(time, *batch)``.
      initial: the state to reset to (``None``: zeros).

    Returns:
      ``(carry, ys)`` as [`unroll`][jaxrnn.unroll].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> xs = jax.random.normal(jax.random.key(1), (6, 1, 3))
      >>> resets = jnp.zeros((6, 1), bool).at[3].set(True)     # a new sequence at t=3
      >>> _, ys = jaxrnn.long_sequences.unroll_with_resets(params, None, xs, resets)
      >>> _, ys_second = jaxrnn.unroll(params, None, xs[3:])
      >>> bool(jnp.allclose(ys[3:], ys_second))
      True
    """
    where = "unroll_with_resets"
    check_params(where, params)
    xs = check_array(where, "xs", xs)
    check_floating(where, "xs", xs)
    batch_shape = check_features(where, "xs", xs, params.input_shape, ("time",))
    resets = check_array(where, "resets", resets)
    if resets.shape != xs.shape[: 1 + len(batch_shape)] or resets.dtype != jnp.bool_:
        expected = (
            f"be bool of shape (time, *batch) = {shape_text(xs.shape[: 1 + len(batch_shape)])}"
        )
        fail(where, "resets", expected, f"{resets.dtype}{shape_text(resets.shape)}")
    if carry is None:
        carry = init_carry(params, batch_shape)

    def body(carry, inputs):
        x, reset = inputs
        return cell_step(params, reset_carry(params, carry, reset, initial), x)

    return jax.lax.scan(body, carry, (xs, resets))
