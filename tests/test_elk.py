"""ELK and quasi-ELK: DEER with Levenberg–Marquardt steps computed by a parallel Kalman
smoother (Gonzalez et al. 2024).

- The smoother's step is the exact minimizer of its least-squares objective (checked against
  a dense solve), and with ``λ = 0`` it is DEER's step.
- ``method="elk"`` / ``"quasi_elk"`` equal the sequential unroll: outputs, final carry and
  gradients, over lengths, reverse and stacks.
- On an Elman RNN whose linearization around the zero guess explodes, DEER and quasi-DEER
  overflow while ELK and quasi-ELK converge.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.parallel import deer_unroll
from jaxrnn.parallel.newton import _scan_affine, _trust_region_step

INPUT_SIZE, HIDDEN_SIZE = 3, 4
UNROLL = jax.jit(jaxrnn.unroll, static_argnames=("reverse", "method"))
#: λ is traced, so one compilation serves every λ of a shape.
STEP = jax.jit(_trust_region_step)
DEER_UNROLL = jax.jit(
    deer_unroll, static_argnames=("variant", "max_iter", "on_failure", "trust_region")
)


def tree_allclose(a, b, atol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=atol, atol=atol), a, b)


def dense_least_squares(a, b, s_hat, trust_region):
    """``argmin_s Σ_t |s_t - a_t s_{t-1} - b_t|² + λ Σ_t |s_t - ŝ_t|²`` with ``s_{-1} = 0``,
    as one dense least-squares problem in NumPy."""
    a, b, s_hat = (np.asarray(v, np.float64) for v in (a, b, s_hat))
    num_steps, size = b.shape
    rows = np.zeros((2 * num_steps * size, num_steps * size))
    rhs = np.zeros(2 * num_steps * size)
    root = np.sqrt(trust_region)
    for t in range(num_steps):
        here = slice(t * size, (t + 1) * size)
        rows[here, here] = np.eye(size)
        if t > 0:
            rows[here, (t - 1) * size : t * size] = -(a[t] if a.ndim == 3 else np.diag(a[t]))
        rhs[here] = b[t]
        below = slice((num_steps + t) * size, (num_steps + t + 1) * size)
        rows[below, here] = root * np.eye(size)
        rhs[below] = root * s_hat[t]
    return np.linalg.lstsq(rows, rhs, rcond=None)[0].reshape(num_steps, size)


def random_problem(full: bool, key, num_steps=7, size=3, scale=1.5):
    ka, kb, ks = jax.random.split(key, 3)
    # With scale 1.5, unstable linear recurrences (products of a_t that grow) are included.
    a = scale * jax.random.normal(ka, (num_steps, size, size) if full else (num_steps, size))
    return a, jax.random.normal(kb, (num_steps, size)), jax.random.normal(ks, (num_steps, size))


@pytest.mark.parametrize("full", [False, True], ids=["diagonal", "full"])
@pytest.mark.parametrize("trust_region", [0.0, 1e-3, 0.5, 20.0])
def test_smoother_step_is_the_least_squares_minimizer(x64, full, trust_region):
    a, b, s_hat = random_problem(full, jax.random.key(0))
    got = STEP(a, b, s_hat, trust_region)
    np.testing.assert_allclose(got, dense_least_squares(a, b, s_hat, trust_region), atol=1e-10)


@pytest.mark.parametrize("full", [False, True], ids=["diagonal", "full"])
def test_vanishing_trust_region_gives_the_deer_step(x64, full):
    a, b, s_hat = random_problem(full, jax.random.key(1), num_steps=9)
    deer = _scan_affine(a.at[0].set(0), b)  # s_{-1} = 0: a_0 plays no part
    np.testing.assert_allclose(STEP(a, b, s_hat, 0.0), deer, atol=1e-10)
    # The gap to DEER's step grows with λ times the products of a_t: a stable problem here.
    a, b, s_hat = random_problem(full, jax.random.key(1), num_steps=9, scale=0.3)
    deer = _scan_affine(a.at[0].set(0), b)
    np.testing.assert_allclose(STEP(a, b, s_hat, 1e-12), deer, atol=1e-10)
    # ... and a large one stays near the current guess.
    np.testing.assert_allclose(STEP(a, b, s_hat, 1e12), s_hat, atol=1e-8)


@pytest.mark.parametrize(("method", "name"), [("elk", "gru"), ("quasi_elk", "lstm")])
def test_elk_equals_sequential(method, name, reverse=True):
    kp, kc, kx = jax.random.split(jax.random.key(2), 3)
    params = jaxrnn.init_params(kp, name, INPUT_SIZE, HIDDEN_SIZE)
    leaves, treedef = jax.tree.flatten(jaxrnn.init_carry(params, (3,)))
    carry = treedef.unflatten([jax.random.normal(kc, x.shape) for x in leaves])
    xs = jax.random.normal(kx, (15, 3, INPUT_SIZE))
    run = dict(lengths=jnp.array([15, 6, 0]), reverse=reverse)
    expected = UNROLL(params, carry, xs, **run)
    tree_allclose(UNROLL(params, carry, xs, method=method, **run), expected, 5e-5)


def test_elk_in_a_bidirectional_stack():
    params = jaxrnn.init_params(
        jax.random.key(3), "rnn", INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True
    )
    xs, lengths = jax.random.normal(jax.random.key(4), (10, 2, INPUT_SIZE)), jnp.array([10, 4])
    expected = UNROLL(params, None, xs, lengths=lengths)
    tree_allclose(UNROLL(params, None, xs, lengths=lengths, method="quasi_elk"), expected, 5e-5)


def test_quasi_elk_gradients_equal_bptt(x64):
    """The solution is DEER's, so the implicit-function-theorem backward applies; with
    diagonal Jacobians its adjoint solve also takes trust-region steps. (With full ones
    the adjoint solve is DEER's single exact scan, tested in test_parallel.py.)"""
    variant = "diagonal"
    kp, kc, kx = jax.random.split(jax.random.key(5), 3)
    params = jaxrnn.init_params(kp, "gru", INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.float64)
    carry = jax.random.normal(kc, (2, HIDDEN_SIZE), jnp.float64)
    xs = jax.random.normal(kx, (8, 2, INPUT_SIZE), jnp.float64)
    lengths = jnp.array([8, 5])

    def loss(params, carry, xs, elk):
        if elk:
            new, ys, _ = deer_unroll(
                params, carry, xs, lengths=lengths, reverse=True, variant=variant, trust_region=1e-3
            )
        else:
            new, ys = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=True)
        return jnp.sum(ys**2) + jnp.sum(jnp.sin(new))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    tree_allclose(grad(params, carry, xs, True), grad(params, carry, xs, False), 1e-9)


def exploding_rnn():
    """An Elman RNN with recurrent gain 4 and 100 steps. Along its true trajectory the
    units saturate and the Jacobians are small (a perturbation of the initial state dies
    out), but around DEER's initial guess (all zeros) ``J_t ≈ 4 W`` and the products of
    ``J_t`` in the first scan reach ``4^100``: float32 overflows."""
    params = jaxrnn.init_params(jax.random.key(0), "rnn", INPUT_SIZE, HIDDEN_SIZE)
    params = dataclasses.replace(params, w_h=4.0 * params.w_h)
    return params, jax.random.normal(jax.random.key(10), (100, 2, INPUT_SIZE))


def test_elk_converges_where_deer_overflows():
    params, xs = exploding_rnn()
    _, ys_a = UNROLL(params, None, xs)
    _, ys_b = UNROLL(params, jnp.full((2, HIDDEN_SIZE), 1e-3), xs)
    assert float(jnp.max(jnp.abs(ys_a - ys_b)[-1])) < 1e-6  # the dynamics are stable
    expected = UNROLL(params, None, xs)
    for variant in ("full", "diagonal"):
        options = dict(variant=variant, max_iter=100, on_failure="nan")
        _, _, deer = DEER_UNROLL(params, None, xs, **options)
        assert not bool(jnp.any(deer.converged))  # overflowed, and said so
        assert bool(jnp.all(jnp.isinf(deer.residual))) and bool(jnp.all(deer.iterations == 1))
        carry, ys, elk = DEER_UNROLL(params, None, xs, trust_region=1e-6, **options)
        assert bool(jnp.all(elk.converged)), (variant, elk)
        tree_allclose((carry, ys), expected, 5e-5)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1.0, ValueError, r"deer_unroll: trust_region must be a float >= 0 or None; got -1.0"),
        (float("inf"), ValueError, r"trust_region must be a float >= 0 or None; got inf"),
        ("big", TypeError, r"deer_unroll: trust_region must be a float >= 0 or None; got 'big'"),
    ],
)
def test_trust_region_errors(value, error, message):
    params = jaxrnn.init_params(jax.random.key(6), "gru", INPUT_SIZE, HIDDEN_SIZE)
    with pytest.raises(error, match=message):
        deer_unroll(params, None, jnp.ones((5, INPUT_SIZE)), trust_region=value)
