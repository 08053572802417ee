"""Running params over time: ``init_carry``, ``cell_step`` and ``unroll``.

Variable lengths are handled in exactly one way: a boolean ``valid[t, ...] = t < length``
mask. Masked steps leave the carry as it was and emit zeros, and masked inputs are
replaced by zeros before any arithmetic, so neither values nor gradients of padding leak.
A reversed run is ``lax.scan(..., reverse=True)`` under the same mask: it first passes the
padding (carry untouched), then visits each sequence's valid steps from ``length - 1``
down to ``0``, with outputs at their input positions. No gather is needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxrnn.core import hand_derivatives as _fast
from jaxrnn.core.checks import (
    check_array,
    check_choice,
    check_features,
    check_floating,
    check_lengths,
    check_tree_like,
    fail,
    widen_lengths,
)
from jaxrnn.core.composites import Bidirectional, BidirectionalState, Stack
from jaxrnn.core.dropout import dropout

__all__ = ["cell_step", "init_carry", "sequence_mask", "unroll"]


def _param_dtype(params: Any) -> Any:
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            return leaf.dtype
    return jnp.float32


def _check_params(where: str, params: Any) -> None:
    if not hasattr(params, "zero_carry"):
        fail(
            where,
            "params",
            "be jaxrnn params (from init_params, stack, bidirectional or from_torch)",
            type(params).__name__,
            TypeError,
        )


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
    _check_params("init_carry", params)
    try:
        batch_shape = tuple(int(d) for d in batch_shape)
    except TypeError:
        fail("init_carry", "batch_shape", "be a tuple of ints", repr(batch_shape), TypeError)
    return params.zero_carry(batch_shape, _param_dtype(params))


def _check_carry(where: str, params: Any, carry: Any, batch_shape: tuple[int, ...]) -> None:
    expected = jax.eval_shape(lambda: init_carry(params, batch_shape))
    hint = f"init_carry(params, batch_shape={batch_shape})"
    check_tree_like(where, "carry", carry, expected, hint)
    # The carry keeps its dtype from step to step, so an integer carry would truncate the
    # state to integers at every step: refuse it instead of computing something else.
    for leaf in jax.tree.leaves(carry):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            fail(where, "carry", f"have real floating leaves like {hint}", str(dtype), TypeError)


def _with_dtypes(new: Any, old: Any) -> Any:
    """Keep the carry's dtype: a carry never changes type from one step to the next."""
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


def _step(params: Any, carry: Any, x: jax.Array) -> tuple[Any, jax.Array]:
    if isinstance(params, Stack):
        new_carry = []
        for layer, layer_carry in zip(params.layers, carry, strict=True):
            layer_carry, x = _step(layer, layer_carry, x)
            new_carry.append(layer_carry)
        return tuple(new_carry), x
    new, y = params.step(carry, x)
    return _with_dtypes(new, carry), y


def _contains_bidirectional(params: Any) -> bool:
    if isinstance(params, Bidirectional):
        return True
    return isinstance(params, Stack) and any(map(_contains_bidirectional, params.layers))


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
    _check_params("cell_step", params)
    if _contains_bidirectional(params):
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
        dtype = jnp.result_type(_param_dtype(params), x.dtype)
        carry = params.zero_carry(batch_shape, dtype)
    else:
        _check_carry("cell_step", params, carry, batch_shape)
    return _step(params, carry, x)


def sequence_mask(lengths: ArrayLike, num_steps: int) -> jax.Array:
    """The time-major validity mask of padded sequences: ``valid[t, ...] = t < lengths[...]``.

    The one place where lengths become a mask: [`unroll`][jaxrnn.unroll], the losses and the pooling
    functions all use it, so "valid" means the same thing everywhere.

    $$
    \\mathrm{valid}_{t,b} = [\\, t < \\mathrm{lengths}_b \\,]
    $$

    Args:
      lengths: integer array of shape ``batch_shape``: valid steps of each sequence.
      num_steps: the padded length ``time``.

    Returns:
      A boolean array of shape ``(time, *batch_shape)``.

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
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * lengths.ndim)
    return steps < lengths


def _expand_to(mask: jax.Array, leaf: jax.Array) -> jax.Array:
    """Broadcastable mask: ``mask`` has the batch dims, ``leaf`` trailing feature dims too."""
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


class Run(NamedTuple):
    """How one ``unroll`` call runs, passed down through composites unchanged except
    where a composite changes it (a backward direction flips ``reverse``; a stack splits
    ``key``)."""

    valid: jax.Array | None  # shape=(time, *batch), bool: t < lengths; None without lengths
    reverse: bool
    key: jax.Array | None  # PRNG key, None in evaluation mode
    unroll: int | bool  # passed to lax.scan
    remat: bool
    method: str  # "sequential", or a method registered with register_method


#: ``type(params) -> unroller(params, carry, xs, run) -> (carry, ys)``. Composites and
#: wrappers register here; a type not registered is a cell and runs by ``run.method``.
_UNROLLERS: dict[type, Callable[[Any, Any, jax.Array, Run], tuple[Any, jax.Array]]] = {}

#: ``method name -> unroller(cell, carry, xs, run) -> (carry, ys)`` for cells.
_METHODS: dict[str, Callable[[Any, Any, jax.Array, Run], tuple[Any, jax.Array]]] = {}

#: ``method name -> claim(params, carry, xs, run) -> (carry, ys) or None``: tried before the
#: dispatch on type, so a method can run a whole composite at once (``"cudnn"`` runs a
#: stack of LSTM layers in one kernel call); ``None`` declines and the dispatch goes on.
_CLAIMS: dict[str, Callable[[Any, Any, jax.Array, Run], tuple[Any, jax.Array] | None]] = {}


def register_unroller(params_type: type, unroller: Callable) -> None:
    """Make ``unroll`` run params of ``params_type`` with ``unroller(params, carry, xs, run)``.

    For composites and wrappers defined outside this module; they call
    ``unroll_params`` for their parts.
    """
    _UNROLLERS[params_type] = unroller


class Unwrapped(NamedTuple):
    """What runs in the place of a wrapper (see ``register_wrapper``)."""

    params: Any  # runs over xs from the wrapper's carry, in the wrapper's place
    xs: jax.Array  # shape=(time, *batch, *params.input_shape): the inputs, masks appended
    output_mask: jax.Array | None  # multiplies params' outputs; None: nothing to multiply
    key: jax.Array | None  # for params: a key the wrapper did not use, or None


#: ``type(params) -> unwrap(params, xs, key) -> Unwrapped``: wrappers that run as other
#: params do (see ``register_wrapper``).
_WRAPPERS: dict[type, Callable[[Any, jax.Array, jax.Array | None], Unwrapped]] = {}


def register_wrapper(params_type: type, unwrap: Callable) -> None:
    """Make ``unroll`` run params of ``params_type`` as ``unwrap(params, xs, key)`` says.

    ``unwrap`` returns an ``Unwrapped``: what runs in their place, on which inputs. A
    wrapper whose training step is random draws its masks from ``key`` for every step
    before the scan and appends them to ``xs`` (``regularize``, attention decoders); one
    that only changes the initial carry hands over its cell (``learned_init``)::

        params, xs, output_mask, key = unwrap(params, xs, run.key)
        carry, ys = unroll_params(params, carry, xs, run._replace(key=key))
        return carry, ys * output_mask  # ys when output_mask is None

    Code that runs params its own way (``with_carry_outputs``) unwraps them with
    ``unwrapped``, so it draws the masks that ``unroll`` draws.
    """
    _WRAPPERS[params_type] = unwrap
    register_unroller(params_type, functools.partial(_unroll_wrapper, unwrap))


def unwrapped(params: Any, xs: jax.Array, key: jax.Array | None) -> Unwrapped | None:
    """What runs in the place of ``params`` if it is a registered wrapper, else ``None``."""
    unwrap = _WRAPPERS.get(type(params))
    return None if unwrap is None else unwrap(params, xs, key)


def _unroll_wrapper(unwrap: Callable, params: Any, carry: Any, xs: jax.Array, run: Run):
    inner = unwrap(params, xs, run.key)
    carry, ys = unroll_params(inner.params, carry, inner.xs, run._replace(key=inner.key))
    return carry, ys if inner.output_mask is None else ys * inner.output_mask


def register_method(name: str, unroller: Callable, *, claim: Callable | None = None) -> None:
    """Add ``unroll(..., method=name)`` for cells: ``unroller(cell, carry, xs, run)``.

    With ``claim``, ``claim(params, carry, xs, run)`` is first offered every params the
    method reaches, composites included, and returns ``(carry, ys)`` or ``None``.
    """
    _METHODS[name] = unroller
    if claim is not None:
        _CLAIMS[name] = claim


def unroll_params(params: Any, carry: Any, xs: jax.Array, run: Run) -> tuple[Any, jax.Array]:
    """``unroll`` after validation: a method's claim, then the params type, then ``run.method``."""
    claim = _CLAIMS.get(run.method)
    if claim is not None:
        claimed = claim(params, carry, xs, run)
        if claimed is not None:
            return claimed
    unroller = _UNROLLERS.get(type(params))
    if unroller is None:
        unroller = _METHODS[run.method]
    return unroller(params, carry, xs, run)


def scan_auto(params: Any, carry: Any, xs: jax.Array, run: Run) -> tuple[Any, jax.Array]:
    """The default method, ``"auto"``: ``"fused"`` for the cells where it measured faster
    (the LSTM: about 0.6-0.85x the plain scan's training time, the same forward; see
    ``docs/performance.md``), ``"sequential"`` for every other cell."""
    if _fast.prefers_fused(params):
        return scan_fused(params, carry, xs, run)
    return scan_cell(params, carry, xs, run)


def scan_fused(params: Any, carry: Any, xs: jax.Array, run: Run) -> tuple[Any, jax.Array]:
    """The ``"fused"`` method: the hand-scheduled derivatives of ``jaxrnn.core.hand_derivatives`` where
    they apply (the built-in cells without ``remat``), else ``scan_cell``. Both compute
    the same function; measured on XLA:CPU it trains an LSTM faster than the plain scan
    and a GRU or Elman RNN not reliably so (``docs/performance.md``), which is what
    ``"auto"`` follows."""
    if not run.remat:
        fast = _fast.fast_unroll(params, carry, xs, run.valid, run.reverse, run.unroll)
        if fast is not None:
            return fast
    return scan_cell(params, carry, xs, run)


def scan_cell(params: Any, carry: Any, xs: jax.Array, run: Run) -> tuple[Any, jax.Array]:
    """The sequential method (and the oracle of ``"fused"``): one ``params.step`` per
    ``lax.scan`` iteration, masked. With ``remat`` it stores only the carry entering each
    segment of about ``sqrt(time)`` steps (``jaxrnn.core.hand_derivatives.remat_scan``)."""

    def body(carry, inputs):
        x, valid_t = inputs
        new, y = params.step(carry, x)
        new = _with_dtypes(new, carry)
        if valid_t is not None:
            new = jax.tree.map(lambda n, o: jnp.where(_expand_to(valid_t, n), n, o), new, carry)
            y = jnp.where(_expand_to(valid_t, y), y, jnp.zeros_like(y))
        return new, y

    inputs = (xs, run.valid)
    if run.remat:
        return _fast.remat_scan(body, carry, inputs, reverse=run.reverse, unroll=run.unroll)
    return jax.lax.scan(body, carry, inputs, reverse=run.reverse, unroll=run.unroll)


def stack_keys(key: jax.Array | None, num_layers: int) -> tuple[list, list]:
    """``(layer_keys, dropout_keys)`` of a ``Stack`` run with ``key``: layer ``i`` gets
    ``split(key, 2 n)[i]`` and the dropout after it ``split(key, 2 n)[n + i]`` (all
    ``None`` without a key). Everything that runs a stack draws its masks this way."""
    if key is None:
        return [None] * num_layers, [None] * num_layers
    keys = list(jax.random.split(key, 2 * num_layers))
    return keys[:num_layers], keys[num_layers:]


def _unroll_stack(params: Stack, carry: tuple, xs: jax.Array, run: Run):
    n = len(params.layers)
    layer_keys, dropout_keys = stack_keys(run.key, n)
    new_carry = []
    for i, (layer, layer_carry) in enumerate(zip(params.layers, carry, strict=True)):
        layer_carry, xs = unroll_params(layer, layer_carry, xs, run._replace(key=layer_keys[i]))
        dropout_key = dropout_keys[i]
        if dropout_key is not None and i < n - 1 and params.dropout > 0:
            xs = dropout(dropout_key, xs, params.dropout)
        new_carry.append(layer_carry)
    return tuple(new_carry), xs


def _unroll_bidirectional(params: Bidirectional, carry: BidirectionalState, xs, run: Run):
    kf, kb = (None, None) if run.key is None else jax.random.split(run.key)
    carry_f, ys_f = unroll_params(params.forward, carry.forward, xs, run._replace(key=kf))
    backward_run = run._replace(key=kb, reverse=not run.reverse)
    carry_b, ys_b = unroll_params(params.backward, carry.backward, xs, backward_run)
    return BidirectionalState(carry_f, carry_b), params.merge_outputs(ys_f, ys_b)


register_method("sequential", scan_cell)
register_method("fused", scan_fused)
register_method("auto", scan_auto)
register_unroller(Stack, _unroll_stack)
register_unroller(Bidirectional, _unroll_bidirectional)


def _check_key(where: str, key: Any) -> None:
    is_typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    is_raw = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    if not (is_typed and key.shape == ()) and not is_raw:
        got = _describe_key(key)
        fail(where, "key", "be a single PRNG key (jax.random.key(seed)) or None", got, TypeError)


def _describe_key(key: Any) -> str:
    if isinstance(key, jax.Array):
        return f"{key.dtype}{list(key.shape)}"
    return type(key).__name__


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
    method: str = "auto",
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
    run layer by layer, each layer over the whole sequence.

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
      unroll: passed to ``lax.scan``: how many steps each loop iteration runs.
      remat: store only the carry entering each segment of about ``sqrt(time)`` steps
        and recompute the segments in the backward pass, trading compute for memory on
        long sequences.
      method: how cells run over time: ``"auto"`` (the default: ``"fused"`` for LSTM
        cells, where it trains faster, ``"sequential"`` for the others);
        ``"sequential"`` (``lax.scan`` of the cell's step, every cell: the reference);
        ``"fused"`` (built-in rnn, lstm and gru cells: the same function with
        hand-scheduled derivatives, weight and input gradients as single GEMMs after the
        loop; see ``docs/performance.md``);
        ``"parallel"`` (a parallel scan over time, for cells linear in their state:
        ``"mingru"``, ``"minlstm"``, ``"lru"``); ``"deer"`` / ``"quasi_deer"`` (Newton's
        method over the whole trajectory with full / diagonal Jacobians, for nonlinear
        cells; raises [`DEERNotConvergedError`][jaxrnn.DEERNotConvergedError] if it does not
        converge); ``"elk"`` / ``"quasi_elk"`` (the same with ELK's trust-region steps,
        a Kalman smoother per iteration, for dynamics where DEER's steps overflow).
        See [`jaxrnn.parallel`][jaxrnn.parallel] and [`deer_unroll`][jaxrnn.deer_unroll]
        for options and reports. ``"cudnn"`` (LSTMs, their stacks and bidirectional
        pairs in one cuDNN call on a GPU; other cells, or no GPU, run ``"sequential"``
        with a [`CuDNNFallbackWarning`][jaxrnn.CuDNNFallbackWarning]; see
        [`jaxrnn.cudnn`][jaxrnn.cudnn]).
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
    _check_params("unroll", params)
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
    if carry is None:
        carry = params.zero_carry(batch_shape, jnp.result_type(_param_dtype(params), xs.dtype))
    else:
        _check_carry("unroll", params, carry, batch_shape)
    if key is not None:
        _check_key("unroll", key)
    check_choice("unroll", "method", method, tuple(_METHODS))
    valid = None
    if lengths is not None:
        lengths = check_lengths("unroll", lengths, batch_shape, num_steps)
        valid = sequence_mask(lengths, num_steps)
        xs = jnp.where(_expand_to(valid, xs), xs, jnp.zeros_like(xs))
    run = Run(valid, bool(reverse), key, unroll, bool(remat), method)
    carry, ys = unroll_params(params, carry, xs, run)
    if not time_major:
        ys = jnp.moveaxis(ys, 0, len(batch_shape))
    return carry, ys
