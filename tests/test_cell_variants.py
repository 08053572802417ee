"""The cell variants ``"mgu"``, ``"lstm_ln"`` and ``"convlstm"``: each against a NumPy
reference of its equations, through ``cell_step``, ``unroll`` (lengths, reverse), ``stack``
and ``bidirectional``, with gradients checked in float64; ConvLSTM also against Flax.
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn

IN, HID = 3, 4

#: (cell name, init_params options); convlstm in 2-D, and in 1-D with an even kernel.
VARIANTS = [
    ("mgu", {}),
    ("mgu", {"bias": False}),
    ("lstm_ln", {}),
    ("lstm_ln", {"bias": False}),
    ("convlstm", {"spatial_shape": (3, 4), "kernel_size": 3}),
    ("convlstm", {"spatial_shape": (5,), "kernel_size": 2, "bias": False}),
]
IDS = ["-".join([name, *(f"{k}={v}" for k, v in options.items())]) for name, options in VARIANTS]


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def layer_norm(a, gain, eps):
    mean = a.mean(-1, keepdims=True)
    return gain * (a - mean) / np.sqrt(((a - mean) ** 2).mean(-1, keepdims=True) + eps)


def same_conv(x, w):
    """Stride-1 'SAME' cross-correlation by summing shifted copies: ``x (*spatial, in)``."""
    kernel = w.shape[:-2]
    pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel]
    xp = np.pad(x, [*pads, (0, 0)])
    out = np.zeros((*x.shape[:-1], w.shape[-1]))
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = xp[tuple(slice(o, o + n) for o, n in zip(offset, x.shape[:-1], strict=True))]
        out += window @ w[offset]
    return out


def reference_step(name, p, carry, x):
    """One step of one sequence (no batch dims) in float64 NumPy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    if name == "mgu":
        h, size = carry, HID
        b = 0.0 if p.b is None else p.b
        f = sigmoid(x @ p.w_x[:, :size] + h @ p.w_h[:, :size] + (b if np.isscalar(b) else b[:size]))
        b_h = b if np.isscalar(b) else b[size:]
        cand = np.tanh(x @ p.w_x[:, size:] + (f * h) @ p.w_h[:, size:] + b_h)
        h = (1 - f) * h + f * cand
        return h, h
    h, c = carry
    if name == "lstm_ln":
        gates = layer_norm(x @ p.w_x, p.gain_x, p.epsilon) + layer_norm(
            h @ p.w_h, p.gain_h, p.epsilon
        )
        gates = gates + (0.0 if p.b is None else p.b)
    else:
        gates = same_conv(x, p.w_x) + same_conv(h, p.w_h) + (0.0 if p.b is None else p.b)
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    if name == "lstm_ln":
        c_out = layer_norm(c, p.gain_c, p.epsilon) + (0.0 if p.bias_c is None else p.bias_c)
    else:
        c_out = c
    h = sigmoid(o) * np.tanh(c_out)
    return (h, c), h


def random_params(name, options, key, dtype=jnp.float32):
    """Params with every leaf random (gains and biases included), so each term counts."""
    params = jaxrnn.init_params(key, name, IN, HID, dtype=dtype, **options)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    return treedef.unflatten(
        [
            0.5 * jax.random.normal(k, leaf.shape, leaf.dtype)
            for k, leaf in zip(keys, leaves, strict=True)
        ]
    )


def random_carry(params, batch_shape, key, dtype=jnp.float32):
    leaves, treedef = jax.tree.flatten(jaxrnn.init_carry(params, batch_shape))
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, leaf.shape, dtype) for k, leaf in zip(keys, leaves, strict=True)]
    )


def as_plain(carry):
    return tuple(carry) if isinstance(carry, jaxrnn.LSTMState) else carry


@pytest.fixture(params=VARIANTS, ids=IDS)
def variant(request):
    return request.param


#: One variant per cell, for the tests that compile more (composites, gradients).
REPRESENTATIVES = [VARIANTS[0], VARIANTS[2], VARIANTS[4]]


@pytest.fixture(params=REPRESENTATIVES, ids=[IDS[0], IDS[2], IDS[4]])
def representative(request):
    return request.param


def assert_close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


@jax.jit
def _step_and_unrolls(params, carry, xs, lengths):
    """``cell_step`` on one unbatched input, and forward and reverse unrolls: one compile."""
    single = jaxrnn.cell_step(params, jax.tree.map(lambda c: c[0], carry), xs[0, 0])
    forward = jaxrnn.unroll(params, carry, xs, lengths=lengths)
    backward = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=True)
    return single, forward, backward


def test_cell_step_and_unroll_match_numpy_loop(variant):
    """Per-sequence loops over the valid steps (backward for reverse) in float64 NumPy."""
    name, options = variant
    kp, kc, kx = jax.random.split(jax.random.key(1), 3)
    params = random_params(name, options, kp)
    expected_type = {
        "mgu": jaxrnn.MGUParams,
        "lstm_ln": jaxrnn.LayerNormLSTMParams,
        "convlstm": jaxrnn.ConvLSTMParams,
    }[name]
    spatial = tuple(options.get("spatial_shape", ()))
    assert type(params) is expected_type
    assert params.input_shape == (*spatial, IN) and params.output_size == HID
    lengths = np.array([4, 0, 2])
    carry = random_carry(params, (3,), kc)
    xs = jax.random.normal(kx, (4, 3, *params.input_shape))
    (step_carry, step_y), *runs = _step_and_unrolls(params, carry, xs, jnp.asarray(lengths))
    for leaf in jax.tree.leaves((runs[0], step_carry)):
        assert leaf.shape[-len(spatial) - 1 :] == (*spatial, HID)
    xs, carry = np.asarray(xs, np.float64), jax.tree.map(np.asarray, as_plain(carry))

    first = jax.tree.map(lambda a: a[0], carry)
    ref_carry, ref_y = reference_step(name, params, first, xs[0, 0])
    assert_close(step_y, ref_y)
    jax.tree.map(assert_close, as_plain(step_carry), ref_carry)

    for reverse, (final, ys) in zip([False, True], runs, strict=True):
        for b, length in enumerate(lengths):
            state = jax.tree.map(lambda a, b=b: a[b], carry)
            steps = range(length)
            for t in reversed(steps) if reverse else steps:
                state, y = reference_step(name, params, state, xs[t, b])
                assert_close(ys[t, b], y)
            assert not np.any(np.asarray(ys[length:, b]))
            jax.tree.map(lambda a, s, b=b: assert_close(a[b], s), as_plain(final), state)


def test_stack_of_bidirectional_layers_composes_unrolls(representative):
    """init_params(num_layers=2, bidirectional=True) equals its layers run by hand, and a
    stack's cell_step equals one step of its unroll."""
    name, options = representative
    params = jaxrnn.init_params(
        jax.random.key(2), name, IN, HID, num_layers=2, bidirectional=True, **options
    )
    lengths = jnp.array([3, 1])
    xs = jax.random.normal(jax.random.key(3), (3, 2, *params.input_shape))

    @jax.jit
    def by_hand(params, xs):
        inputs, carries = xs, []
        for layer in params.layers:
            carry_f, ys_f = jaxrnn.unroll(layer.forward, None, inputs, lengths=lengths)
            carry_b, ys_b = jaxrnn.unroll(
                layer.backward, None, inputs, lengths=lengths, reverse=True
            )
            inputs = jnp.concatenate([ys_f, ys_b], axis=-1)
            carries.append(jaxrnn.BidirectionalState(carry_f, carry_b))
        return tuple(carries), inputs

    final, ys = jax.jit(jaxrnn.unroll)(params, None, xs, lengths=lengths)
    expected_final, expected_ys = by_hand(params, xs)
    assert ys.shape == (3, 2, *params.input_shape[:-1], 2 * HID)
    assert_close(ys, expected_ys)
    jax.tree.map(assert_close, final, expected_final)


def test_cell_step_of_a_stack_equals_one_unroll_step(representative):
    name, options = representative
    params = jaxrnn.init_params(jax.random.key(4), name, IN, HID, num_layers=2, **options)
    x = jax.random.normal(jax.random.key(5), (2, *params.input_shape))

    @jax.jit
    def step_and_unroll(params, x):
        return jaxrnn.cell_step(params, None, x), jaxrnn.unroll(params, None, x[None])

    (carry, y), (carry_u, ys) = step_and_unroll(params, x)
    assert_close(y, ys[0])
    jax.tree.map(assert_close, carry, carry_u)


def test_check_grads_float64(representative):
    name, options = representative
    with jax.enable_x64(True):
        kp, kc, kx = jax.random.split(jax.random.key(6), 3)
        params = random_params(name, options, kp, jnp.float64)
        carry = random_carry(params, (2,), kc, jnp.float64)
        xs = jax.random.normal(kx, (2, 2, *params.input_shape), jnp.float64)
        lengths = jnp.array([2, 1])

        @jax.jit
        def f(params, carry, xs):
            return jaxrnn.unroll(params, carry, xs, lengths=lengths)

        check_grads(f, (params, carry, xs), order=1, modes=("rev",))


def test_convlstm_matches_flax_conv_lstm_cell():
    """Flax's gates are i, g, f, o with both convolutions biased and sigmoid(f + 1)."""
    flax_cell = nn.ConvLSTMCell(features=HID, kernel_size=(3, 3))
    x = jax.random.normal(jax.random.key(7), (2, 5, 6, IN))
    shapes = {"kernel": (3, 3, IN, 4 * HID), "bias": (4 * HID,)}
    shapes = {"ih": shapes, "hh": {**shapes, "kernel": (3, 3, HID, 4 * HID)}}
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda s: isinstance(s, tuple))
    keys = jax.random.split(jax.random.key(9), len(leaves))
    p = treedef.unflatten(
        [0.3 * jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)]
    )

    def reorder(a):  # i, g, f, o -> i, f, g, o along the last axis
        i, g, f, o = jnp.split(a, 4, axis=-1)
        return jnp.concatenate([i, f, g, o], axis=-1)

    b = reorder(p["ih"]["bias"] + p["hh"]["bias"] + jnp.repeat(jnp.array([0, 0, 1.0, 0]), HID))
    params = jaxrnn.ConvLSTMParams(
        w_x=reorder(p["ih"]["kernel"]), w_h=reorder(p["hh"]["kernel"]), b=b, spatial_shape=(5, 6)
    )
    c0, h0 = jax.random.normal(jax.random.key(10), (2, 2, 5, 6, HID))
    (c1, _), y = jax.jit(flax_cell.apply)({"params": p}, (c0, h0), x)
    carry, y_ours = jaxrnn.cell_step(params, jaxrnn.LSTMState(h=h0, c=c0), x)
    assert_close(y_ours, y, 1e-4)
    assert_close(carry.c, c1, 1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"init_params: spatial_shape must be given for cell 'convlstm'"),
        ({"spatial_shape": (4, 0)}, r"spatial_shape must be given .*; got \(4, 0\)"),
        ({"spatial_shape": (4, 4), "kernel_size": (3,)}, r"kernel_size must have one size per"),
        ({"spatial_shape": (4, 4), "kernel_size": 0}, r"kernel_size must be a positive int"),
    ],
)
def test_convlstm_init_errors(options, message):
    with pytest.raises((TypeError, ValueError), match=message):
        jaxrnn.init_params(jax.random.key(0), "convlstm", IN, HID, **options)


def test_convlstm_unroll_rejects_a_wrong_spatial_shape():
    params = jaxrnn.init_params(jax.random.key(0), "convlstm", IN, HID, spatial_shape=(4, 5))
    with pytest.raises(
        ValueError, match=r"unroll: xs must have shape \(time, \.\.\., 4, 5, input_size=3\)"
    ):
        jaxrnn.unroll(params, None, jnp.ones((2, 1, 5, 4, IN)))


def test_stack_rejects_convlstm_layers_with_other_spatial_shapes():
    k1, k2 = jax.random.split(jax.random.key(0))
    first = jaxrnn.init_params(k1, "convlstm", IN, HID, spatial_shape=(4, 4))
    second = jaxrnn.init_params(k2, "convlstm", HID, HID, spatial_shape=(4, 5))
    with pytest.raises(ValueError, match=r"stack: layers\[1\] must take input_size=4"):
        jaxrnn.stack([first, second])
