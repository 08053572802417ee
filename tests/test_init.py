"""``init_params``: shapes, composition into stacks and bidirectional layers, default and
custom initializers, dtype, and keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

INPUT_SIZE, HIDDEN_SIZE = 3, 4
NUM_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PARAMS_TYPES = {"rnn": jaxrnn.RNNParams, "lstm": jaxrnn.LSTMParams, "gru": jaxrnn.GRUParams}


def expected_shapes(name, options, input_size, hidden_size):
    """Field shapes (None: absent) of a cell, from PyTorch's layout transposed."""
    gates = NUM_GATES[name] * hidden_size
    proj = options.get("proj_size", 0)
    bias = (gates,) if options.get("bias", True) else None
    shapes = {
        "w_x": (input_size, gates),
        "w_h": (proj or hidden_size, gates),
        "b_x": bias,
        "b_h": bias,
    }
    if name == "lstm":
        shapes["w_proj"] = (hidden_size, proj) if proj else None
    return shapes


def field_shapes(params, names):
    return {n: None if getattr(params, n) is None else getattr(params, n).shape for n in names}


def test_cell_shapes_type_and_options(cell):
    params = cell.init(jax.random.key(0), INPUT_SIZE, HIDDEN_SIZE)
    expected = expected_shapes(cell.name, cell.options, INPUT_SIZE, HIDDEN_SIZE)
    assert type(params) is PARAMS_TYPES[cell.name]
    assert field_shapes(params, expected) == expected
    assert params.input_shape == (INPUT_SIZE,)
    assert params.output_size == cell.options.get("proj_size", 0) or HIDDEN_SIZE
    if cell.name == "rnn":
        assert params.activation == cell.options["activation"]
    if cell.name == "gru":
        assert params.reset_after is cell.options.get("reset_after", True)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_layers_compose_with_the_previous_output_size(cell, bidirectional):
    params = cell.init(
        jax.random.key(1), INPUT_SIZE, HIDDEN_SIZE, num_layers=3, bidirectional=bidirectional
    )
    assert type(params) is jaxrnn.Stack and len(params.layers) == 3
    directions = 2 if bidirectional else 1
    output_size = cell.options.get("proj_size", 0) or HIDDEN_SIZE
    input_size = INPUT_SIZE
    for layer in params.layers:
        cells = (layer.forward, layer.backward) if bidirectional else (layer,)
        assert type(layer) is (jaxrnn.Bidirectional if bidirectional else PARAMS_TYPES[cell.name])
        for part in cells:
            expected = expected_shapes(cell.name, cell.options, input_size, HIDDEN_SIZE)
            assert field_shapes(part, expected) == expected
        assert layer.output_size == directions * output_size
        input_size = directions * output_size
    assert params.output_size == directions * output_size
    assert params.dropout == 0.0
    # Every layer and direction draws its own weights.
    w_hs = [np.asarray(p.w_h) for p in jax.tree.leaves(params, is_leaf=_is_cell)]
    assert len(w_hs) == 3 * directions
    assert all(not np.array_equal(a, b) for i, a in enumerate(w_hs) for b in w_hs[i + 1 :])


def _is_cell(x):
    return isinstance(x, (jaxrnn.RNNParams, jaxrnn.LSTMParams, jaxrnn.GRUParams))


def test_one_bidirectional_layer_and_stack_dropout():
    pair = jaxrnn.init_params(jax.random.key(2), "gru", INPUT_SIZE, HIDDEN_SIZE, bidirectional=True)
    assert type(pair) is jaxrnn.Bidirectional and pair.merge == "concat"
    deep = jaxrnn.init_params(
        jax.random.key(2), "gru", INPUT_SIZE, HIDDEN_SIZE, num_layers=2, dropout=0.25
    )
    assert deep.dropout == 0.25


@pytest.mark.parametrize("options", [{}, {"proj_size": 2}], ids=["plain", "proj"])
def test_lstm_forget_gate_bias_is_one(options):
    h = HIDDEN_SIZE
    params = jaxrnn.init_params(jax.random.key(3), "lstm", INPUT_SIZE, h, **options)
    expected = np.zeros(4 * h)
    expected[h : 2 * h] = 1.0  # gates i, f, g, o
    np.testing.assert_array_equal(params.b_x, expected)
    np.testing.assert_array_equal(params.b_h, np.zeros(4 * h))
    zero = jaxrnn.init_params(jax.random.key(3), "lstm", INPUT_SIZE, h, forget_bias=0.0)
    np.testing.assert_array_equal(zero.b_x, np.zeros(4 * h))


def test_recurrent_weights_are_orthogonal_per_gate(cell):
    params = cell.init(jax.random.key(4), INPUT_SIZE, 6)
    gates = NUM_GATES[cell.name]
    for block in np.split(np.asarray(params.w_h, np.float64), gates, axis=1):
        rows, cols = block.shape
        gram = block @ block.T if rows <= cols else block.T @ block  # the smaller side
        np.testing.assert_allclose(gram, np.eye(min(rows, cols)), atol=1e-5)


def test_default_input_weights_are_lecun_normal_and_biases_zero(cell):
    fan_in = 64
    params = cell.init(jax.random.key(5), fan_in, 32)
    np.testing.assert_allclose(np.std(params.w_x), np.sqrt(1.0 / fan_in), rtol=0.1)
    if params.b_h is not None:
        np.testing.assert_array_equal(params.b_h, 0.0)


def test_custom_initializers_are_honoured(cell):
    init = jax.nn.initializers.constant
    options = {"kernel_init": init(0.25), "recurrent_init": init(-0.5), "bias_init": init(0.125)}
    if cell.name == "lstm":
        options["proj_init"] = init(2.0)
    params = cell.init(jax.random.key(6), INPUT_SIZE, HIDDEN_SIZE, **options)
    np.testing.assert_array_equal(params.w_x, 0.25)
    np.testing.assert_array_equal(params.w_h, -0.5)
    if params.b_x is not None:
        np.testing.assert_array_equal(params.b_h, 0.125)
        expected_b_x = np.full(params.b_x.shape, 0.125)
        if cell.name == "lstm":
            expected_b_x[HIDDEN_SIZE : 2 * HIDDEN_SIZE] += 1.0  # forget bias on top
        np.testing.assert_array_equal(params.b_x, expected_b_x)
    if getattr(params, "w_proj", None) is not None:
        np.testing.assert_array_equal(params.w_proj, 2.0)


def test_half_precision_dtypes_are_honoured_and_unroll_keeps_them(cell):
    float16 = cell.init(jax.random.key(7), INPUT_SIZE, HIDDEN_SIZE, num_layers=2, dtype="float16")
    assert {leaf.dtype for leaf in jax.tree.leaves(float16)} == {jnp.dtype(jnp.float16)}
    params = cell.init(jax.random.key(7), INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.bfloat16)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
    carry, ys = jax.jit(jaxrnn.unroll)(params, None, jnp.ones((2, 1, INPUT_SIZE), jnp.bfloat16))
    assert ys.dtype == jnp.bfloat16
    assert {leaf.dtype for leaf in jax.tree.leaves(carry)} == {jnp.dtype(jnp.bfloat16)}


def test_float64_dtype(cell, x64):
    params = cell.init(jax.random.key(8), INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.float64)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float64)}


def test_keys_decide_the_params(cell):
    options = {"bias_init": jax.nn.initializers.normal(1.0)}
    a = cell.init(jax.random.key(9), INPUT_SIZE, HIDDEN_SIZE, **options)
    a_again = cell.init(jax.random.key(9), INPUT_SIZE, HIDDEN_SIZE, **options)
    b = cell.init(jax.random.key(10), INPUT_SIZE, HIDDEN_SIZE, **options)
    jax.tree.map(np.testing.assert_array_equal, a, a_again)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert not np.any(np.asarray(leaf_a) == np.asarray(leaf_b))
