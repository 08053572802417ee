"""The RG-LRU (``"rglru"``) and the temporal convolution (``"conv1d"``) of Griffin/Hawk:
against recurrentgemma's ``RGLRU`` and ``Conv1D`` (the authors' JAX code) with converted
weights, the convolution against a NumPy loop, their stack (Hawk's recurrent branch) over
lengths, reverse and step-by-step generation, the initialization and the errors.

The RG-LRU's NumPy loop of the paper's equations, ``method="parallel"`` against the
sequential run (outputs and gradients) and the shared invariants are in test_parallel.py
and the registries of conftest.py.

Weights from recurrentgemma (``rg`` below) are converted exactly:

    RGLRU:  w_r = a_gate.w, b_r = a_gate.b.ravel(), w_i = input_gate.w,
            b_i = input_gate.b.ravel(), a_logit = -a_param   (it computes softplus(a_param))
    Conv1D: w = w, b = b

recurrentgemma resets the RG-LRU at ``segment_pos == 0`` (drops ``h_{t-1}`` and does not
normalize the input): the comparisons give it positions that start at 1, from a zero
carry, which is this cell's run.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.core.methods import MethodError

rg_layers = pytest.importorskip(
    "recurrentgemma.jax.layers", reason="the oracle is recurrentgemma's JAX implementation"
)

WIDTH, HEADS, TEMPORAL_WIDTH, STEPS, BATCH = 4, 2, 3, 6, 2


def from_recurrentgemma(rglru_variables, conv_variables):
    """``stack([Conv1DParams, RGLRUParams])`` from recurrentgemma's variables."""
    rg, conv = rglru_variables["params"], conv_variables["params"]
    return jaxrnn.stack(
        [
            jaxrnn.cells.Conv1DParams(w_in=None, b_in=None, w=conv["w"], b=conv["b"]),
            jaxrnn.cells.RGLRUParams(
                w_in=None,
                b_in=None,
                w_r=rg["a_gate"]["w"],
                b_r=rg["a_gate"]["b"].reshape(-1),
                w_i=rg["input_gate"]["w"],
                b_i=rg["input_gate"]["b"].reshape(-1),
                a_logit=-rg["a_param"],
            ),
        ]
    )


def recurrentgemma_modules(dtype):
    rglru = rg_layers.RGLRU(width=WIDTH, num_heads=HEADS, dtype=dtype, param_dtype=dtype)
    conv = rg_layers.Conv1D(
        width=WIDTH, temporal_width=TEMPORAL_WIDTH, dtype=dtype, param_dtype=dtype
    )
    return rglru, conv


def recurrentgemma_variables(seed, dtype):
    """Both modules' variables, laid out as their ``init`` lays them out (calling it takes
    seconds), from NumPy: every kernel and bias random (recurrentgemma's biases start at 0),
    ``a_param`` on recurrentgemma's ring (``a² ~ U[0.9², 0.999²]``, ``a_param =
    log(1/a - 1)``)."""
    rng = np.random.default_rng(seed)
    block = WIDTH // HEADS

    def normal(*shape):
        return jnp.asarray(rng.normal(size=shape), dtype)

    a = np.sqrt(rng.uniform(0.9**2, 0.999**2, size=WIDTH))
    rglru = {
        "a_gate": {"w": normal(HEADS, block, block), "b": normal(HEADS, block)},
        "input_gate": {"w": normal(HEADS, block, block), "b": normal(HEADS, block)},
        "a_param": jnp.asarray(np.log(1 / a - 1), dtype),
    }
    conv = {"w": normal(TEMPORAL_WIDTH, WIDTH), "b": normal(WIDTH)}
    return {"params": rglru}, {"params": conv}


def losses(dtype):
    """``(recurrentgemma's loss, jaxrnn's loss)`` of (variables, xs ``(batch, time, width)``):
    Conv1D then RG-LRU, a nonlinear function of the outputs and of both final states."""
    rglru, conv = recurrentgemma_modules(dtype)
    pos = jnp.broadcast_to(jnp.arange(1, STEPS + 1), (BATCH, STEPS))

    def score(ys, conv_state, h):
        return jnp.sum(jnp.sin(3 * ys)) + jnp.sum(conv_state**2) + jnp.sum(h**2), ys

    def oracle(variables, xs):
        u, conv_state = conv.apply(variables[1], xs, pos, return_cache=True)
        ys, h = rglru.apply(variables[0], u, pos, return_cache=True)
        return score(ys, conv_state, h)

    def ours(variables, xs):
        (conv_state, h), ys = jaxrnn.unroll(
            from_recurrentgemma(*variables), None, xs, time_major=False
        )
        return score(ys, conv_state, h)

    return oracle, ours


@pytest.fixture
def accumulate_in(monkeypatch):
    """recurrentgemma's RG-LRU scan accumulates in float32 whatever the dtype
    (``linear_scan(acc_float_dtype=float32)``): set the accumulator's dtype, for float64."""
    from recurrentgemma.jax import scan

    def accumulate(dtype):
        original = scan.linear_scan
        monkeypatch.setattr(scan, "linear_scan", functools.partial(original, acc_float_dtype=dtype))

    return accumulate


@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(jnp.float32, 2e-5), (jnp.float64, 1e-12)], ids=["f32", "f64"]
)
def test_hawk_branch_matches_recurrentgemma(dtype, tolerance, accumulate_in):
    """Outputs, final states and gradients (w.r.t. recurrentgemma's variables and the
    inputs) of Conv1D -> RG-LRU with 2 heads, from zero states; float32 to 2e-5, float64
    (recurrentgemma's scan accumulating in float64) to 1e-12."""
    accumulate_in(dtype)
    with jax.enable_x64(dtype == jnp.float64):
        variables = recurrentgemma_variables(0, dtype)
        xs = jnp.asarray(np.random.default_rng(1).normal(size=(BATCH, STEPS, WIDTH)), dtype)
        oracle, ours = losses(dtype)
        grad = jax.value_and_grad
        (want, want_ys), want_grads = jax.jit(grad(oracle, (0, 1), has_aux=True))(variables, xs)
        (got, got_ys), got_grads = jax.jit(grad(ours, (0, 1), has_aux=True))(variables, xs)
    assert got_ys.dtype == dtype
    np.testing.assert_allclose(got_ys, want_ys, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(got, want, rtol=tolerance)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=tolerance, atol=tolerance),
        got_grads,
        want_grads,
    )


def test_generation_matches_recurrentgemma_decoding():
    """One token at a time from random states: recurrentgemma's decoding mode (caches) and
    ``cell_step`` of the stack, and the stack's unroll; the conv's window is oldest first
    in both."""
    rglru, conv = recurrentgemma_modules(jnp.float32)
    variables = recurrentgemma_variables(2, jnp.float32)
    params = from_recurrentgemma(*variables)
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.normal(size=(STEPS, BATCH, WIDTH)), jnp.float32)
    window = jnp.asarray(rng.normal(size=(BATCH, TEMPORAL_WIDTH - 1, WIDTH)), jnp.float32)
    h = jnp.asarray(rng.normal(size=(BATCH, WIDTH)), jnp.float32)

    @jax.jit
    def oracle_step(caches, x, pos):
        u, window = conv.apply(variables[1], x[:, None], pos, cache=caches[0])
        y, h = rglru.apply(variables[0], u, pos, cache=caches[1])
        return (window, h), y[:, 0]

    step = jax.jit(jaxrnn.cell_step)
    carry = caches = (window, h)
    for t, x in enumerate(xs):
        caches, want = oracle_step(caches, x, jnp.full((BATCH, 1), t + 1))
        carry, got = step(params, carry, x)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), carry, caches)
    whole = jax.jit(jaxrnn.unroll)(params, (window, h), xs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), whole[0], carry)
    # The RG-LRU runs with method="parallel", the convolution (its window shifts) does not.
    with pytest.raises(MethodError, match=r"linear in its state for method='parallel'.*Conv1DP"):
        jaxrnn.unroll(params, None, xs, method="parallel")


# --------------------------------------------------------------------------------------
# Against NumPy loops: the stack over lengths and reverse, with input projections
# --------------------------------------------------------------------------------------


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def block_diagonal(u, w):
    return np.concatenate([u[i * w.shape[1] : (i + 1) * w.shape[1]] @ w[i] for i in range(len(w))])


def conv_step(p, window, x):
    """The convolution's equation: ``y_t = b + sum_k W_k u_{t-w+1+k}``, ``window`` the
    previous ``w - 1`` inputs, oldest first."""
    u = x @ p.w_in + p.b_in
    window = np.concatenate([window, u[None]])
    return window[1:], p.b + sum(p.w[k] * window[k] for k in range(len(p.w)))


def rglru_step(p, h, u):
    """Griffin eqs. 1-4 with block-diagonal gates (no input projection: sizes equal)."""
    r = sigmoid(block_diagonal(u, p.w_r) + p.b_r)
    i = sigmoid(block_diagonal(u, p.w_i) + p.b_i)
    a_t = sigmoid(p.a_logit) ** (8 * r)
    h = a_t * h + np.sqrt(1 - a_t**2) * (i * u)
    return h, h


def hawk_params(key, dtype=jnp.float32):
    """``stack([conv1d 3 -> 4 (width 3), rglru 4 -> 4 (2 heads)])``, random biases."""
    k1, k2 = jax.random.split(key)
    bias_init = jax.nn.initializers.normal(0.5)
    options = dict(bias_init=bias_init, dtype=dtype)
    return jaxrnn.stack(
        [
            jaxrnn.init_params(k1, "conv1d", 3, WIDTH, temporal_width=TEMPORAL_WIDTH, **options),
            jaxrnn.init_params(k2, "rglru", WIDTH, WIDTH, num_heads=HEADS, **options),
        ]
    )


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_stack_matches_numpy_loop_over_lengths(reverse):
    params = jax.jit(hawk_params)(jax.random.key(4))  # one compilation, not one per op
    conv, rglru = jax.tree.map(lambda a: np.asarray(a, np.float64), params.layers)
    assert rglru.w_in is None and conv.w_in.shape == (3, WIDTH)
    rng = np.random.default_rng(5)
    lengths = np.array([STEPS, 2, 0])
    xs = rng.normal(size=(STEPS, 3, 3))
    carry = (rng.normal(size=(3, TEMPORAL_WIDTH - 1, WIDTH)), rng.normal(size=(3, WIDTH)))
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    run = jax.jit(jaxrnn.unroll, static_argnames="reverse")
    new_carry, ys = run(params, jax.tree.map(f32, carry), f32(xs), lengths=lengths, reverse=reverse)
    for b, length in enumerate(lengths):
        window, h = carry[0][b], carry[1][b]
        for t in reversed(range(length)) if reverse else range(length):
            window, u = conv_step(conv, window, xs[t, b])
            h, y = rglru_step(rglru, h, u)
            np.testing.assert_allclose(ys[t, b], y, rtol=1e-5, atol=1e-5)
        assert not np.any(ys[length:, b])
        np.testing.assert_allclose(new_carry[0][b], window, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(new_carry[1][b], h, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------
# Initialization, the bounded derivative, errors
# --------------------------------------------------------------------------------------


def test_initialization():
    @jax.jit
    def init(key):  # one compilation for the four
        return (
            jaxrnn.init_params(key, "rglru", 3, 128, min_rad=0.5, max_rad=0.9),
            jaxrnn.init_params(key, "rglru", 4, 4, num_heads=2, bias=False),
            jaxrnn.init_params(key, "rglru", 4, 4, dtype=jnp.bfloat16),
            jaxrnn.init_params(key, "conv1d", 4, 4, bias=False),
        )

    params, same, half, conv = init(jax.random.key(8))
    a = jax.nn.sigmoid(params.a_logit)
    assert bool(jnp.all((a >= 0.5 - 1e-6) & (a <= 0.9 + 1e-6)))
    assert 0.3 < float(jnp.mean(a**2 <= (0.5**2 + 0.9**2) / 2)) < 0.7  # a² uniform
    assert params.w_in.shape == (3, 128) and params.w_r.shape == (1, 128, 128)
    assert same.w_in is same.b_in is same.b_r is same.b_i is None
    assert same.w_r.shape == same.w_i.shape == (2, 2, 2) and same.num_heads == 2
    # bfloat16 rounds a = 0.999 to 1: Λ is drawn in float32, then cast.
    assert half.a_logit.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(half.a_logit)))
    assert conv.w.shape == (4, 4) and conv.temporal_width == 4
    assert conv.w_in is conv.b_in is conv.b is None
    assert jaxrnn.init_carry(conv, (2,)).shape == (2, 3, 4)


def test_derivative_of_the_normalization_stays_finite_where_a_t_is_one():
    """``r_t = σ(-200) = 0`` gives ``a_t = 1`` and ``sqrt(1 - a_t²) = 0``, whose derivative
    is infinite: bounded (by 1000, as recurrentgemma), the gradients stay finite."""
    params = jaxrnn.init_params(jax.random.key(10), "rglru", WIDTH, WIDTH)
    params = dataclasses.replace(params, b_r=jnp.full(WIDTH, -200.0))
    h, x = jnp.ones(WIDTH), jax.random.normal(jax.random.key(11), (WIDTH,))

    def loss(params, h, x):
        return jnp.sum(jaxrnn.cell_step(params, h, x)[1] ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, h, x)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    v = jnp.array([0.0, 1e-8, 0.25])
    slopes = jax.vmap(jax.grad(jaxrnn.cells.rglru.sqrt_bounded_derivative))(v)
    np.testing.assert_allclose(slopes, [1000.0, 1000.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("cell", "options", "error", "message"),
    [
        ("rglru", {"num_heads": 3}, ValueError, r"num_heads must divide hidden_size=4 .*; got 3"),
        ("rglru", {"num_heads": 2.0}, TypeError, r"num_heads must be a positive int; got 2\.0"),
        ("rglru", {"min_rad": "0.9"}, TypeError, r"min_rad must be a number; got '0\.9'"),
        (
            "rglru",
            {"max_rad": 1.0},
            ValueError,
            r"min_rad, max_rad must satisfy 0 <= min_rad < max_rad < 1; got 0\.9, 1\.0",
        ),
        ("conv1d", {"temporal_width": 0}, ValueError, r"temporal_width must be a positive int"),
        (
            "conv1d",
            {"num_heads": 2},
            TypeError,
            r"cell_options must be options of cell 'conv1d' \(temporal.*; got num_heads",
        ),
    ],
    ids=["heads-divide", "heads-int", "rad-number", "rad-range", "width", "unknown-option"],
)
def test_init_errors(cell, options, error, message):
    with pytest.raises(error, match=r"^init_params: " + message):
        jaxrnn.init_params(jax.random.key(0), cell, 3, 4, **options)
