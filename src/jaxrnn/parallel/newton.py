"""Nonlinear recurrences by Newton's method over the trajectory: DEER, quasi-DEER, ELK and
quasi-ELK ([`DEER`][jaxrnn.parallel.DEER], [`deer_unroll`][jaxrnn.parallel.deer_unroll]).

Each Newton iteration linearizes every step around the current guess and solves the
resulting linear recurrence with one parallel scan (``jaxrnn.parallel.linear``'s
compositions); ELK replaces the solve by a Levenberg–Marquardt step computed by a parallel
Kalman smoother. Gradients come from the implicit function theorem at the solution.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_choice,
    check_features,
    check_floating,
    check_int,
    check_lengths,
    check_number,
    fail,
)
from jaxrnn.core.methods import Method, Run, expand_mask
from jaxrnn.core.unrolling import check_carry, check_params, param_dtype
from jaxrnn.parallel.linear import compose_elementwise, compose_matrix

__all__ = [
    "DEER",
    "DEFAULT_TRUST_REGION",
    "DEERConfig",
    "DEERInfo",
    "DEERNotConvergedError",
    "deer_unroll",
]

VARIANTS = ("full", "diagonal")
ON_FAILURE = ("raise", "nan", "warn")


# --------------------------------------------------------------------------------------
# DEER: Newton's method over the trajectory of a nonlinear cell
# --------------------------------------------------------------------------------------


class DEERNotConvergedError(RuntimeError):
    """DEER stopped at ``max_iter`` (or on a non-finite value) above its tolerance."""


@dataclasses.dataclass(frozen=True)
class DEER(Method):
    """Newton's method over the whole trajectory (DEER), as an ``unroll`` method that
    carries its options (hashable: it is static under ``jit``); runs any cell, and stacks
    and bidirectional pairs cell by cell. ``"deer"``, ``"quasi_deer"``, ``"elk"`` and
    ``"quasi_elk"`` are aliases of the presets in ``PRESETS``.

    ``tol``: converged when ``max_t |h_t - f(h_{t-1}, x_t)| <= tol * max(1, max_t |h_t|)``
    (infinity norms over the flattened state); ``None`` gives ``100 * eps`` of the dtype
    (about ``1.2e-5`` in float32). ``max_iter``: Newton iterations at most.
    ``variant``: ``"full"`` Jacobians (``(n, n)`` per step, ``O(n^3)`` per scan element) or
    their ``"diagonal"`` (quasi-DEER, ``O(n)``). ``trust_region``: ``λ`` of ELK
    (Gonzalez et al. 2024): each iteration takes the trajectory minimizing
    ``Σ_t |s_t - J_t s_{t-1} - b_t|² + λ Σ_t |s_t - ŝ_t|²`` (a Kalman smoother, run as
    parallel scans) instead of solving the linearized recurrence exactly; ``None``: plain
    DEER steps (``λ = 0``). With ``variant="full"`` this is ELK, with ``"diagonal"``
    quasi-ELK. ``damping``: ``J ← J / (1 + damping)``, a simpler stabilizer that shrinks
    each linearized recurrence toward the always-convergent fixed-point (Picard) iteration
    ``J = 0``; it can be combined with a trust region. ``on_failure``: what to do when not
    converged, see [`deer_unroll`][jaxrnn.parallel.deer_unroll].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn.parallel import DEER
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 2, 4, num_layers=2)
      >>> xs = jax.random.normal(jax.random.key(1), (20, 2))
      >>> quasi_elk = DEER(variant="diagonal", trust_region=1e-6, max_iter=500, tol=1e-6)
      >>> _, ys = jaxrnn.unroll(params, None, xs, method=quasi_elk)
      >>> bool(jnp.allclose(ys, jaxrnn.unroll(params, None, xs)[1], atol=1e-5))
      True
    """

    tol: float | None = None
    max_iter: int = 100
    variant: str = "full"
    damping: float = 0.0
    on_failure: str = "raise"
    trust_region: float | None = None

    def __post_init__(self) -> None:
        _check_options("DEER", **dataclasses.asdict(self))

    @property
    def compiled(self) -> bool:  # type: ignore[override]
        # "raise"/"warn" report on computed values: outside jit, at each call.
        return self.on_failure == "nan"

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, jax.Array]:
        carry, ys, _ = _deer_cell(cell, carry, xs, run, self)
        return carry, ys


#: The name of ``DEER`` before it became a method object (kept for one release).
DEERConfig = DEER


class DEERInfo(NamedTuple):
    """How a DEER solve went, per sequence."""

    iterations: jax.Array  # shape=(*batch,), int32: Newton iterations done
    residual: jax.Array  # shape=(*batch,): max_t |h_t - f(h_{t-1}, x_t)| of the result
    converged: jax.Array  # shape=(*batch,), bool: residual within the tolerance


def _tolerance(config: DEER, dtype: Any) -> float:
    return 100 * float(jnp.finfo(dtype).eps) if config.tol is None else float(config.tol)


def _transition(cell: Any, unravel: Callable) -> Callable:
    """``f(s_prev, x, valid) -> s``: the cell's step on the flattened state of one
    sequence; a masked step is the identity (so its Jacobian is ``I``)."""

    def f(s_prev, x, valid):
        new, _ = cell.step(unravel(s_prev), x)
        s = ravel_pytree(new)[0].astype(s_prev.dtype)
        return jnp.where(valid, s, s_prev)

    return f


def _shift(s: jax.Array, s0: jax.Array) -> jax.Array:
    """``(s0, s_0, ..., s_{T-2})``: the state before each step."""
    return jnp.concatenate([s0[None], s[:-1]])


def _diagonal(cell: Any, unravel: Callable) -> Callable | None:
    """``d(s_prev, x, valid)``: the diagonal of ``∂f/∂s_prev`` from the cell's analytic
    ``jacobian_diagonal(carry, projected)`` (a carry-shaped pytree, flattened here in
    ``ravel_pytree``'s order), or ``None`` for a cell without one."""
    if not hasattr(cell, "jacobian_diagonal"):
        return None

    def d(s_prev, x, valid):
        diagonal = cell.jacobian_diagonal(unravel(s_prev), cell.input_projection(x))
        diagonal = ravel_pytree(diagonal)[0].astype(s_prev.dtype)
        return jnp.where(valid, diagonal, jnp.ones_like(diagonal))  # a masked step is I

    return d


def _jacobians(f: Callable, s_prev, xs, valid, variant: str, diagonal=None) -> jax.Array:
    """``J_t = ∂f/∂s (s_prev_t, x_t)`` per step, ``(time, n, n)``, or its diagonal
    ``(time, n)``: analytic when ``diagonal`` (from ``_diagonal``) is given, else the
    diagonal of the full Jacobian (``n`` forward-mode products per step)."""
    if variant == "diagonal" and diagonal is not None:
        return jax.vmap(diagonal)(s_prev, xs, valid)
    jac = jax.vmap(jax.jacfwd(f), in_axes=(0, 0, 0))(s_prev, xs, valid)
    return jnp.diagonal(jac, axis1=-2, axis2=-1) if variant == "diagonal" else jac


def _scan_affine(a: jax.Array, b: jax.Array) -> jax.Array:
    """``h_t = a_t h_{t-1} + b_t`` from ``h_{-1} = 0``; ``a`` elementwise or matrices."""
    compose = compose_matrix if a.ndim == b.ndim + 1 else compose_elementwise
    return jax.lax.associative_scan(compose, (a, b))[1]


def _apply(a: jax.Array, s: jax.Array) -> jax.Array:
    return jnp.einsum("...ij,...j->...i", a, s) if a.ndim == s.ndim + 1 else a * s


# --------------------------------------------------------------------------------------
# ELK: the trust-region Newton step, by a parallel Kalman smoother
# --------------------------------------------------------------------------------------


def _transpose(m: jax.Array) -> jax.Array:
    return jnp.swapaxes(m, -1, -2)


def _filter_elementwise(first, second):
    """Combine two filtering elements ``(A, b, C, η, J)`` of scalar state-space models,
    ``first`` earlier in time (Särkkä & García-Fernández 2021, Lemma 8, one dimension)."""
    a1, b1, c1, eta1, j1 = first
    a2, b2, c2, eta2, j2 = second
    d = 1 / (1 + c1 * j2)  # C, J >= 0, so 0 < d <= 1
    return (
        a2 * d * a1,
        a2 * d * (b1 + c1 * eta2) + b2,
        a2 * d * c1 * a2 + c2,
        a1 * d * (eta2 - j2 * b1) + eta1,
        a1 * d * j2 * a1 + j1,
    )


def _filter_matrix(first, second):
    """The same combination with ``(n, n)`` matrices ``A, C, J`` and vectors ``b, η``;
    ``C`` and ``J`` are symmetric, so ``(I + J_2 C_1)^{-1} = (I + C_1 J_2)^{-T}``."""
    a1, b1, c1, eta1, j1 = first
    a2, b2, c2, eta2, j2 = second
    n = a1.shape[-1]
    m_t = _transpose(jnp.eye(n, dtype=a1.dtype) + c1 @ j2)  # (I + C_1 J_2)^T
    rhs = jnp.concatenate(
        [_transpose(a2), j2 @ a1, (eta2 - jnp.einsum("...ij,...j->...i", j2, b1))[..., None]],
        axis=-1,
    )
    solved = jnp.linalg.solve(m_t, rhs)  # one factorization for the three right sides
    a2_minv = _transpose(solved[..., :n])  # A_2 (I + C_1 J_2)^{-1}
    ninv_j2_a1, ninv_eta = solved[..., n : 2 * n], solved[..., 2 * n]
    mv = functools.partial(jnp.einsum, "...ij,...j->...i")
    return (
        a2_minv @ a1,
        mv(a2_minv, b1 + mv(c1, eta2)) + b2,
        a2_minv @ c1 @ _transpose(a2) + c2,
        mv(_transpose(a1), ninv_eta) + eta1,
        _transpose(a1) @ ninv_j2_a1 + j1,
    )


def _trust_region_step(
    a: jax.Array, b: jax.Array, s_hat: jax.Array, trust_region: float
) -> jax.Array:
    """ELK's step: the trajectory closest to the linearized recurrence and to ``s_hat``.

    Solves, with ``s_{-1} = 0`` fixed and ``λ = trust_region``,

        min_s  Σ_t |s_t - a_t s_{t-1} - b_t|²  +  λ Σ_t |s_t - ŝ_t|²

    which is the posterior mean of the linear-Gaussian state-space model
    ``s_t = a_t s_{t-1} + b_t + w_t`` (``w_t ~ N(0, I)``), observed as ``ŝ_t = s_t + v_t``
    (``v_t ~ N(0, I / λ)``): a Kalman filter forward, then a Rauch–Tung–Striebel smoother
    backward, each as one parallel scan (Särkkä & García-Fernández 2021). With ``λ = 0``
    it is the scan ``s_t = a_t s_{t-1} + b_t`` (the DEER step); as ``λ → ∞`` it stays at
    ``ŝ``.

    Args:
      a: ``(time, n)`` diagonal (quasi-ELK: every dimension its own scalar model) or
        ``(time, n, n)`` matrices (ELK); ``a_0`` is unused, as ``s_{-1} = 0``.
      b: ``(time, n)`` offsets.
      s_hat: ``(time, n)``, the current iterate.
      trust_region: ``λ >= 0``.

    Returns:
      ``s`` of shape ``(time, n)``.
    """
    full = a.ndim == b.ndim + 1
    kappa = trust_region / (1.0 + trust_region)  # Kalman gain and 1/S: here S = (1 + 1/λ) I
    a = a.at[0].set(0)  # s_{-1} = 0 is known exactly: the first element has no transition
    innovation = s_hat - b  # y_t - (prediction from a known s_{t-1} = 0)
    mv = functools.partial(jnp.einsum, "...ij,...j->...i")
    if full:
        eye = jnp.eye(a.shape[-1], dtype=a.dtype)
        elements = (
            (1 - kappa) * a,
            b + kappa * innovation,
            jnp.broadcast_to((1 - kappa) * eye, a.shape),
            kappa * mv(_transpose(a), innovation),
            kappa * _transpose(a) @ a,
        )
        compose = _filter_matrix
    else:
        elements = (
            (1 - kappa) * a,
            b + kappa * innovation,
            jnp.full_like(a, 1 - kappa),
            kappa * a * innovation,
            kappa * a * a,
        )
        compose = _filter_elementwise
    _, mean, cov, _, _ = jax.lax.associative_scan(compose, elements)  # filtered m_t, P_t
    # Smoother: s_t = E_t s_{t+1} + g_t backward, with E_t = P_t a'ᵀ (a' P_t a'ᵀ + I)^{-1},
    # g_t = m_t - E_t (a' m_t + b'), a' = a_{t+1}, b' = b_{t+1}; the last step is s = m.
    a_next, b_next = a[1:], b[1:]
    m, p = mean[:-1], cov[:-1]
    if full:
        gram = a_next @ p @ _transpose(a_next) + eye
        gain = _transpose(jnp.linalg.solve(_transpose(gram), a_next @ _transpose(p)))
        offset = m - mv(gain, mv(a_next, m) + b_next)
    else:
        gain = p * a_next / (a_next * p * a_next + 1)
        offset = m - gain * (a_next * m + b_next)
    gain = jnp.concatenate([gain, jnp.zeros_like(gain[:1])])
    offset = jnp.concatenate([offset, mean[-1:]])
    return _scan_affine(gain[::-1], offset[::-1])[::-1]


def _newton(
    linearize: Callable,
    s_init: jax.Array,
    tol: float,
    max_iter: int,
    scale_floor: float = 1.0,
    init_scale: jax.Array | None = None,
    trust_region: float | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Solve ``s = F(s)`` for a trajectory ``s`` of shape ``(time, n)``.

    ``linearize(s) -> (F(s), a, b)`` where the Newton update is the scan
    ``s'_t = a_t s'_{t-1} + b_t`` or, with a ``trust_region``, ELK's step
    ``_trust_region_step(a, b, s, trust_region)`` toward it. Returns
    ``(s, iterations, residual)``, the residual being that of the returned ``s``.
    ``init_scale`` is ``max |s_init|`` when known more cheaply (a broadcast zero carry
    under ``jit`` is a constant that XLA would otherwise spend seconds constant-folding
    the reduction of).
    """

    def measure(s, fs):
        scale = jnp.maximum(scale_floor, jnp.max(jnp.abs(s)))
        error = jnp.abs(s - fs)
        # A reduce_max may skip NaNs (XLA on CPU gives -inf for all-NaN input), which would
        # read as converged: any non-finite value makes the residual +inf instead.
        res = jnp.where(jnp.all(jnp.isfinite(error)), jnp.max(error), jnp.inf)
        return res, scale

    def cond(state):
        k, _, _, _, res, scale = state
        # An infinite residual (overflow in the scan) will not improve: stop and report it.
        return (k < max_iter) & (res > tol * scale) & jnp.isfinite(res)

    def body(state):
        k, s, a, b, _, _ = state
        if trust_region is None:
            s = _scan_affine(a, b)
        else:
            s = _trust_region_step(a, b, s, trust_region)
        fs, a, b = linearize(s)
        res, scale = measure(s, fs)
        return k + 1, s, a, b, res, scale

    fs, a, b = linearize(s_init)
    res, scale = measure(s_init, fs)
    if init_scale is not None:
        scale = jnp.maximum(scale_floor, init_scale)
    state = (jnp.asarray(0, jnp.int32), s_init, a, b, res, scale)
    k, s, _, _, res, _ = jax.lax.while_loop(cond, body, state)
    return s, k, res


def _converged(residual: jax.Array, bound: jax.Array) -> jax.Array:
    """``residual <= bound`` for a finite residual only: an overflowed solve has an
    infinite scale too, and ``inf <= tol * inf`` would read as converged."""
    return jnp.isfinite(residual) & (residual <= bound)


def _report(converged, residual, iterations, on_failure: str, where: str) -> None:
    """Raise or warn (by ``on_failure``) if any sequence did not converge."""
    if on_failure == "nan":
        return

    def check(converged, residual, iterations):
        converged, residual, iterations = map(np.asarray, (converged, residual, iterations))
        if converged.all():
            return
        first = np.flatnonzero(~converged.ravel())[0]
        message = (
            f"{where}: did not converge for {int((~converged).sum())} of {converged.size} "
            f"sequences (e.g. residual {float(residual.ravel()[first]):.3g} after "
            f"{int(iterations.ravel()[first])} iterations); raise max_iter or tol, add a "
            "trust_region (ELK) or damping, or use method='sequential'"
        )
        if on_failure == "raise":
            raise DEERNotConvergedError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    if any(isinstance(x, jax.core.Tracer) for x in (converged, residual, iterations)):
        # Under a transformation the check runs on the host when the value is computed;
        # an error raised there reaches the caller as a JaxRuntimeError with this message.
        jax.debug.callback(check, converged, residual, iterations)
    else:
        check(converged, residual, iterations)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _deer_solve(config, cell, s0, xs, valid):
    return _deer_solve_fwd(config, cell, s0, xs, valid)[0]


def _setup(config: DEER, cell, s0, xs, valid):
    unravel = _unravel_for(cell, s0)
    f = _transition(cell, unravel)
    tol = _tolerance(config, s0.dtype)

    def residual_map(s, cell=cell, s0=s0, xs=xs):
        step = _transition(cell, unravel)
        return jax.vmap(step)(_shift(s, s0), xs, valid)

    def jacobians(s_prev):
        return _jacobians(f, s_prev, xs, valid, config.variant, _diagonal(cell, unravel))

    return f, tol, residual_map, jacobians


@functools.partial(jax.jit, static_argnums=0)  # one program outside jit too
def _deer_solve_fwd(config: DEER, cell, s0, xs, valid):
    f, tol, _, jacobians = _setup(config, cell, s0, xs, valid)

    def linearize(s):
        s_prev = _shift(s, s0)
        fs = jax.vmap(f)(s_prev, xs, valid)
        jac = jacobians(s_prev) / (1.0 + config.damping)
        # The scan starts from 0, so step 0 must not subtract J_0 s0: its input s0 is
        # known exactly, and h_0 = f(s0, x_0) is the true first state.
        return fs, jac, fs - _apply(jac, _shift(s, jnp.zeros_like(s0)))

    s_init = jnp.broadcast_to(s0, (xs.shape[0], *s0.shape))
    s, k, res = _newton(
        linearize,
        s_init,
        tol,
        config.max_iter,
        init_scale=jnp.max(jnp.abs(s0)),
        trust_region=config.trust_region,
    )
    return (s, k, res), (cell, s0, xs, valid, s)


def _deer_solve_bwd(config: DEER, saved, cotangents):
    grads, converged, res, k = _adjoint_solve(config, saved, cotangents)
    if config.on_failure != "nan":
        _report(converged, res, k, config.on_failure, "deer (backward, adjoint solve)")
    return grads


@functools.partial(jax.jit, static_argnums=0)
def _adjoint_solve(config: DEER, saved, cotangents):
    """The backward pass of ``_deer_solve`` and its convergence, as one compiled program
    (so that outside ``jit`` it is not run op by op); the caller reports."""
    cell, s0, xs, valid, s = saved
    g_s = cotangents[0]
    _, tol, residual_map, jacobians = _setup(config, cell, s0, xs, valid)
    # At the solution s = F(s; cell, s0, xs). The implicit function theorem gives the
    # gradient as (∂F/∂θ)ᵀ λ, with λ the solution of λ = g + (∂F/∂s)ᵀ λ: a linear
    # recurrence backward in time, λ_t = g_t + J_{t+1}ᵀ λ_{t+1}. It is solved with the same
    # Newton-scan machinery (one iteration when J is full; a few with the diagonal).
    _, transpose = jax.vjp(lambda s: residual_map(s), s)
    jac = jacobians(_shift(s, s0))
    jac = jnp.swapaxes(jac, -1, -2) if config.variant == "full" else jac
    # Reversed time: element u = T-1-t holds J_{t+1}ᵀ (zero for the last step).
    a_rev = jnp.concatenate([jac[1:], jnp.zeros_like(jac[:1])])[::-1]

    def adjoint_map(lam):
        return g_s + transpose(lam)[0]

    def linearize(lam_rev):
        lam = lam_rev[::-1]
        fl = adjoint_map(lam)[::-1]
        lam_next = jnp.concatenate([lam_rev[:1] * 0, lam_rev[:-1]])  # λ_{t+1}, reversed
        return fl, a_rev, fl - _apply(a_rev, lam_next)

    # Relative tolerance only: gradients can be small, and a looser solve would bias them.
    # With full Jacobians one plain scan solves this linear problem exactly; with diagonal
    # ones the quasi-Newton iteration may need ELK's trust region as the forward solve did.
    trust_region = config.trust_region if config.variant == "diagonal" else None
    lam_rev, k, res = _newton(
        linearize, g_s[::-1], tol, config.max_iter, scale_floor=0.0, trust_region=trust_region
    )
    converged = _converged(res, tol * jnp.max(jnp.abs(lam_rev)))
    lam = lam_rev[::-1]
    if config.on_failure == "nan":
        lam = jnp.where(converged, lam, jnp.nan)
    _, pullback = jax.vjp(lambda c, h, x: residual_map(s, c, h, x), cell, s0, xs)
    return (*pullback(lam), None), converged, res, k


_deer_solve.defvjp(_deer_solve_fwd, _deer_solve_bwd)


def _unravel_for(cell: Any, s0: jax.Array) -> Callable:
    """The inverse of ``ravel_pytree`` for one sequence's carry."""
    template = cell.initial_carry((), s0.dtype)
    return ravel_pytree(template)[1]


def _deer_cell(
    cell: Any, carry: Any, xs: jax.Array, run: Run, config: DEER
) -> tuple[Any, jax.Array, DEERInfo]:
    """DEER over a cell; ``xs`` is masked already. Returns ``(carry, ys, info)``."""
    num_steps = xs.shape[0]
    batch_shape = xs.shape[1 : xs.ndim - len(cell.input_shape)]
    size = math.prod(batch_shape)
    flat_xs = xs.reshape(num_steps, size, *cell.input_shape)
    valid = (
        jnp.ones((num_steps, size), bool)
        if run.valid is None
        else run.valid.reshape(num_steps, size)
    )
    flat_carry = jax.tree.map(lambda c: c.reshape(size, *c.shape[len(batch_shape) :]), carry)
    s0 = jax.vmap(lambda c: ravel_pytree(c)[0])(flat_carry)
    if run.reverse:
        flat_xs, valid = flat_xs[::-1], valid[::-1]
    unravel = _unravel_for(cell, s0)

    def one(s0, xs, valid):
        s, k, res = _deer_solve(config, cell, s0, xs, valid)
        f_out = jax.vmap(lambda s_prev, x: cell.step(unravel(s_prev), x)[1])
        ys = f_out(_shift(s, s0), xs)
        ys = jnp.where(valid[:, None], ys, jnp.zeros_like(ys))
        return s[-1], ys, k, res, jnp.max(jnp.abs(s))

    s_last, ys, k, res, scale = jax.vmap(one, in_axes=(0, 1, 1), out_axes=(0, 1, 0, 0, 0))(
        s0, flat_xs, valid
    )
    res, scale = jax.lax.stop_gradient((res, scale))
    converged = _converged(res, _tolerance(config, s0.dtype) * jnp.maximum(1.0, scale))
    if config.on_failure == "nan":
        s_last = jnp.where(converged[:, None], s_last, jnp.nan)
        ys = jnp.where(converged[None, :, None], ys, jnp.nan)
    if run.reverse:
        ys = ys[::-1]
    new_carry = jax.vmap(unravel)(s_last)
    new_carry = jax.tree.map(lambda n, o: n.reshape(o.shape).astype(o.dtype), new_carry, carry)
    ys = ys.reshape(num_steps, *batch_shape, ys.shape[-1])
    info = DEERInfo(
        iterations=k.reshape(batch_shape),
        residual=res.reshape(batch_shape),
        converged=converged.reshape(batch_shape),
    )
    _report(info.converged, info.residual, info.iterations, config.on_failure, "deer")
    return new_carry, ys, info


def _check_options(
    where: str,
    *,
    tol: Any,
    max_iter: Any,
    variant: Any,
    damping: Any,
    on_failure: Any,
    trust_region: Any,
) -> None:
    """The checks of ``DEER``'s fields, shared by ``deer_unroll`` (named in the message)."""
    check_choice(where, "variant", variant, VARIANTS)
    check_choice(where, "on_failure", on_failure, ON_FAILURE)
    check_int(where, "max_iter", max_iter)
    check_number(where, "tol", tol, "be positive or None", lambda t: t > 0, optional=True)
    # damping=inf is J = 0: the fixed-point (Picard) iteration, a valid limit.
    check_number(where, "damping", damping, "be >= 0", lambda d: d >= 0)
    if trust_region is not None and (
        isinstance(trust_region, bool) or not isinstance(trust_region, numbers.Real)
    ):
        fail(where, "trust_region", "be a float >= 0 or None", repr(trust_region), TypeError)
    if trust_region is not None and not 0 <= float(trust_region) < math.inf:
        fail(where, "trust_region", "be a float >= 0 or None", repr(trust_region))


def _check_deer_cell(where: str, cell: Any) -> None:
    if not hasattr(cell, "recurrence"):
        fail(
            where,
            "params",
            "be a single cell for DEER (composites go through unroll(method='deer'))",
            type(cell).__name__,
            TypeError,
        )


def deer_unroll(
    params: Any,
    carry: Any,
    xs: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
    reverse: bool = False,
    tol: float | None = None,
    max_iter: int = 100,
    variant: str = "full",
    damping: float = 0.0,
    on_failure: str = "raise",
    trust_region: float | None = None,
) -> tuple[Any, jax.Array, DEERInfo]:
    """Unroll a cell by Newton's method over the whole trajectory (DEER), with a report.

    Solves ``h_t = f(h_{t-1}, x_t)`` for all ``t`` at once. From a guess ``ĥ``, each
    iteration solves the linearized recurrence with one parallel scan:

        J_t = ∂f/∂h (ĥ_{t-1}, x_t)                        # full, or its diagonal
        h_t = J_t h_{t-1} + (f(ĥ_{t-1}, x_t) - J_t ĥ_{t-1})
        stop when max_t |h_t - f(h_{t-1}, x_t)| <= tol * max(1, max_t |h_t|)

    With a ``trust_region`` ``λ`` (ELK, Gonzalez et al. 2024), each iteration instead
    takes the Levenberg–Marquardt step, the trajectory closest to the linearized
    recurrence and to the current guess:

        h = argmin_h Σ_t |h_t - J_t h_{t-1} - b_t|² + λ Σ_t |h_t - ĥ_t|²

    (``b_t`` the offset above), the posterior mean of a linear-Gaussian state-space
    model, computed by a Kalman filter and smoother as parallel scans. Products of
    ``J_t`` can no longer overflow (the smoother's variances stay below about ``1/λ``);
    the solution, hence the gradients, are those of DEER.

    An LSTM's state ``(h, c)`` is flattened into one vector. Gradients use the implicit
    function theorem: a backward linear solve with the transposed, time-reversed scan.
    Same semantics as [`unroll`][jaxrnn.unroll] for ``lengths`` and ``reverse``; the result
    equals the sequential unroll up to ``tol``.

    Args:
      params: a single cell (any cell; intended for ``"rnn"``, ``"gru"``, ``"lstm"``).
      carry: initial state, or ``None`` for zeros.
      xs: inputs ``(time, ..., input_size)``.
      lengths: optional valid steps per sequence, as in [`unroll`][jaxrnn.unroll].
      reverse: run each sequence backward over its valid steps.
      tol: relative tolerance on the residual; ``None``: ``100 * eps`` of the dtype.
      max_iter: Newton iterations at most (the answer is exact after ``time`` of them).
      variant: ``"full"`` Jacobians (DEER, ``O(n^3)`` per step and iteration) or
        ``"diagonal"`` (quasi-DEER, ``O(n)`` per step in the scan). The diagonal comes
        from the cell's analytic ``jacobian_diagonal(carry, projected)`` where it has one
        (``"rnn"``, ``"gru"``, ``"lstm"``: about the cost of one step); for other cells
        it is the diagonal of the full Jacobian (``n`` forward-mode products per step).
      damping: ``J ← J / (1 + damping)``; larger is slower but steadier.
      trust_region: ``λ >= 0`` of ELK (``variant="full"``) or quasi-ELK
        (``"diagonal"``); ``None`` for plain DEER steps. Small values (``DEFAULT_TRUST_REGION``
        = ``1e-6``) keep DEER's speed where it works and stop the overflow where it
        does not; large ones make small, slow steps.
      on_failure: when some sequence is not converged after ``max_iter``:
        ``"raise"``: [`DEERNotConvergedError`][jaxrnn.parallel.DEERNotConvergedError] outside
        ``jit``; inside ``jit`` a host callback raises when the value is computed (JAX reports it as
        a ``JaxRuntimeError`` with the same message). ``"nan"``: that sequence's outputs and carry
        become NaN (no host round trip; the backward pass does the same to its gradients).
        ``"warn"``: a ``RuntimeWarning``, results returned as they are. In every case ``info`` tells
        the truth.

    Returns:
      ``(carry, ys, info)``: as [`unroll`][jaxrnn.unroll], plus a
      [`DEERInfo`][jaxrnn.parallel.DEERInfo] with iterations, final residual and convergence of each
      sequence.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn.parallel import deer_unroll
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 2, 4)
      >>> xs = jax.random.normal(jax.random.key(1), (20, 2))
      >>> carry, ys, info = deer_unroll(params, None, xs)
      >>> _, ys_seq = jaxrnn.unroll(params, None, xs)
      >>> bool(info.converged), bool(jnp.allclose(ys, ys_seq, atol=1e-5))
      (True, True)
      >>> _, ys, info = deer_unroll(params, None, xs, variant="diagonal", trust_region=1e-6)
      >>> bool(info.converged), bool(jnp.allclose(ys, ys_seq, atol=1e-5))  # quasi-ELK
      (True, True)
    """
    options = dict(
        tol=tol,
        max_iter=max_iter,
        variant=variant,
        damping=damping,
        on_failure=on_failure,
        trust_region=trust_region,
    )
    _check_options("deer_unroll", **options)
    config = DEER(
        tol=tol,
        max_iter=max_iter,
        variant=variant,
        damping=damping,
        on_failure=on_failure,
        trust_region=trust_region,
    )
    check_params("deer_unroll", params)
    _check_deer_cell("deer_unroll", params)
    xs = check_array("deer_unroll", "xs", xs)
    check_floating("deer_unroll", "xs", xs)
    batch_shape = check_features("deer_unroll", "xs", xs, params.input_shape, ("time",))
    num_steps = xs.shape[0]
    if carry is None:
        carry = params.initial_carry(batch_shape, jnp.result_type(param_dtype(params), xs.dtype))
    else:
        check_carry("deer_unroll", params, carry, batch_shape)
    valid = None
    if lengths is not None:
        lengths = check_lengths("deer_unroll", lengths, batch_shape, num_steps)
        steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * len(batch_shape))
        valid = steps < lengths
        xs = jnp.where(expand_mask(valid, xs), xs, jnp.zeros_like(xs))
    run = Run(valid, check_bool("deer_unroll", "reverse", reverse), None, config)
    return _deer_cell(params, carry, xs, run, config)


#: ``λ`` of ``method="elk"`` and ``"quasi_elk"``. Chosen on small float32 Elman RNNs
#: (tests/test_elk.py, docs/parallel.md): as fast as DEER where DEER converges, and it
#: removed DEER's overflow where that happened; ``1e-8`` (the ELK reference code's
#: default) still overflowed in float32, ``1e-4`` and above slowed convergence.
DEFAULT_TRUST_REGION = 1e-6
