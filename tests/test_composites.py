"""``stack`` and ``bidirectional`` against running their parts by hand; dropout between
layers; ``cell_step`` on stacks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

NUM_STEPS, INPUT_SIZE = 5, 3
LENGTHS = jnp.array([5, 0, 2, 4])

run = jax.jit(jaxrnn.unroll, static_argnames=("reverse", "unroll", "remat", "method"))


def assert_trees_close(a, b, rtol=1e-6, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def three_layers(key):
    """Layers of three different cells, so a mix-up between layers cannot go unnoticed."""
    k1, k2, k3 = jax.random.split(key, 3)
    return [
        jaxrnn.init_params(k1, "rnn", INPUT_SIZE, 4, activation="relu"),
        jaxrnn.init_params(k2, "lstm", 4, 5, proj_size=3),
        jaxrnn.init_params(k3, "gru", 3, 6),
    ]


@pytest.fixture
def inputs(padded_batch):
    return padded_batch(jax.random.key(0), NUM_STEPS, LENGTHS, INPUT_SIZE)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_stack_equals_running_each_layer_by_hand(inputs, random_state, reverse):
    layers = three_layers(jax.random.key(1))
    deep = jaxrnn.stack(layers)
    carry = random_state(deep, LENGTHS.shape, jax.random.key(2))
    assert isinstance(carry, tuple) and len(carry) == 3

    xs, expected_carry = inputs, []
    for layer, layer_carry in zip(layers, carry, strict=True):
        layer_carry, xs = run(layer, layer_carry, xs, lengths=LENGTHS, reverse=reverse)
        expected_carry.append(layer_carry)

    new_carry, ys = run(deep, carry, inputs, lengths=LENGTHS, reverse=reverse)
    assert_trees_close(new_carry, tuple(expected_carry))
    np.testing.assert_allclose(ys, xs, rtol=1e-6, atol=1e-6)
    assert deep.input_shape == (INPUT_SIZE,) and deep.output_size == 6


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("merge", ["concat", "sum", "mean"])
def test_bidirectional_equals_running_both_directions_by_hand(inputs, random_state, merge, reverse):
    kf, kb, kc = jax.random.split(jax.random.key(3), 3)
    forward = jaxrnn.init_params(kf, "lstm", INPUT_SIZE, 4)
    backward = jaxrnn.init_params(kb, "lstm", INPUT_SIZE, 4)
    pair = jaxrnn.bidirectional(forward, backward, merge=merge)
    carry = random_state(pair, LENGTHS.shape, kc)
    assert isinstance(carry, jaxrnn.BidirectionalState)

    carry_f, ys_f = run(forward, carry.forward, inputs, lengths=LENGTHS, reverse=reverse)
    carry_b, ys_b = run(backward, carry.backward, inputs, lengths=LENGTHS, reverse=not reverse)
    expected_ys = {
        "concat": jnp.concatenate([ys_f, ys_b], axis=-1),
        "sum": ys_f + ys_b,
        "mean": (ys_f + ys_b) / 2,
    }[merge]

    new_carry, ys = run(pair, carry, inputs, lengths=LENGTHS, reverse=reverse)
    assert_trees_close(new_carry, jaxrnn.BidirectionalState(carry_f, carry_b))
    np.testing.assert_allclose(ys, expected_ys, rtol=1e-6, atol=1e-6)
    assert pair.output_size == ys.shape[-1] == (8 if merge == "concat" else 4)


def test_nested_composites_equal_their_parts(inputs):
    """A stack of bidirectional layers, inside a bidirectional pair of such stacks."""
    keys = jax.random.split(jax.random.key(4), 4)

    def bi_layer(k, input_size):
        kf, kb = jax.random.split(k)
        return jaxrnn.bidirectional(
            jaxrnn.init_params(kf, "gru", input_size, 3),
            jaxrnn.init_params(kb, "rnn", input_size, 3),
        )

    deep_f = jaxrnn.stack([bi_layer(keys[0], INPUT_SIZE), bi_layer(keys[1], 6)])
    deep_b = jaxrnn.stack([bi_layer(keys[2], INPUT_SIZE), bi_layer(keys[3], 6)])
    outer = jaxrnn.bidirectional(deep_f, deep_b, merge="sum")

    def by_hand(deep, reverse):
        xs, carry = inputs, []
        for layer in deep.layers:
            carry_f, ys_f = run(layer.forward, None, xs, lengths=LENGTHS, reverse=reverse)
            carry_b, ys_b = run(layer.backward, None, xs, lengths=LENGTHS, reverse=not reverse)
            xs = jnp.concatenate([ys_f, ys_b], axis=-1)
            carry.append(jaxrnn.BidirectionalState(carry_f, carry_b))
        return tuple(carry), xs

    (carry_f, ys_f), (carry_b, ys_b) = by_hand(deep_f, False), by_hand(deep_b, True)
    carry, ys = run(outer, None, inputs, lengths=LENGTHS)
    assert_trees_close(carry, jaxrnn.BidirectionalState(carry_f, carry_b))
    np.testing.assert_allclose(ys, ys_f + ys_b, rtol=1e-6, atol=1e-6)


# --- dropout between layers ------------------------------------------------------------


def dropout_stack(rate):
    k1, k2 = jax.random.split(jax.random.key(5))
    return jaxrnn.stack(
        [
            jaxrnn.init_params(k1, "lstm", INPUT_SIZE, 8),
            jaxrnn.init_params(k2, "gru", 8, 4),
        ],
        dropout=rate,
    )


def test_dropout_applies_only_with_a_key_and_depends_on_it(inputs):
    without_dropout = run(dropout_stack(0.0), None, inputs, lengths=LENGTHS)
    deep = dropout_stack(0.5)
    evaluation = run(deep, None, inputs, lengths=LENGTHS)
    assert_trees_close(evaluation, without_dropout)

    key_a, key_b = jax.random.key(6), jax.random.key(7)
    train_a = run(deep, None, inputs, lengths=LENGTHS, key=key_a)
    train_a_again = run(deep, None, inputs, lengths=LENGTHS, key=key_a)
    train_b = run(deep, None, inputs, lengths=LENGTHS, key=key_b)
    jax.tree.map(np.testing.assert_array_equal, train_a, train_a_again)
    assert not np.allclose(train_a[1], evaluation[1])
    assert not np.allclose(train_a[1], train_b[1])
    # Dropout acts between layers, before masking by the next layer: padding stays zero.
    steps = jnp.arange(NUM_STEPS)[:, None]
    assert not jnp.any(jnp.where((steps >= LENGTHS)[..., None], train_a[1], 0.0))


def test_no_dropout_after_the_last_layer(inputs):
    deep = jaxrnn.stack(dropout_stack(0.0).layers[:1], dropout=0.5)
    with_key = run(deep, None, inputs, lengths=LENGTHS, key=jax.random.key(8))
    assert_trees_close(with_key, run(deep, None, inputs, lengths=LENGTHS))


def test_dropout_is_differentiable_under_jit(inputs):
    deep = dropout_stack(0.5)

    @jax.jit
    def loss(params, key):
        return jnp.sum(jaxrnn.unroll(params, None, inputs, lengths=LENGTHS, key=key)[1] ** 2)

    grads = jax.grad(loss)(deep, jax.random.key(9))
    assert type(grads) is jaxrnn.Stack
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert not np.allclose(
        grads.layers[0].w_x, jax.grad(loss)(deep, jax.random.key(10)).layers[0].w_x
    )


# --- cell_step on stacks ---------------------------------------------------------------


def test_cell_step_on_a_stack_equals_unroll_of_one_step(random_state):
    deep = jaxrnn.stack(three_layers(jax.random.key(11)))
    carry = random_state(deep, (2,), jax.random.key(12))
    x = jax.random.normal(jax.random.key(13), (2, INPUT_SIZE))
    stepped = jaxrnn.cell_step(deep, carry, x)
    carry_1, ys_1 = run(deep, carry, x[None])
    assert_trees_close(stepped, (carry_1, ys_1[0]))

    by_hand, layer_carries = x, []
    for layer, layer_carry in zip(deep.layers, carry, strict=True):
        layer_carry, by_hand = jaxrnn.cell_step(layer, layer_carry, by_hand)
        layer_carries.append(layer_carry)
    assert_trees_close(stepped, (tuple(layer_carries), by_hand))


def test_cell_step_loop_equals_unroll_of_a_stack(inputs):
    """The generation loop (one ``cell_step`` at a time) matches a full ``unroll``."""
    deep = jaxrnn.stack(three_layers(jax.random.key(14)))
    step = jax.jit(jaxrnn.cell_step)
    carry, ys = jaxrnn.init_carry(deep, LENGTHS.shape), []
    for x in inputs:
        carry, y = step(deep, carry, x)
        ys.append(y)
    assert_trees_close((carry, jnp.stack(ys)), run(deep, None, inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nested", [False, True], ids=["bidirectional", "stack-of-bidirectional"])
def test_cell_step_rejects_bidirectional(nested):
    params = jaxrnn.init_params(
        jax.random.key(15), "gru", INPUT_SIZE, 4, bidirectional=True, num_layers=2 if nested else 1
    )
    with pytest.raises(ValueError, match=r"cell_step: params must be .*unidirectional.*use unroll"):
        jaxrnn.cell_step(params, None, jnp.ones((2, INPUT_SIZE)))
