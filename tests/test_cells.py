"""Cells against a plain NumPy loop written from the documented equations.

The reference below reads only the params' named fields and re-derives every equation
(PyTorch's: LSTM gates i, f, g, o; GRU gates r, z, n) in float64 NumPy, so a wrong gate
order, a missing bias or a misplaced reset gate in jaxrnn shows up as a mismatch.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.cells import CELL_INITS

INPUT_SIZE, HIDDEN_SIZE = 3, 5


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def as_numpy(a):
    return None if a is None else np.asarray(a, np.float64)


def reference_step(name: str, params, carry, x):
    """One step of cell ``name`` in NumPy; ``carry`` is ``h`` or ``(h, c)``."""
    w_x, w_h = as_numpy(params.w_x), as_numpy(params.w_h)
    b_x = 0.0 if params.b_x is None else as_numpy(params.b_x)
    b_h = 0.0 if params.b_h is None else as_numpy(params.b_h)
    if name == "rnn":
        act = np.tanh if params.activation == "tanh" else (lambda v: np.maximum(v, 0.0))
        h = act(x @ w_x + b_x + carry @ w_h + b_h)
        return h, h
    if name == "lstm":
        h, c = carry
        gates = x @ w_x + b_x + h @ w_h + b_h
        i, f, g, o = np.split(gates, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        if params.w_proj is not None:
            h = h @ as_numpy(params.w_proj)
        return (h, c), h
    assert name == "gru"
    h = carry
    size = h.shape[-1]
    gx = x @ w_x + b_x
    r = sigmoid(gx[..., :size] + (h @ w_h + b_h)[..., :size])
    z = sigmoid(gx[..., size : 2 * size] + (h @ w_h + b_h)[..., size : 2 * size])
    w_hn = w_h[:, 2 * size :]
    b_hn = b_h if np.isscalar(b_h) else b_h[2 * size :]
    if params.reset_after:
        n = np.tanh(gx[..., 2 * size :] + r * (h @ w_hn + b_hn))
    else:
        n = np.tanh(gx[..., 2 * size :] + (r * h) @ w_hn + b_hn)
    h = (1.0 - z) * n + z * h
    return h, h


def reference_unroll(name, params, carry, xs, lengths, reverse):
    """Per-sequence loop over each sequence's valid steps; ``xs`` is ``(time, batch, in)``."""
    xs = np.asarray(xs, np.float64)
    num_steps, batch = xs.shape[:2]
    carries, ys = [], np.zeros((num_steps, batch, params.output_size))
    for b in range(batch):
        state = jax.tree.map(lambda a, b=b: np.asarray(a, np.float64)[b], carry)
        steps = range(min(max(int(lengths[b]), 0), num_steps))
        for t in reversed(steps) if reverse else steps:
            state, ys[t, b] = reference_step(name, params, state, xs[t, b])
        carries.append(state)
    return jax.tree.map(lambda *leaves: np.stack(leaves), *carries), ys


def random_params(cell, key):
    """Params with non-zero biases (where the cell has an initializer for them), so that
    every bias term is exercised."""
    options = inspect.signature(CELL_INITS[cell.name]).parameters
    biases = {"bias_init": jax.nn.initializers.normal(0.5)} if "bias_init" in options else {}
    return cell.init(key, INPUT_SIZE, HIDDEN_SIZE, **biases)


def as_tuple(carry):
    """``LSTMState(h, c)`` as a plain tuple, to compare with the reference's carry."""
    return tuple(carry) if isinstance(carry, jaxrnn.LSTMState) else carry


@pytest.mark.parametrize("batch_shape", [(), (2, 3)], ids=["single", "2d-batch"])
def test_cell_step_matches_numpy_reference(cell, batch_shape, random_state):
    kp, kc, kx = jax.random.split(jax.random.key(0), 3)
    params = random_params(cell, kp)
    carry = random_state(params, batch_shape, kc)
    x = jax.random.normal(kx, (*batch_shape, INPUT_SIZE))
    new_carry, y = jaxrnn.cell_step(params, carry, x)
    expected_carry, expected_y = reference_step(
        cell.name, params, as_tuple(jax.tree.map(as_numpy, carry)), np.asarray(x, np.float64)
    )
    np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        as_tuple(new_carry),
        expected_carry,
    )
    assert y.shape == (*batch_shape, params.output_size)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_unroll_matches_numpy_reference(cell, reverse, random_state):
    kp, kc, kx = jax.random.split(jax.random.key(1), 3)
    params = random_params(cell, kp)
    lengths = jnp.array([6, 0, 3, 1])
    carry = random_state(params, lengths.shape, kc)
    xs = jax.random.normal(kx, (6, *lengths.shape, INPUT_SIZE))
    new_carry, ys = jax.jit(jaxrnn.unroll, static_argnames="reverse")(
        params, carry, xs, lengths=lengths, reverse=reverse
    )
    expected_carry, expected_ys = reference_unroll(
        cell.name, params, as_tuple(carry), xs, lengths, reverse
    )
    np.testing.assert_allclose(ys, expected_ys, rtol=1e-5, atol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
        as_tuple(new_carry),
        expected_carry,
    )


def test_cell_step_none_carry_is_zero_state(any_cell):
    params = random_params(any_cell, jax.random.key(2))
    x = jax.random.normal(jax.random.key(3), (2, INPUT_SIZE))
    from_none = jaxrnn.cell_step(params, None, x)
    from_zero = jaxrnn.cell_step(params, jaxrnn.init_carry(params, (2,)), x)
    jax.tree.map(np.testing.assert_array_equal, from_none, from_zero)


def test_init_carry_structure_and_dtype(cell):
    params = cell.init(jax.random.key(0), INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.bfloat16)
    carry = jaxrnn.init_carry(params, (2, 3))
    if cell.name == "lstm":
        assert isinstance(carry, jaxrnn.LSTMState)
        assert carry.h.shape == (2, 3, params.output_size)
        assert carry.c.shape == (2, 3, HIDDEN_SIZE)
    else:
        assert carry.shape == (2, 3, HIDDEN_SIZE)
    for leaf in jax.tree.leaves(carry):
        assert leaf.dtype == jnp.bfloat16
        assert not jnp.any(leaf)


def test_unroll_initial_carry_dtype_follows_params_and_xs(any_cell):
    params = random_params(any_cell, jax.random.key(4))
    xs = jnp.ones((2, 1, INPUT_SIZE), jnp.bfloat16)
    carry, ys = jaxrnn.unroll(params, None, xs)
    assert ys.shape == (2, 1, params.output_size)
    for leaf in jax.tree.leaves(carry):
        assert leaf.dtype == jnp.float32  # float32 params, bf16 xs: the wider of the two
