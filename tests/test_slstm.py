"""The sLSTM cell (``"slstm"``, xLSTM): against NumPy loops of the paper's equations
(stabilized and unstabilized), against the ``xlstm`` package's PyTorch sLSTM cell with its
pure-PyTorch "vanilla" backend (outputs, final states and gradients, float32 and float64),
under DEER, and its errors. The shared invariant tests run it through ``OTHER_CELLS``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.cells import SLSTMParams, SLSTMState

IN, HID, T = 3, 6, 5


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def dense_r(r):
    """The block-diagonal ``R`` of shape ``(hidden, 4 * hidden)``, written out entry by entry:
    ``R[k Dh + j, g H + k Dh + l] = r[k, j, g, l]``."""
    heads, size, gates, _ = r.shape
    hidden = heads * size
    out = np.zeros((hidden, gates * hidden))
    for k, j, g, l in np.ndindex(r.shape):
        out[k * size + j, g * hidden + k * size + l] = r[k, j, g, l]
    return out


def reference_run(params, xs):
    """One sequence ``xs (time, input)`` from the zero state in float64 NumPy: the stabilized
    recursion (paper eqs. 15-17 with xLSTM's start ``m_1 = ĩ_1``) and, beside it, the
    unstabilized one (eqs. 8-14, ``i = exp(ĩ)``) whose ``c``, ``n`` are ``c e^m``, ``n e^m``.
    Returns ``(hs, (h, c, n, m), (C, N))`` of the last step."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    r, b = dense_r(p.r), (0.0 if p.b is None else p.b)
    h = c = n = m = big_c = big_n = np.zeros(HID)
    hs = []
    for t, x in enumerate(np.asarray(xs, np.float64)):
        i, f, z, o = np.split(x @ p.w_x + h @ r + b, 4)
        log_f = np.log(sigmoid(f)) if params.forget_gate == "sigmoid" else f
        m_new = i if t == 0 else np.maximum(log_f + m, i)
        i_s, f_s = np.exp(i - m_new), np.exp(log_f + m - m_new)
        c, n = f_s * c + i_s * np.tanh(z), f_s * n + i_s
        big_c = np.exp(log_f) * big_c + np.exp(i) * np.tanh(z)
        big_n = np.exp(log_f) * big_n + np.exp(i)
        h, m = sigmoid(o) * c / n, m_new
        np.testing.assert_allclose(h, sigmoid(o) * big_c / big_n, rtol=1e-10)
        hs.append(h)
    return np.stack(hs), (h, c, n, m), (big_c, big_n)


def random_params(seed, forget_gate="sigmoid", dtype=jnp.float32):
    """Params with every leaf random (2 heads of 3 units), drawn by NumPy: no compilation."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: jnp.asarray(0.5 * rng.standard_normal(shape), dtype)  # noqa: E731
    return SLSTMParams(normal(IN, 4 * HID), normal(2, 3, 4, 3), normal(4 * HID), forget_gate)


#: One jitted unroll, so that tests on the same shapes share its compilations.
run = jax.jit(jaxrnn.unroll, static_argnames="method")
LENGTHS = np.array([T, 2])
XS = np.random.default_rng(1).standard_normal((T, 2, IN)).astype(np.float32)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_unroll_matches_numpy_loops_of_the_paper(forget_gate):
    params, xs, lengths = random_params(0, forget_gate), XS, LENGTHS
    assert params.num_heads == 2 and params.hidden_size == HID
    carry, ys = run(params, None, xs, lengths=lengths)
    assert isinstance(carry, SLSTMState)
    for b, length in enumerate(lengths):
        hs, state, (big_c, big_n) = reference_run(params, xs[:length, b])
        np.testing.assert_allclose(ys[:length, b], hs, rtol=1e-5, atol=1e-6)
        assert not np.any(np.asarray(ys[length:, b]))
        final = jax.tree.map(lambda a, b=b: np.asarray(a[b], np.float64), carry)
        for ours, expected in zip(final, state, strict=True):
            np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(final.c * np.exp(final.m), big_c, rtol=1e-4)
        np.testing.assert_allclose(final.n * np.exp(final.m), big_n, rtol=1e-4)


# --- the xlstm package's sLSTM cell (PyTorch, "vanilla" backend) ------------------------


def xlstm_cell(params, torch_dtype):
    """xLSTM's ``sLSTMCell`` holding ``params``' ``R`` and ``b``. Mapping (exact):
    ``recurrent_kernel`` (head, in unit, gate, out unit) is ``r``; ``bias`` (head, gate,
    unit) is ``b.reshape(4, heads, head_size)`` with its first two axes swapped; the cell's
    input is ``x W_x`` in the layout ``"SBGNH"`` (time, batch, gate, head, unit), the gate
    axis of ``w_x``; its state ``(4, batch, hidden)`` stacks ``h, c, n, m``."""
    torch = pytest.importorskip("torch")
    cell_module = pytest.importorskip(
        "xlstm.blocks.slstm.cell", reason="the sLSTM oracle needs the xlstm package"
    )
    heads, size = params.r.shape[:2]
    config = cell_module.sLSTMCellConfig(
        hidden_size=heads * size,
        num_heads=heads,
        backend="vanilla",
        dtype="float32",
        input_shape="SBGNH",
        output_shape="SBH",
    )
    cell = cell_module.sLSTMCell(config).to(torch_dtype)
    cell.recurrent_kernel[...] = torch.from_numpy(np.array(params.r))
    bias = torch.from_numpy(np.array(params.b)).reshape(4, heads, size).permute(1, 0, 2)
    cell.bias[...] = bias
    return cell


def loss_terms(ys, state):
    """A non-linear scalar of the outputs and every part of the final state."""
    return sum([(ys.sin()).sum(), *((s * s).sum() for s in state)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_xlstm_vanilla_cell_with_gradients(dtype):
    """float32 from the zero state (xLSTM's ``n = 0`` start: ``m_1 = ĩ_1``), float64 from a
    random state with ``n > 0``. Tolerances: float32 1e-5 (values) and 1e-4 (gradients,
    relative), float64 1e-10."""
    torch = pytest.importorskip("torch")
    x64 = dtype == "float64"
    tol = 1e-10 if x64 else 1e-5
    rng = np.random.default_rng(2)
    with jax.enable_x64(x64):
        params, xs = random_params(0, dtype=jnp.dtype(dtype)), jnp.asarray(XS, dtype)
        carry = jaxrnn.init_carry(params, (2,))
        if x64:
            h, c, log_n, m = rng.standard_normal((4, 2, HID))
            carry = SLSTMState(*map(jnp.asarray, (h, c, np.exp(log_n), m)))

        def loss(params, carry, xs):
            final, ys = jaxrnn.unroll(params, carry, xs)
            return sum([jnp.sum(jnp.sin(ys)), *(jnp.sum(s * s) for s in final)]), (ys, final)

        (_, (ys, final)), grads = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(
            params, carry, xs
        )

    torch_dtype = getattr(torch, dtype)
    cell = xlstm_cell(params, torch_dtype)
    tensor = lambda a: torch.tensor(np.asarray(a), dtype=torch_dtype, requires_grad=True)  # noqa: E731
    w_x, xs_t, state0 = tensor(params.w_x), tensor(xs), tensor(np.stack(carry))
    ys_t, state_t = cell(xs_t @ w_x, state0)
    loss_terms(ys_t, state_t).backward()

    np.testing.assert_allclose(ys, ys_t.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(np.stack(final), state_t.detach().numpy(), rtol=tol, atol=tol)
    bias_grad = cell.bias.grad.permute(1, 0, 2).reshape(-1)  # back to (gate, head, unit)
    expected = {
        "w_x": w_x.grad,
        "r": cell.recurrent_kernel.grad,
        "b": bias_grad,
        "xs": xs_t.grad,
        "carry": state0.grad,
    }
    ours = {**vars(grads[0]), "xs": grads[2], "carry": np.stack(grads[1])}
    for name, g in expected.items():
        scale = float(np.max(np.abs(g.numpy())))
        np.testing.assert_allclose(
            ours[name], g.numpy(), rtol=10 * tol, atol=10 * tol * scale, err_msg=name
        )


# --- methods ----------------------------------------------------------------------------


def test_deer_runs_slstm_and_parallel_refuses_it():
    """A nonlinear cell: DEER (Newton over the trajectory, any cell) gives the sequential
    result; the parallel scan of linear cells raises ``MethodError``."""
    params = random_params(0)
    expected = run(params, None, XS, lengths=LENGTHS)
    by_deer = run(params, None, XS, lengths=LENGTHS, method="deer")
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), by_deer, expected
    )
    with pytest.raises(jaxrnn.methods.MethodError, match=r"linear in its state .* SLSTMParams"):
        jaxrnn.unroll(params, None, XS, method="parallel")


# --- initialization ---------------------------------------------------------------------


def test_init_draws_each_head_and_gate_block_orthogonal_and_the_forget_bias():
    params = jaxrnn.init_params(jax.random.key(0), "slstm", IN, HID, num_heads=2)
    for k, g in np.ndindex(2, 4):
        block = np.asarray(params.r[k, :, g, :], np.float64)
        np.testing.assert_allclose(block @ block.T, np.eye(3), atol=1e-5)
    np.testing.assert_array_equal(np.split(np.asarray(params.b), 4)[1], np.ones(HID))
    assert not np.any(np.delete(np.asarray(params.b), np.s_[HID : 2 * HID]))


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"num_heads": 4}, ValueError, r"init_params: num_heads must divide hidden_size=6; got 4"),
        ({"num_heads": 0}, ValueError, r"init_params: num_heads must be a positive int; got 0"),
        ({"num_heads": 2.0}, TypeError, r"num_heads must be a positive int; got 2\.0"),
        (
            {"forget_gate": "tanh"},
            ValueError,
            r"init_params: forget_gate must be one of 'sigmoid', 'exp'; got 'tanh'",
        ),
    ],
)
def test_init_errors(options, error, message):
    with pytest.raises(error, match=message):
        jaxrnn.init_params(jax.random.key(0), "slstm", IN, HID, **options)


def test_a_hand_built_params_with_an_unknown_forget_gate_fails_at_trace_time():
    bad = SLSTMParams(jnp.ones((IN, 4 * HID)), jnp.ones((2, 3, 4, 3)), None, forget_gate="relu")
    with pytest.raises(ValueError, match=r"SLSTMParams: forget_gate must be 'sigmoid' or 'exp'"):
        jax.eval_shape(lambda: jaxrnn.cell_step(bad, None, jnp.ones(IN)))
