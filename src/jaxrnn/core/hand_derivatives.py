"""``unroll(method="fused")`` for the built-in cells (BPTT scheduled like cuDNN, in JAX),
and the segment rematerialization behind ``unroll(remat=True)``.

The reference (``scan_cell`` with ``params.step``, the default method) computes, in each
``lax.scan`` step, ``x_t W_x + b_x`` and ``h W_h + b_h`` and the gate nonlinearities, and
``jax.grad`` differentiates that loop step by step. This module computes the same function
differently:

* **Forward.** As the reference, plus the residuals the derivatives need, chosen as the
  coefficients of the tangent (so the backward loop only multiplies and adds).
* **Derivatives.** The function is a ``jax.custom_jvp`` whose tangent is written so that
  everything that does not depend on the state tangent is one GEMM outside the loop:

      dP  = dxs W_x + xs dW_x + db_x              # (time, batch, gates), one GEMM each
      dA0 = h_prev dW_h + db_h                    # h_prev: the states entering each step
      loop over t:  dA_t = dh_{t-1} W_h + dA0_t;  (dcarry, dy_t) = tangent(dP_t, dA_t)

  Forward mode (``jax.jvp``, ``jax.jacfwd``) runs this directly. Reverse mode is JAX's
  transpose of it: a loop that carries only the state cotangent, followed by the weight
  and input gradients as single large GEMMs over all steps (``dW_x = xs^T dP``,
  ``dW_h = h_prev^T dA``, ``dxs = dP W_x^T``), which is what cuDNN and oneDNN do.
  Higher derivatives work because the tangent rule is itself plain JAX.

Each supported cell has a ``Kernel``: its pointwise gate math, the residuals the
tangent needs, and the tangent of the pointwise math written out by hand. Cells without
a kernel (or configurations a kernel does not cover) run the reference. The reference
stays the oracle: ``tests/test_fast_path.py`` checks every kernel against it, values and
derivatives. Measured on a 2-core XLA:CPU machine it trains LSTMs in 0.6-0.9x the
reference's time at small and mid states and 0.84-1.02x at large ones (``batch *
hidden_size`` up to 65536), with the same memory, and GRUs in 0.5-0.9x while
``batch * hidden_size <= FUSED_MAX_STATE`` (with 1.5-1.6x the memory) and 0.9-1.3x above
it (``docs/performance.md``, ``benchmarks/fused_or_scan.py``): the default,
``method="auto"``, takes it there only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells.gru import GRUParams
from jaxrnn.cells.lstm import LSTMParams, LSTMState
from jaxrnn.cells.rnn import RNNParams

__all__ = [
    "FUSED_MAX_STATE",
    "Kernel",
    "fast_unroll",
    "kernel_for",
    "prefers_fused",
    "remat_scan",
    "segment_length",
]


class Kernel(NamedTuple):
    """How one cell type runs on the fast path.

    ``A_t = h_{t-1} W_h + b_h`` is computed by the loop; the kernel does the rest.
    """

    #: ``(params, carry, P_t, A_t) -> (carry, y, residual)``: the pointwise gate math.
    pointwise: Callable[[Any, Any, jax.Array, jax.Array], tuple[Any, jax.Array, Any]]
    #: ``(params, dP, dA0) -> hoisted``: the tangent terms computed before the loop,
    #: combined (``dP + dA0`` where the cell adds them) so that the loop, and the
    #: backward loop that transposes it, read and write as few arrays as possible.
    combine: Callable[[Any, jax.Array, jax.Array], Any]
    #: ``(params, residual, dcarry, hoisted_t, dA_t) -> (dcarry, dy)``: the tangent of
    #: ``pointwise`` with ``dA_t = dh_{t-1} W_h``, linear in its last three arguments.
    tangent: Callable[..., tuple[Any, jax.Array]]
    #: ``carry -> h``: the part of the carry that multiplies ``W_h``.
    hidden: Callable[[Any], jax.Array]
    #: ``(params, carry0, residuals, ys, entering) -> residuals``: the tangent's
    #: coefficients from what the loop stored, for all steps at once after the loop
    #: (``entering(seq, first)`` gives the values entering each step).
    expand: Callable[..., Any] = lambda params, carry0, residuals, ys, entering: residuals
    #: Whether the forward loop run under differentiation takes ``P = xs W_x + b_x``
    #: computed for all steps before the loop (one GEMM) rather than ``x_t W_x + b_x`` in
    #: each step; chosen per cell by measurement (``docs/performance.md``). The loop run
    #: for the values alone always projects in the loop (see ``_forward``).
    hoist_when_differentiated: bool = False
    #: The largest ``batch * hidden_size`` for which ``method="auto"`` takes this path
    #: (``prefers_fused``), chosen per cell by measurement (``docs/performance.md``,
    #: ``benchmarks/fused_or_scan.py``); ``None``: never, ``math.inf``: at every size.
    auto_max_state: float | None = None


# --- LSTM: gates i, f, g, o -------------------------------------------------------------
#
# The residuals of every kernel are the coefficients of its tangent (the Jacobian of the
# pointwise math, in compact form), so that the tangent is only multiply-adds. Any other
# arithmetic on primal values inside the tangent loop would make JAX's linearization run
# an extra loop over all steps to precompute it.


def _lstm_pointwise(params: LSTMParams, carry: LSTMState, p: jax.Array, a: jax.Array):
    i, f, g, o = jnp.split(p + a, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry.c + i * g
    tanh_c = jnp.tanh(c)
    h = o * tanh_c
    # dc = k_i di + k_f df + k_g dg + f dc_prev;  dh = k_o do + k_c dc  (d* of pre-activations)
    k_gates = jnp.concatenate(
        [i * (1 - i) * g, f * (1 - f) * carry.c, i * (1 - g * g), o * (1 - o) * tanh_c], axis=-1
    )
    return LSTMState(h=h, c=c), h, (k_gates, f, o * (1 - tanh_c * tanh_c))


def _add(params: Any, dp: jax.Array, da0: jax.Array) -> jax.Array:
    return dp + da0


def _lstm_tangent(params: LSTMParams, residual, dcarry: LSTMState, dpre0, da):
    k_gates, f, k_c = residual
    k_i, k_f, k_g, k_o = jnp.split(k_gates * (dpre0 + da), 4, axis=-1)
    dc = k_i + k_f + k_g + f * dcarry.c
    dh = k_o + k_c * dc
    return LSTMState(h=dh, c=dc), dh


LSTM_KERNEL = Kernel(
    _lstm_pointwise, _add, _lstm_tangent, hidden=lambda carry: carry.h, auto_max_state=math.inf
)


# --- GRU (reset_after=True): gates r, z, n -----------------------------------------------


def _gru_pointwise(params: GRUParams, h: jax.Array, p: jax.Array, a: jax.Array):
    # The reference's arithmetic (GRUParams.recurrence), so both give the same bits.
    size = params.hidden_size
    s_rz = jax.nn.sigmoid(p[..., : 2 * size] + a[..., : 2 * size])
    r, z = jnp.split(s_rz, 2, axis=-1)
    a_n = a[..., 2 * size :]
    n = jnp.tanh(p[..., 2 * size :] + r * a_n)
    h_new = n + z * (h - n)
    return h_new, h_new, (s_rz, n, a_n)


def _gru_expand(params: GRUParams, h0: jax.Array, residuals, ys, entering):
    # dh' = k_r (dp_r + da_r) + k_z (dp_z + da_z) + k_an da_n + k_n dp_n + z dh
    size = params.hidden_size
    s_rz, n, a_n = residuals
    slope_rz = s_rz * (1 - s_rz)  # sigmoid' of r and z
    r, z = jnp.split(s_rz, 2, axis=-1)
    k_n = (1 - z) * (1 - n * n)
    k_gates = jnp.concatenate(
        [slope_rz[..., :size] * k_n * a_n, slope_rz[..., size:] * (entering(ys, h0) - n), k_n * r],
        axis=-1,
    )
    return k_gates, k_n, z


def _gru_combine(params: GRUParams, dp: jax.Array, da0: jax.Array):
    """``(X, Y)``: ``X`` multiplies like ``dA`` (``dp + dA0`` for r and z, ``dA0`` for n),
    ``Y = dp_n`` enters ``n`` outside the reset gate."""
    size = params.hidden_size
    rz = dp[..., : 2 * size] + da0[..., : 2 * size]
    return jnp.concatenate([rz, da0[..., 2 * size :]], axis=-1), dp[..., 2 * size :]


def _gru_tangent(params: GRUParams, residual, dh, hoisted, da):
    k_gates, k_n, z = residual
    x, y = hoisted
    d_gates = (k_gates * (x + da)).reshape(*z.shape[:-1], 3, z.shape[-1])
    dh_new = jnp.sum(d_gates, axis=-2) + k_n * y + z * dh
    return dh_new, dh_new


#: ``unroll``'s default takes the fast path for GRU cells up to this many state values per
#: step (``batch * hidden_size``); above it the plain scan trained as fast or faster.
FUSED_MAX_STATE = 8192

GRU_KERNEL = Kernel(
    _gru_pointwise,
    _gru_combine,
    _gru_tangent,
    hidden=lambda h: h,
    expand=_gru_expand,
    hoist_when_differentiated=True,
    auto_max_state=FUSED_MAX_STATE,
)


# --- Elman RNN ---------------------------------------------------------------------------


def _rnn_pointwise(params: RNNParams, h: jax.Array, p: jax.Array, a: jax.Array):
    pre = p + a
    if params.activation == "tanh":
        h_new = jnp.tanh(pre)
        slope = 1 - h_new * h_new
    else:
        h_new = jax.nn.relu(pre)
        slope = (pre > 0).astype(pre.dtype)
    return h_new, h_new, slope


def _rnn_tangent(params: RNNParams, slope, dh, dpre0, da):
    dh_new = slope * (dpre0 + da)
    return dh_new, dh_new


RNN_KERNEL = Kernel(_rnn_pointwise, _add, _rnn_tangent, hidden=lambda h: h)


def prefers_fused(params: Any, xs: jax.Array) -> bool:
    """Whether ``unroll``'s default (``method="auto"``) takes this path for ``params``
    over ``xs`` (``(time, *batch, input_size)``), as measured on XLA:CPU
    (``docs/performance.md``, ``benchmarks/fused_or_scan.py``): for LSTM cells (without
    projection) at every size, for GRU cells (``reset_after``) while
    ``batch * hidden_size <= FUSED_MAX_STATE`` (``Kernel.auto_max_state``). Training took
    0.5-0.9x the plain scan's time at small states, the LSTM's 0.84-1.02x at large ones; the
    GRU's above the bound 0.9-1.3x (tie or slower)."""
    kernel = kernel_for(params)
    if kernel is None or kernel.auto_max_state is None:
        return False
    return math.prod(xs.shape[1:-1]) * params.hidden_size <= kernel.auto_max_state


def kernel_for(params: Any) -> Kernel | None:
    """The fast-path kernel of a cell's params, or ``None`` when it must run the reference."""
    if type(params) is LSTMParams and params.w_proj is None:
        return LSTM_KERNEL
    if type(params) is GRUParams and params.reset_after:
        return GRU_KERNEL
    if type(params) is RNNParams:
        return RNN_KERNEL
    return None


# --- The unrolled function and its tangent -----------------------------------------------


def _affine(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    if x.ndim > 2 and jax.device_count() == 1:
        # One 2-D GEMM over all leading axes: its transpose, the weight gradient
        # ``x^T dy``, is then one dot contracting a single axis. Contracting ``(time, batch)``
        # as two axes made XLA:CPU transpose both operands first and ran 1.5-3.6x slower
        # (``docs/performance.md``). Only with one device: with several, the batch axis may
        # be sharded, and merging it with time would make XLA gather the whole batch.
        y = jnp.dot(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[-1])
    else:
        y = jnp.einsum("...i,ij->...j", x, w)
    return y if b is None else y + b


def _mask(valid_t: jax.Array | None, new: Any, old: Any) -> Any:
    if valid_t is None:
        return new
    return jax.tree.map(lambda n, o: jnp.where(valid_t[..., None], n, o), new, old)


def _zero_masked(valid_t: jax.Array | None, y: jax.Array) -> jax.Array:
    return y if valid_t is None else jnp.where(valid_t[..., None], y, jnp.zeros_like(y))


def _forward(
    kernel: Kernel, hoist: bool, reverse: bool, unroll: int | bool, params, carry, xs, valid
):
    """The forward loop: ``(carry, (ys, residuals))``.

    Without ``hoist`` the input projection stays inside the loop: on XLA:CPU, computing it
    for all steps first was slower (see ``docs/performance.md``) wherever the loop then
    reads a slice of the big projection inside the fused gate math, as XLA:CPU does not
    vectorize a fusion that contains a dynamic slice. Under differentiation, where the
    stored residuals split the gate math into several fusions, it can pay
    (``Kernel.hoist_when_differentiated``).
    """

    def body(carry, inputs):
        x_t, valid_t = inputs
        p_t = x_t if hoist else _affine(x_t, params.w_x, params.b_x)
        a_t = _affine(kernel.hidden(carry), params.w_h, params.b_h)
        new, y, residual = kernel.pointwise(params, carry, p_t, a_t)
        new = _mask(valid_t, new, carry)
        return new, (_zero_masked(valid_t, y), residual)

    if hoist:
        xs = _affine(xs, params.w_x, params.b_x)
    return jax.lax.scan(body, carry, (xs, valid), reverse=reverse, unroll=unroll)


def _hidden_in(ys: jax.Array, h0: jax.Array, valid: jax.Array | None, reverse: bool):
    """The hidden state entering each step, rebuilt from the outputs (``y_t = h_t`` for
    every kernel) instead of being stored a second time."""

    def shift(seq, first):
        if reverse:
            return jnp.concatenate([seq[1:], first[None]], axis=0)
        return jnp.concatenate([first[None], seq[:-1]], axis=0)

    h_in = shift(ys, h0)
    if valid is not None:
        # A step whose neighbour is padding starts from h0 (reverse runs cross the padding
        # first); where the step itself is padding, its tangent is discarded anyway.
        h_in = jnp.where(shift(valid, jnp.zeros_like(valid[0]))[..., None], h_in, h0)
    return h_in


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def _fast(kernel: Kernel, reverse: bool, unroll: int | bool, params, carry, xs, valid):
    carry, (ys, _) = _forward(kernel, False, reverse, unroll, params, carry, xs, valid)
    return carry, ys


@_fast.defjvp
def _fast_jvp(kernel: Kernel, reverse: bool, unroll: int | bool, primals, tangents):
    params, carry0, xs, valid = primals
    dparams, dcarry0, dxs, _ = tangents
    hoist = kernel.hoist_when_differentiated
    carry, (ys, residuals) = _forward(kernel, hoist, reverse, unroll, *primals)

    def entering(seq, first):
        return _hidden_in(seq, first, valid, reverse)

    h_in = entering(ys, kernel.hidden(carry0))
    residuals = kernel.expand(params, carry0, residuals, ys, entering)

    # Everything that does not depend on the state tangent: one GEMM per term, all steps.
    dp = _affine(dxs, params.w_x, None) + _affine(xs, dparams.w_x, dparams.b_x)
    da0 = _affine(h_in, dparams.w_h, dparams.b_h)

    def body(dcarry, inputs):
        residual, hoisted_t, valid_t = inputs
        da_t = _affine(kernel.hidden(dcarry), params.w_h, None)
        d_new, dy = kernel.tangent(params, residual, dcarry, hoisted_t, da_t)
        d_new = _mask(valid_t, d_new, dcarry)
        return d_new, _zero_masked(valid_t, dy)

    inputs = (residuals, kernel.combine(params, dp, da0), valid)
    dcarry, dys = jax.lax.scan(body, dcarry0, inputs, reverse=reverse, unroll=unroll)
    return (carry, ys), (dcarry, dys)


def fast_unroll(
    params: Any, carry: Any, xs: jax.Array, valid: jax.Array | None, reverse: bool, unroll
) -> tuple[Any, jax.Array] | None:
    """Run ``params`` over ``xs`` on the fast path; ``None`` when it does not apply.

    ``xs`` has shape ``(time, *batch, input_size)``; batch dims are flattened for the loop.
    """
    kernel = kernel_for(params)
    if kernel is None:
        return None
    dtypes = {leaf.dtype for leaf in jax.tree.leaves((params, carry, xs))}
    if len(dtypes) != 1 or xs.shape[0] == 0:
        return None
    num_steps, *batch_shape, _ = xs.shape
    flat = (math.prod(batch_shape),)
    xs_flat = xs.reshape((num_steps, *flat, xs.shape[-1]))
    carry_flat = jax.tree.map(lambda c: c.reshape((*flat, c.shape[-1])), carry)
    valid_flat = None if valid is None else valid.reshape((num_steps, *flat))
    new_carry, ys = _fast(kernel, reverse, unroll, params, carry_flat, xs_flat, valid_flat)
    new_carry = jax.tree.map(lambda c, c0: c.reshape(c0.shape), new_carry, carry)
    return new_carry, ys.reshape((num_steps, *batch_shape, ys.shape[-1]))


def segment_length(num_steps: int) -> int:
    """Steps per rematerialized segment: ``ceil(sqrt(time))``.

    With segments of ``k`` steps, the backward pass holds ``time / k`` saved carries plus
    the residuals of one segment of ``k`` steps, which is smallest near ``k = sqrt(time)``.
    """
    return max(1, math.isqrt(max(num_steps - 1, 0)) + 1)


def remat_scan(
    body: Callable, carry: Any, xs: Any, *, reverse: bool, unroll: int | bool
) -> tuple[Any, Any]:
    """``lax.scan(body, carry, xs)`` that stores only the carry entering each segment of
    ``segment_length`` steps for the backward pass, and recomputes each segment there.

    ``jax.checkpoint`` on every step (the usual remat) still stores the carry of every step;
    checkpointing segments stores ``sqrt(time)`` of them, so memory per step falls to the
    inputs and outputs the caller holds anyway.
    """
    leaves = jax.tree.leaves(xs)
    num_steps = leaves[0].shape[0]
    k = segment_length(num_steps)
    num_segments, remainder = divmod(num_steps, k)
    split = num_segments * k

    def segment(carry, xs_segment):
        return jax.lax.scan(body, carry, xs_segment, reverse=reverse, unroll=unroll)

    segment = jax.checkpoint(segment)

    def run_segments(carry):
        segments = jax.tree.map(lambda a: a[:split].reshape(num_segments, k, *a.shape[1:]), xs)
        carry, ys = jax.lax.scan(segment, carry, segments, reverse=reverse)
        return carry, jax.tree.map(lambda a: a.reshape(split, *a.shape[2:]), ys)

    def run_remainder(carry):
        return segment(carry, jax.tree.map(lambda a: a[split:], xs))

    if remainder == 0:
        return run_segments(carry)
    if reverse:  # a reversed run meets the last steps first
        carry, ys_tail = run_remainder(carry)
        carry, ys_head = run_segments(carry)
    else:
        carry, ys_head = run_segments(carry)
        carry, ys_tail = run_remainder(carry)
    ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), ys_head, ys_tail)
    return carry, ys
