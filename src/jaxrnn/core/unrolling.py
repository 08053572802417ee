"""Running params over time: ``init_carry``, ``cell_step`` and ``unroll``.

Variable lengths are handled in exactly one way: a boolean ``valid[t, ...] = t < length``
mask. Masked steps leave the carry as it was and emit zeros, and masked inputs are
replaced by zeros before any arithmetic, so neither values nor gradients of padding leak.
A reversed run is ``lax.scan(..., reverse=True)`` under the same mask: it first passes the
padding (carry untouched), then visits each sequence's valid steps from ``length - 1``
down to ``0``, with outputs at their input positions. No gather is needed.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_features,
    check_floating,
    check_key,
    check_lengths,
    check_tree_like,
    fail,
    widen_lengths,
)
from jaxrnn.core.composites import Stack, check_composite, contains_bidirectional
from jaxrnn.core.methods import Method, Run, as_method, expand_mask, with_dtypes

__all__ = ["cell_step", "init_carry", "sequence_mask", "unroll"]


def param_dtype(params: Any) -> Any:
    """The dtype of a carry for ``params``: the first floating leaf's (float32 if none)."""
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            return leaf.dtype
    return jnp.float32


def check_params(where: str, params: Any) -> None:
    if not hasattr(params, "initial_carry"):
        fail(
            where,
            "params",
            "be jaxrnn params (from init_params, stack, bidirectional or from_torch)",
            type(params).__name__,
            TypeError,
        )
    check_composite(where, params)


def init_carry(params: Any, batch_shape: tuple[int, ...] = ()) -> Any:
    """The zero initial state of ``params`` for inputs with leading ``batch_shape``.

    The structure follows the params: an array ``h`` for ``"rnn"`` and ``"gru"``,
    ``LSTMState(h, c)`` for ``"lstm"``, a tuple with one carry per layer for a
    [`stack`][jaxrnn.stack], a ``BidirectionalState(forward, backward)`` for a
    [`bidirectional`][jaxrnn.bidirectional] pair. The dtype is the params' dtype.

    Args:
      params: cell or composite params.
      batch_shape: the leading dims of ``x`` before the features, e.g. ``(batch,)``.

    Returns:
      A carry pytree whose arrays have shape ``(*batch_shape, state_size)``.

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 5)
      >>> jaxrnn.init_carry(params, (2,)).c.shape
      (2, 5)
    """
    check_params("init_carry", params)
    # A list is taken as a shape, as NumPy does; a float entry is refused, not truncated.
    if not isinstance(batch_shape, tuple | list) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool | np.bool_) for d in batch_shape
    ):
        fail("init_carry", "batch_shape", "be a tuple of ints", repr(batch_shape), TypeError)
    batch_shape = tuple(int(d) for d in batch_shape)
    if any(d < 0 for d in batch_shape):
        fail("init_carry", "batch_shape", "be a tuple of ints >= 0", repr(batch_shape))
    return params.initial_carry(batch_shape, param_dtype(params))


def check_carry(
    where: str,
    params: Any,
    carry: Any,
    batch_shape: tuple[int, ...],
    argument: str = "carry",
    of: str = "params",
) -> None:
    """``carry`` must be like ``init_carry(params, batch_shape)``, with real floating
    leaves; ``argument`` and ``of`` name the carry and the params in the messages."""
    expected = jax.eval_shape(lambda: init_carry(params, batch_shape))
    hint = f"init_carry({of}, batch_shape={batch_shape})"
    check_tree_like(where, argument, carry, expected, hint)
    # The carry keeps its dtype from step to step, so an integer carry would truncate the
    # state to integers at every step: refuse it instead of computing something else.
    for leaf in jax.tree.leaves(carry):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            fail(where, argument, f"have real floating leaves like {hint}", str(dtype), TypeError)


def step(params: Any, carry: Any, x: Any) -> tuple[Any, jax.Array]:
    """``cell_step`` without its checks: a cell's step, or each layer of a stack in turn;
    the carry keeps its dtypes. (For code that checked its inputs once, outside a loop.)"""
    if isinstance(params, Stack):
        new_carry = []
        for layer, layer_carry in zip(params.layers, carry, strict=True):
            layer_carry, x = step(layer, layer_carry, x)
            new_carry.append(layer_carry)
        return tuple(new_carry), x
    new, y = params.step(carry, x)
    return with_dtypes(new, carry), y


def cell_step(params: Any, carry: Any, x: ArrayLike) -> tuple[Any, jax.Array]:
    """One time step, with the signature of a ``lax.scan`` body.

    For a cell this is the cell's equation (see its params type). For a
    [`stack`][jaxrnn.stack] of unidirectional layers it steps each layer in turn, the output
    of layer ``i`` being the input of layer ``i + 1`` (no dropout: ``cell_step`` is the
    deterministic step used for generation). A bidirectional pair has no single step (its
    backward direction needs the future), so it is rejected.

    Args:
      params: cell params, or a stack of unidirectional layers.
      carry: state from [`init_carry`][jaxrnn.init_carry] (or ``None`` for the zero state).
      x: input ``(..., input_size)`` with any leading batch dims.

    Returns:
      ``(carry, y)`` with ``y`` of shape ``(..., output_size)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> carry, y = jaxrnn.cell_step(params, None, jnp.ones((2, 3)))
      >>> y.shape, carry.shape
      ((2, 4), (2, 4))
    """
    check_params("cell_step", params)
    if contains_bidirectional(params):
        fail(
            "cell_step",
            "params",
            "be a cell or a stack of unidirectional layers (a bidirectional RNN needs the "
            "whole sequence: use unroll)",
            type(params).__name__,
        )
    x = check_array("cell_step", "x", x)
    check_floating("cell_step", "x", x)
    batch_shape = check_features("cell_step", "x", x, params.input_shape, ())
    if carry is None:
        dtype = jnp.result_type(param_dtype(params), x.dtype)
        carry = params.initial_carry(batch_shape, dtype)
    else:
        check_carry("cell_step", params, carry, batch_shape)
    return step(params, carry, x)


def sequence_mask(lengths: ArrayLike, num_steps: int, *, time_major: bool = True) -> jax.Array:
    """The time-major validity mask of padded sequences: ``valid[t, ...] = t < lengths[...]``.

    The one place where lengths become a mask: [`unroll`][jaxrnn.unroll], the losses and the pooling
    functions all use it, so "valid" means the same thing everywhere.

    $$
    \\mathrm{valid}_{t,b} = [\\, t < \\mathrm{lengths}_b \\,]
    $$

    Args:
      lengths: integer array of shape ``batch_shape``: valid steps of each sequence.
      num_steps: the padded length ``time``.
      time_major: ``False`` gives the batch-major mask ``(*batch_shape, time)``.

    Returns:
      A boolean array of shape ``(time, *batch_shape)`` (``(*batch_shape, time)``).

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> jaxrnn.sequence_mask(jnp.array([3, 1]), 4).astype(int).T
      Array([[1, 1, 1, 0],
             [1, 0, 0, 0]], dtype=int32)
    """
    if not isinstance(lengths, np.ndarray | np.generic):
        lengths = check_array("sequence_mask", "lengths", lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        fail("sequence_mask", "lengths", "have an integer dtype", str(lengths.dtype), TypeError)
    lengths = widen_lengths(lengths, num_steps)  # compared in int32, whatever the dtype
    check_bool("sequence_mask", "time_major", time_major)
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 0:
        fail("sequence_mask", "num_steps", "be an int >= 0", repr(num_steps), TypeError)
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * lengths.ndim)
    valid = steps < lengths
    return valid if time_major else jnp.moveaxis(valid, 0, -1)


def unroll(
    params: Any,
    carry: Any,
    xs: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    key: jax.Array | None = None,
    unroll: int | bool = 1,
    remat: bool = False,
    method: str | Method = "auto",
    time_major: bool = True,
) -> tuple[Any, jax.Array]:
    """Run params over a sequence with ``lax.scan``: BPTT is ``jax.grad`` of it.

    For a cell, equivalent to this loop (with ``lengths=None``, ``reverse=False``):

        ys = []
        for t in range(xs.shape[0]):
            carry, y = cell_step(params, carry, xs[t])
            ys.append(y)
        return carry, jnp.stack(ys)

    With ``lengths``, steps ``t >= lengths[b]`` of sequence ``b`` leave its carry
    unchanged and give ``ys[t, b] = 0``, so the returned carry is the state after each
    sequence's last valid step; padding values never reach outputs or gradients.
    With ``reverse=True`` each sequence runs backward over its own valid steps, from
    ``lengths[b] - 1`` down to ``0``, with ``ys`` at the input positions and padding
    left at the end. Composites ([`stack`][jaxrnn.stack], [`bidirectional`][jaxrnn.bidirectional])
    run layer by layer, each layer over the whole sequence. Called outside ``jit``, the
    run is compiled once per shape and method and reused by later calls (inside ``jit``
    it is part of the caller's program).

    Args:
      params: cell or composite params.
      carry: initial state (see [`init_carry`][jaxrnn.init_carry]), or ``None`` for the zero state
        of the batch shape of ``xs``.
      xs: inputs ``(time, ..., input_size)``: time first, then any batch dims; with
        ``time_major=False``, ``(..., time, input_size)``: batch dims first.
      lengths: optional integer array with the batch shape of ``xs``: the number of valid
        steps of each sequence. Values are clipped to ``[0, time]``; a length of 0 gives
        back the initial carry and all-zero outputs.
      reverse: run each sequence from its last valid step to its first.
      key: PRNG key for dropout between stacked layers; ``None`` (evaluation) applies none.
      unroll: passed to ``lax.scan``: how many steps each loop iteration runs (for the
        string methods ``"auto"``, ``"sequential"``, ``"fused"``, ``"cudnn"``; a method
        object carries its own).
      remat: store only the carry entering each segment of about ``sqrt(time)`` steps
        and recompute the segments in the backward pass, trading compute for memory on
        long sequences (string methods ``"auto"``, ``"sequential"``, ``"cudnn"``).
      method: how cells run over time: a method object that carries its settings, or the
        string alias of a default (see ``jaxrnn.core.methods.as_method``):
        ``"auto"`` (the default, [`Auto`][jaxrnn.core.methods.Auto]: hand-written
        derivatives for LSTM and GRU cells while ``batch * hidden_size <= 8192``, where
        they train faster, the plain scan otherwise);
        ``"sequential"`` ([`Sequential`][jaxrnn.core.methods.Sequential]: ``lax.scan`` of
        the cell's step, every cell: the reference);
        ``"fused"`` ([`HandDerivatives`][jaxrnn.core.methods.HandDerivatives]: built-in
        rnn, lstm and gru cells, the same function with hand-scheduled derivatives);
        ``"parallel"`` ([`Parallel`][jaxrnn.parallel.Parallel]: a parallel scan over
        time, for cells linear in their state: ``"mingru"``, ``"minlstm"``, ``"lru"``,
        ``"rglru"``; the quadratic or chunkwise form of ``"mlstm"``);
        ``"deer"`` / ``"quasi_deer"`` / ``"elk"`` / ``"quasi_elk"`` (presets of
        [`DEER`][jaxrnn.parallel.DEER]: Newton's method over the whole trajectory, with
        full or diagonal Jacobians, plain or trust-region steps; ``DEER(tol=...,
        max_iter=..., damping=...)`` tunes them); ``"cudnn"``
        ([`CuDNN`][jaxrnn.cudnn.CuDNN]: LSTMs, their stacks and bidirectional pairs in
        one cuDNN call on a GPU; elsewhere ``lax.scan`` with a ``CuDNNFallbackWarning``).
        A method that cannot run a cell raises
        [`MethodError`][jaxrnn.core.methods.MethodError] saying why and what to use.
      time_major: ``True`` (the default, like PyTorch and Haiku): ``xs`` and ``ys`` have
        time first. ``False`` (like Flax's ``nn.RNN`` and PyTorch's ``batch_first``): time
        is the axis just before the features, after the batch dims, in ``xs`` and ``ys``
        alike. The computation is the same (the time axis is moved, then moved back).

    Returns:
      ``(carry, ys)``: the final carry and outputs ``(time, ..., output_size)``
      (``(..., time, output_size)`` with ``time_major=False``).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 8, num_layers=2,
      ...                             bidirectional=True)
      >>> xs = jnp.ones((5, 2, 3))  # (time, batch, input_size)
      >>> carry, ys = jaxrnn.unroll(params, None, xs, lengths=jnp.array([5, 3]))
      >>> ys.shape
      (5, 2, 16)
      >>> bool(jnp.all(ys[3:, 1] == 0))
      True
    """
    check_params("unroll", params)
    xs = check_array("unroll", "xs", xs)
    check_floating("unroll", "xs", xs)
    if not isinstance(time_major, bool | np.bool_):
        fail("unroll", "time_major", "be a bool", repr(time_major), TypeError)
    if time_major:
        batch_shape = check_features("unroll", "xs", xs, params.input_shape, ("time",))
    else:
        batch_shape = check_features("unroll", "xs", xs, params.input_shape, (), trailing=("time",))
        xs = jnp.moveaxis(xs, len(batch_shape), 0)
    num_steps = xs.shape[0]
    if carry is not None:
        check_carry("unroll", params, carry, batch_shape)
    if key is not None:
        check_key("unroll", key)
    if not isinstance(reverse, bool | np.bool_):
        fail("unroll", "reverse", "be a bool", repr(reverse), TypeError)
    method = as_method(method, unroll=unroll, remat=remat)
    if lengths is not None:
        lengths = check_lengths("unroll", lengths, batch_shape, num_steps)
    # Checked: what follows is traced once per shape and method (see Method.compiled).
    run = _run_compiled if method.compiled and _hashable(method) else _run
    try:
        return run(
            params, carry, xs, lengths, key, method=method, reverse=bool(reverse),
            time_major=bool(time_major),
        )  # fmt: skip
    except Exception as error:
        _drop_jit_note(error)
        raise


def _run(
    params: Any,
    carry: Any,
    xs: jax.Array,
    lengths: jax.Array | None,
    key: jax.Array | None,
    *,
    method: Method,
    reverse: bool,
    time_major: bool,
) -> tuple[Any, jax.Array]:
    """``unroll`` after its checks: ``xs`` time-major, ``lengths`` clipped int32."""
    batch_shape = xs.shape[1 : xs.ndim - len(params.input_shape)]
    if carry is None:
        carry = params.initial_carry(batch_shape, jnp.result_type(param_dtype(params), xs.dtype))
    valid = None
    if lengths is not None:
        valid = sequence_mask(lengths, xs.shape[0])
        xs = jnp.where(expand_mask(valid, xs), xs, jnp.zeros_like(xs))
    carry, ys = method.unroll_params(params, carry, xs, Run(valid, reverse, key, method))
    if not time_major:
        ys = jnp.moveaxis(ys, 0, len(batch_shape))
    return carry, ys


# Called outside jit, unroll then compiles one program per shape and method, reused by
# later calls, instead of running op by op (where lax.scan would compile anew each call).
_run_compiled = jax.jit(_run, static_argnames=("method", "reverse", "time_major"))


def _drop_jit_note(error: Exception) -> None:
    """An error raised while tracing (e.g. a ``MethodError``) reads as it would outside
    ``jit``: without the note that ``jax.jit`` appends about its removed frames."""
    notes = getattr(error, "__notes__", None)
    if notes:
        error.__notes__ = [n for n in notes if "JAX_TRACEBACK_FILTERING" not in n]


def _hashable(method: Method) -> bool:
    try:
        hash(method)
    except TypeError:
        return False
    return True
