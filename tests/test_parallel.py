"""Parallel-in-time unrolling against the sequential one, and the new linear cells against
NumPy loops written from the papers' equations.

- ``method="parallel"`` (minGRU, minLSTM, LRU) equals ``method="sequential"``: outputs, final
  carry and gradients, over lengths, padding, reverse, stacks and bidirectional pairs.
- ``method="deer"`` / ``"quasi_deer"`` (rnn, gru, lstm) equal the sequential unroll, on random
  and on trained weights; gradients (implicit function theorem) equal BPTT's.
- A solve that does not converge is reported as such: error, NaN or warning, never silence.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

import jaxrnn
from jaxrnn.parallel import DEERNotConvergedError, deer_unroll, linear_scan

INPUT_SIZE, HIDDEN_SIZE = 3, 4
LINEAR_CELLS = ["mingru", "minlstm", "lru", "rglru"]
#: (cell, options) run with DEER; LSTM with a projection has h and c of different sizes.
NONLINEAR_CELLS = [("rnn", {}), ("gru", {}), ("lstm", {}), ("lstm", {"proj_size": 2})]
LENGTHS = {"full": None, "padded": [7, 3, 0]}
#: One compilation per configuration: eager unrolls would re-trace every scan.
UNROLL = jax.jit(jaxrnn.unroll, static_argnames=("reverse", "method"))
DEER_UNROLL = jax.jit(deer_unroll, static_argnames=("variant", "max_iter", "on_failure", "damping"))


def tree_allclose(a, b, atol):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=atol, atol=atol), a, b)


def random_carry(params, batch_shape, key):
    leaves, treedef = jax.tree.flatten(jaxrnn.init_carry(params, batch_shape))
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    )


def inputs(key, num_steps=7, batch=3, dtype=jnp.float32):
    return jax.random.normal(key, (num_steps, batch, INPUT_SIZE), dtype)


def as_lengths(name):
    return None if LENGTHS[name] is None else jnp.array(LENGTHS[name])


# --------------------------------------------------------------------------------------
# The linear cells against NumPy loops of the papers' equations
# --------------------------------------------------------------------------------------


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def g(v):
    return np.where(v >= 0, v + 0.5, sigmoid(v))


def reference_step(name, p, h, x):
    """One step from the papers' equations in float64 NumPy (``h`` complex for the LRU);
    ``p`` holds the params' fields as NumPy arrays."""
    if name == "mingru":
        size = p.w_x.shape[1] // 2
        k = x @ p.w_x + p.b_x
        z, h_tilde = sigmoid(k[:size]), g(k[size:])
        h = (1 - z) * h + z * h_tilde
        return h, h
    if name == "minlstm":
        size = p.w_x.shape[1] // 3
        k = x @ p.w_x + p.b_x
        f, i, h_tilde = sigmoid(k[:size]), sigmoid(k[size : 2 * size]), g(k[2 * size :])
        h = f / (f + i) * h + i / (f + i) * h_tilde
        return h, h
    if name == "rglru":  # Griffin eqs. 1-4, u = x W_in + b_in since INPUT_SIZE != HIDDEN_SIZE
        u = x @ p.w_in + p.b_in
        r, i = sigmoid(u @ p.w_r[0] + p.b_r), sigmoid(u @ p.w_i[0] + p.b_i)
        a_t = sigmoid(p.a_logit) ** (8 * r)
        h = a_t * h + np.sqrt(1 - a_t**2) * (i * u)
        return h, h
    lam = np.exp(-np.exp(p.nu_log) + 1j * np.exp(p.theta_log))
    h = lam * h + np.exp(p.gamma_log) * (x @ (p.b_re + 1j * p.b_im))
    return h, (h @ (p.c_re + 1j * p.c_im)).real + p.d * x


def as_state(name, carry):
    if name == "lru":
        return np.asarray(carry.re, np.float64) + 1j * np.asarray(carry.im, np.float64)
    return np.asarray(carry, np.float64)


@pytest.mark.parametrize("name", LINEAR_CELLS)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_linear_cells_match_numpy_loop(name, reverse):
    kp, kc, kx = jax.random.split(jax.random.key(0), 3)
    options = {} if name == "lru" else {"bias_init": jax.nn.initializers.normal(0.5)}
    params = jaxrnn.init_params(kp, name, INPUT_SIZE, HIDDEN_SIZE, **options)
    lengths = jnp.array([7, 3, 0])
    carry = random_carry(params, (3,), kc)
    xs = inputs(kx)
    numpy_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    numpy_xs = np.asarray(xs, np.float64)
    for method in ("sequential", "parallel"):
        new_carry, ys = UNROLL(params, carry, xs, lengths=lengths, reverse=reverse, method=method)
        ys = np.asarray(ys)
        for b in range(3):
            h = as_state(name, jax.tree.map(lambda c, b=b: c[b], carry))
            steps = range(int(lengths[b]))
            for t in reversed(steps) if reverse else steps:
                h, y = reference_step(name, numpy_params, h, numpy_xs[t, b])
                np.testing.assert_allclose(ys[t, b], y, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(ys[int(lengths[b]) :, b], 0)
            got = as_state(name, jax.tree.map(lambda c, b=b: c[b], new_carry))
            np.testing.assert_allclose(got, h, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LINEAR_CELLS)
def test_cell_step_is_one_step_of_unroll(name):
    params = jaxrnn.init_params(jax.random.key(1), name, INPUT_SIZE, HIDDEN_SIZE)
    xs = inputs(jax.random.key(2), num_steps=4)
    carry = jaxrnn.init_carry(params, (3,))
    ys = []
    for x in xs:
        carry, y = jaxrnn.cell_step(params, carry, x)
        ys.append(y)
    expected_carry, expected_ys = jaxrnn.unroll(params, None, xs, method="parallel")
    tree_allclose(carry, expected_carry, 1e-5)
    np.testing.assert_allclose(jnp.stack(ys), expected_ys, rtol=1e-5, atol=1e-5)


def test_lru_ring_initialization():
    params = jaxrnn.init_params(
        jax.random.key(3), "lru", 2, 512, r_min=0.4, r_max=0.9, max_phase=math.pi / 4
    )
    lam = params.eigenvalues()
    assert params.output_size == 2
    assert jnp.all((jnp.abs(lam) >= 0.4 - 1e-6) & (jnp.abs(lam) <= 0.9 + 1e-6))
    assert jnp.all((jnp.angle(lam) >= 0) & (jnp.angle(lam) <= math.pi / 4 + 1e-6))
    np.testing.assert_allclose(jnp.exp(params.gamma_log), jnp.sqrt(1 - jnp.abs(lam) ** 2), 1e-5)
    with pytest.raises(ValueError, match=r"init_params: r_min, r_max must satisfy 0 <= r_min"):
        jaxrnn.init_params(jax.random.key(3), "lru", 2, 4, r_min=0.9, r_max=0.5)


# --------------------------------------------------------------------------------------
# method="parallel"
# --------------------------------------------------------------------------------------


RUNS = [("full", False), ("padded", False), ("padded", True)]
RUN_IDS = ["full", "padded", "padded-reverse"]


@pytest.mark.parametrize("name", LINEAR_CELLS)
@pytest.mark.parametrize(("lengths", "reverse"), RUNS, ids=RUN_IDS)
def test_parallel_equals_sequential(name, lengths, reverse):
    kp, kc, kx = jax.random.split(jax.random.key(4), 3)
    params = jaxrnn.init_params(kp, name, INPUT_SIZE, HIDDEN_SIZE)
    carry = random_carry(params, (3,), kc)
    xs = inputs(kx)
    options = dict(lengths=as_lengths(lengths), reverse=reverse)
    expected = UNROLL(params, carry, xs, **options)
    got = UNROLL(params, carry, xs, method="parallel", **options)
    tree_allclose(got, expected, 1e-5)


@pytest.mark.parametrize("name", LINEAR_CELLS)
def test_parallel_equals_sequential_in_a_bidirectional_stack(name):
    params = jaxrnn.init_params(
        jax.random.key(5), name, INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True
    )
    xs, lengths = inputs(jax.random.key(6)), jnp.array([7, 3, 0])
    expected = UNROLL(params, None, xs, lengths=lengths)
    got = UNROLL(params, None, xs, lengths=lengths, method="parallel")
    tree_allclose(got, expected, 1e-5)


@pytest.mark.parametrize("name", LINEAR_CELLS)
def test_parallel_gradients(name):
    with jax.enable_x64(True):
        params = jaxrnn.init_params(
            jax.random.key(7), name, INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.float64
        )
        xs = inputs(jax.random.key(8), num_steps=6, batch=2, dtype=jnp.float64)
        carry = random_carry(params, (2,), jax.random.key(9))
        lengths = jnp.array([6, 4])

        def loss(params, carry, xs, method="parallel"):
            new, ys = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=True, method=method)
            return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(new))

        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
        tree_allclose(
            grad(params, carry, xs, "parallel"), grad(params, carry, xs, "sequential"), 1e-10
        )
        # eps: the LRU's exp(-exp(nu)) has large third derivatives for central differences.
        check_grads(jax.jit(loss), (params, carry, xs), order=1, modes=["rev"], eps=1e-6)


@pytest.mark.parametrize(
    ("strategy", "chunk_size"), [("tree", None), ("chunked", None), ("chunked", 3)]
)
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_linear_scan_matches_loop(strategy, chunk_size, reverse):
    ka, kb, kh = jax.random.split(jax.random.key(10), 3)
    a = jax.lax.complex(*jax.random.uniform(ka, (2, 11, 2), minval=-1.0, maxval=1.0))
    b = jax.lax.complex(*jax.random.normal(kb, (2, 11, 2)))
    h = h0 = jax.lax.complex(*jax.random.normal(kh, (2, 2)))
    expected = np.zeros(b.shape, complex)
    for t in reversed(range(11)) if reverse else range(11):
        h = a[t] * h + b[t]
        expected[t] = h
    got = linear_scan(a, b, h0, reverse=reverse, strategy=strategy, chunk_size=chunk_size)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_parallel_rejects_nonlinear_cells_by_name():
    params = jaxrnn.init_params(jax.random.key(11), "gru", INPUT_SIZE, HIDDEN_SIZE)
    match = r"unroll: params must be a cell that is linear in its state for method='parallel'"
    with pytest.raises(ValueError, match=match + r".*; got GRUParams"):
        jaxrnn.unroll(params, None, inputs(jax.random.key(12)), method="parallel")


def test_linear_scan_errors():
    with pytest.raises(ValueError, match=r"linear_scan: strategy must be one of 'tree', 'chunk"):
        linear_scan(jnp.ones(3), jnp.ones(3), strategy="blelloch")
    with pytest.raises(ValueError, match=r"linear_scan: a must have the shape of b \(3,\)"):
        linear_scan(jnp.ones(2), jnp.ones(3))


# --------------------------------------------------------------------------------------
# DEER and quasi-DEER
# --------------------------------------------------------------------------------------


def nonlinear_params(name, options, key, dtype=jnp.float32):
    return jaxrnn.init_params(key, name, INPUT_SIZE, HIDDEN_SIZE, dtype=dtype, **options)


@pytest.mark.parametrize(("name", "options"), NONLINEAR_CELLS, ids=lambda v: str(v or ""))
@pytest.mark.parametrize("method", ["deer", "quasi_deer"])
def test_deer_equals_sequential(name, options, method):
    kp, kc, kx = jax.random.split(jax.random.key(13), 3)
    params = nonlinear_params(name, options, kp)
    carry = random_carry(params, (3,), kc)
    xs = inputs(kx, num_steps=20)
    run = dict(lengths=jnp.array([20, 9, 0]), reverse=method == "quasi_deer")
    expected = UNROLL(params, carry, xs, **run)
    got = UNROLL(params, carry, xs, method=method, **run)
    tree_allclose(got, expected, 5e-5)


#: Cells with an analytic ``jacobian_diagonal``, with every option that changes it.
DIAGONAL_CELLS = [
    ("rnn", {"activation": "tanh"}),
    ("rnn", {"activation": "relu"}),
    ("rnn", {"bias": False}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("gru", {"reset_after": False, "bias": False}),
    ("lstm", {}),
    ("lstm", {"bias": False}),
    ("lstm", {"proj_size": 2}),
]


@pytest.mark.parametrize(("name", "options"), DIAGONAL_CELLS, ids=lambda v: str(v or ""))
def test_jacobian_diagonal_equals_the_diagonal_of_jacfwd(x64, name, options):
    """The analytic diagonal of ∂carry_t/∂carry_{t-1}, on the flattened state DEER uses
    (an LSTM's ``(h, c)``: ``h`` first), equals the diagonal of the full Jacobian."""
    kp, kc, kx, kb = jax.random.split(jax.random.key(30), 4)
    bias_init = jax.nn.initializers.normal(1.0)  # non-zero biases reach every term
    params = nonlinear_params(name, options, kp, jnp.float64)
    if params.b_h is not None:
        params = dataclasses.replace(params, b_h=bias_init(kb, params.b_h.shape, jnp.float64))
    carry = random_carry(params, (5,), kc)
    projected = params.input_projection(inputs(kx, num_steps=5, batch=1, dtype=jnp.float64)[:, 0])
    _, unravel = ravel_pytree(jaxrnn.init_carry(params))

    def expected(carry, projected):
        step = lambda s: ravel_pytree(params.recurrence(unravel(s), projected)[0])[0]  # noqa: E731
        return jnp.diagonal(jax.jacfwd(step)(ravel_pytree(carry)[0]))

    def got(carry, projected):
        return ravel_pytree(params.jacobian_diagonal(carry, projected))[0]

    batched = params.jacobian_diagonal(carry, projected)  # leading batch dims broadcast
    np.testing.assert_allclose(
        jax.vmap(got)(carry, projected), jax.vmap(expected)(carry, projected), atol=1e-12
    )
    tree_allclose(batched, jax.vmap(params.jacobian_diagonal)(carry, projected), 1e-12)


def test_quasi_deer_uses_the_analytic_diagonal(monkeypatch):
    """The diagonal variant calls the cell's ``jacobian_diagonal`` (no jacfwd); a cell
    without one (the MGU) falls back to the diagonal of its full Jacobian."""
    calls = []
    original = jaxrnn.cells.GRUParams.jacobian_diagonal

    def counting(self, carry, projected):
        calls.append(1)
        return original(self, carry, projected)

    monkeypatch.setattr(jaxrnn.cells.GRUParams, "jacobian_diagonal", counting)
    params = nonlinear_params("gru", {}, jax.random.key(31))
    xs = inputs(jax.random.key(32), num_steps=6, batch=1)
    got = deer_unroll(params, None, xs, variant="diagonal")[:2]
    assert calls
    tree_allclose(got, jaxrnn.unroll(params, None, xs), 5e-5)
    mgu = nonlinear_params("mgu", {}, jax.random.key(33))
    assert not hasattr(mgu, "jacobian_diagonal")
    tree_allclose(UNROLL(mgu, None, xs, method="quasi_deer"), UNROLL(mgu, None, xs), 5e-5)


def test_deer_in_a_bidirectional_stack():
    params = jaxrnn.init_params(
        jax.random.key(14), "gru", INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True
    )
    xs, lengths = inputs(jax.random.key(15), num_steps=12), jnp.array([12, 5, 1])
    expected = UNROLL(params, None, xs, lengths=lengths)
    tree_allclose(UNROLL(params, None, xs, lengths=lengths, method="deer"), expected, 5e-5)


@pytest.mark.parametrize(
    ("name", "options", "variant"),
    [("gru", {}, "full"), ("lstm", {}, "diagonal")],
    ids=["gru-full", "lstm-diagonal"],
)
def test_deer_gradients_by_implicit_function_theorem(name, options, variant):
    with jax.enable_x64(True):
        kp, kc, kx = jax.random.split(jax.random.key(16), 3)
        params = nonlinear_params(name, options, kp, jnp.float64)
        carry = random_carry(params, (2,), kc)
        xs = inputs(kx, num_steps=8, batch=2, dtype=jnp.float64)
        lengths = jnp.array([8, 5])

        def loss(params, carry, xs, method=None):
            if method is None:
                new, ys, _ = deer_unroll(
                    params, carry, xs, lengths=lengths, reverse=True, variant=variant
                )
            else:
                new, ys = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=True)
            return jnp.sum(ys**2) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(new))

        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
        tree_allclose(grad(params, carry, xs, None), grad(params, carry, xs, "sequential"), 1e-9)
        if variant == "full":  # one finite-difference check suffices given the equality above
            check_grads(jax.jit(loss), (params, carry, xs), order=1, modes=["rev"])


def train_tiny_gru(num_steps=40):
    """A GRU trained with BPTT to output the running mean of its (scalar) input."""
    params = jaxrnn.init_params(jax.random.key(19), "gru", 1, 8)
    head = jnp.zeros((8, 1))
    xs = jax.random.normal(jax.random.key(20), (30, 16, 1))
    targets = jnp.cumsum(xs, axis=0) / jnp.arange(1, 31)[:, None, None]

    def loss(model):
        params, head = model
        return jnp.mean((jaxrnn.unroll(params, None, xs)[1] @ head - targets) ** 2)

    optimizer = optax.adam(3e-2)
    model = (params, head)
    state = optimizer.init(model)

    @jax.jit
    def step(model, state):
        value, grads = jax.value_and_grad(loss)(model)
        updates, state = optimizer.update(grads, state)
        return optax.apply_updates(model, updates), state, value

    first = None
    for _ in range(num_steps):
        model, state, value = step(model, state)
        first = value if first is None else first
    return model[0], float(first), float(value)


def test_deer_converges_on_a_trained_gru():
    params, first_loss, last_loss = train_tiny_gru()
    assert last_loss < 0.5 * first_loss  # it did learn something
    xs = jax.random.normal(jax.random.key(21), (100, 4, 1))
    expected = UNROLL(params, None, xs)
    for variant in ("full", "diagonal"):
        carry, ys, info = DEER_UNROLL(params, None, xs, variant=variant, max_iter=100)
        assert bool(jnp.all(info.converged))
        assert int(jnp.max(info.iterations)) < 50  # far fewer than T
        tree_allclose((carry, ys), expected, 5e-5)


def chaotic_rnn():
    """An Elman RNN with recurrent gain 2: products of its Jacobians grow like 2^T, so full
    DEER overflows float32 on 300 steps (as ELK's authors describe) and quasi-DEER needs about T
    iterations."""
    params = jaxrnn.init_params(jax.random.key(22), "rnn", INPUT_SIZE, 16)
    params = dataclasses.replace(params, w_h=2.0 * params.w_h)
    return params, inputs(jax.random.key(23), num_steps=300, batch=2)


def test_not_converged_raises_outside_jit():
    params, xs = chaotic_rnn()
    with pytest.raises(DEERNotConvergedError, match=r"deer: did not converge for 2 of 2"):
        deer_unroll(params, None, xs, variant="diagonal", max_iter=20)
    with pytest.raises(DEERNotConvergedError, match=r"residual inf after 1 iterations"):
        jaxrnn.unroll(params, None, xs, method="deer")  # overflow: stopped at once


def test_not_converged_raises_inside_jit():
    params, xs = chaotic_rnn()
    run = jax.jit(lambda p, x: deer_unroll(p, None, x, max_iter=3)[1])
    with pytest.raises(Exception, match=r"deer: did not converge for 2 of 2") as caught:
        jax.block_until_ready(run(params, xs))
    assert not isinstance(caught.value, AssertionError)


def test_not_converged_gives_nan_and_an_honest_report():
    params, xs = chaotic_rnn()
    carry, ys, info = DEER_UNROLL(
        params, None, xs, variant="diagonal", max_iter=3, on_failure="nan"
    )
    assert not bool(jnp.any(info.converged))
    assert jnp.all(info.iterations == 3)
    assert jnp.all(info.residual > 1e-3)
    assert bool(jnp.all(jnp.isnan(ys))) and bool(jnp.all(jnp.isnan(carry)))


def test_not_converged_warns():
    params, xs = chaotic_rnn()
    with pytest.warns(RuntimeWarning, match=r"deer: did not converge"):
        _, ys, info = deer_unroll(
            params, None, xs, variant="diagonal", max_iter=3, on_failure="warn"
        )
    assert not bool(jnp.any(info.converged)) and bool(jnp.all(jnp.isfinite(ys)))


def gain_four_rnn_at_rest():
    """An Elman RNN with recurrent gain 4, zero inputs and a zero initial state: the state
    stays exactly 0 (the forward solve converges at once), but every Jacobian on that
    trajectory is ``4 W``, so the true gradient through 100 steps grows like ``4^100`` and
    overflows float32 in the adjoint (backward) solve."""
    params = jaxrnn.init_params(jax.random.key(27), "rnn", INPUT_SIZE, HIDDEN_SIZE, bias=False)
    params = dataclasses.replace(params, w_h=4.0 * params.w_h)
    weights = jax.random.normal(jax.random.key(28), (100, 2, HIDDEN_SIZE))
    return params, jnp.zeros((100, 2, INPUT_SIZE)), weights


@pytest.mark.parametrize("variant", ["full", "diagonal"])
def test_overflowed_adjoint_solve_is_not_reported_converged(variant):
    params, xs, weights = gain_four_rnn_at_rest()

    def loss(xs, on_failure):
        _, ys, info = deer_unroll(params, None, xs, variant=variant, on_failure=on_failure)
        return jnp.sum(weights * ys), info

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, info), grads = value_and_grad(xs, "nan")
    assert bool(jnp.all(info.converged))  # the forward solve is exact
    assert bool(jnp.all(jnp.isnan(grads[0])))  # the overflowed gradient is NaN, not garbage
    sequential = jax.grad(lambda xs: jnp.sum(weights * UNROLL(params, None, xs)[1]))(xs)
    assert not bool(jnp.all(jnp.isfinite(sequential[0])))  # the true gradient overflows too
    with pytest.raises(DEERNotConvergedError, match=r"deer \(backward, adjoint solve\)"):
        jax.grad(lambda xs: loss(xs, "raise")[0])(xs)


def test_max_iter_one_is_not_converged_but_time_iterations_always_are():
    """After k iterations the first k steps are exact, whatever the Jacobian: with
    max_iter = T the chaotic RNN is solved, with max_iter = 1 it is not."""
    params, xs = chaotic_rnn()
    xs = xs[:12]
    _, _, info = DEER_UNROLL(params, None, xs, variant="diagonal", max_iter=1, on_failure="nan")
    assert not bool(jnp.any(info.converged))
    carry, ys, info = DEER_UNROLL(params, None, xs, variant="diagonal", max_iter=12)
    assert bool(jnp.all(info.converged))
    tree_allclose((carry, ys), UNROLL(params, None, xs), 1e-4)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("variant", "dense", r"deer_unroll: variant must be one of 'full', 'diagonal'"),
        ("on_failure", "ignore", r"deer_unroll: on_failure must be one of 'raise', 'nan'"),
        ("max_iter", 0, r"deer_unroll: max_iter must be a positive int; got 0"),
        ("tol", -1.0, r"deer_unroll: tol must be positive or None; got -1.0"),
        ("damping", -0.5, r"deer_unroll: damping must be >= 0; got -0.5"),
    ],
)
def test_deer_option_errors(option, value, message):
    params = nonlinear_params("gru", {}, jax.random.key(24))
    with pytest.raises(ValueError, match=message):
        deer_unroll(params, None, inputs(jax.random.key(25)), **{option: value})


def test_deer_unroll_rejects_composites():
    params = jaxrnn.init_params(jax.random.key(26), "gru", INPUT_SIZE, 4, num_layers=2)
    with pytest.raises(TypeError, match=r"deer_unroll: params must be a single cell"):
        deer_unroll(params, None, inputs(jax.random.key(27)))


def test_damping_still_converges_to_the_sequential_answer():
    params = nonlinear_params("lstm", {}, jax.random.key(28))
    xs = inputs(jax.random.key(29), num_steps=30)
    carry, ys, info = DEER_UNROLL(params, None, xs, damping=1.0, variant="diagonal", max_iter=30)
    assert bool(jnp.all(info.converged))
    tree_allclose((carry, ys), UNROLL(params, None, xs), 5e-5)
