"""``with_carry_outputs`` of stacks and bidirectional pairs: the carry of every layer and
direction at every step, while the layers feed each other as in a plain unroll."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.regularization import draw_masks

IN, HID, TIME, BATCH = 3, 4, 5, 3
LENGTHS = jnp.array([5, 0, 2])


def assert_trees_close(actual, expected, tol=1e-5):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(a, e, rtol=tol, atol=tol), actual, expected
    )


def make(kind, seed=0, dropout=0.0):
    keys = iter(jax.random.split(jax.random.key(seed), 8))
    if kind == "lstm_stack":
        return jaxrnn.stack(
            [
                jaxrnn.init_params(next(keys), "lstm", IN, HID),
                jaxrnn.init_params(next(keys), "lstm", HID, HID),
            ],
            dropout=dropout,
        )
    if kind == "bi_gru":
        return jaxrnn.bidirectional(
            jaxrnn.init_params(next(keys), "gru", IN, HID),
            jaxrnn.init_params(next(keys), "gru", IN, HID),
        )
    assert kind == "bi_lstm_stack"
    return jaxrnn.init_params(
        next(keys), "lstm", IN, HID, num_layers=2, bidirectional=True, dropout=dropout
    )


def by_hand(params, carry, xs, lengths, reverse):
    """``(carry, ys, carries)`` from plain unrolls of each cell, and with_carry_outputs of it."""
    if isinstance(params, jaxrnn.Stack):
        finals, carries = [], []
        for layer, layer_carry in zip(params.layers, carry, strict=True):
            final, ys, layer_carries = by_hand(layer, layer_carry, xs, lengths, reverse)
            finals.append(final)
            carries.append(layer_carries)
            xs = ys
        return tuple(finals), xs, tuple(carries)
    if isinstance(params, jaxrnn.Bidirectional):
        f = by_hand(params.forward, carry.forward, xs, lengths, reverse)
        b = by_hand(params.backward, carry.backward, xs, lengths, not reverse)
        return (
            jaxrnn.BidirectionalState(f[0], b[0]),
            params.merge_outputs(f[1], b[1]),
            jaxrnn.BidirectionalState(f[2], b[2]),
        )
    final, ys = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=reverse)
    _, carries = jaxrnn.unroll(
        jaxrnn.carries.with_carry_outputs(params), carry, xs, lengths=lengths, reverse=reverse
    )
    return final, ys, carries


def top_outputs(params, carries):
    """What the plain unroll's ys are made of: the top layer's h (both directions)."""
    top = carries[-1] if isinstance(params, jaxrnn.Stack) else carries
    if isinstance(top, jaxrnn.BidirectionalState):
        h = [c.h if hasattr(c, "h") else c for c in top]
        return jnp.concatenate(h, axis=-1)
    return top.h


# A pair already runs one direction reversed: one reverse=True case of each pair suffices.
@pytest.mark.parametrize(
    ("kind", "reverse"),
    [("lstm_stack", False), ("lstm_stack", True), ("bi_gru", True), ("bi_lstm_stack", False)],
)
def test_carries_of_composites_are_those_of_their_parts(kind, reverse):
    params = make(kind)
    xs = jax.random.normal(jax.random.key(1), (TIME, BATCH, IN))
    # A non-zero initial carry, so that padding steps and final carries are informative.
    carry0 = jax.tree.map(lambda c: c + 0.25, jaxrnn.init_carry(params, (BATCH,)))
    final, carries = jaxrnn.unroll(
        jaxrnn.carries.with_carry_outputs(params), carry0, xs, lengths=LENGTHS, reverse=reverse
    )
    plain_final, plain_ys = jaxrnn.unroll(params, carry0, xs, lengths=LENGTHS, reverse=reverse)
    hand_final, hand_ys, hand_carries = by_hand(params, carry0, xs, LENGTHS, reverse)

    assert_trees_close(carries, hand_carries)
    assert_trees_close(final, plain_final)
    assert_trees_close(hand_final, plain_final)
    np.testing.assert_allclose(top_outputs(params, carries), plain_ys, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hand_ys, plain_ys, rtol=1e-5, atol=1e-5)
    for leaf in jax.tree.leaves(carries):
        assert leaf.shape == (TIME, BATCH, HID)
        assert not np.any(np.asarray(leaf[2:, 2])) and not np.any(np.asarray(leaf[:, 1]))
    expected = jax.tree.structure(jaxrnn.init_carry(params, (BATCH,)))
    assert jax.tree.structure(carries) == expected


@pytest.mark.parametrize("kind", ["lstm_stack", "bi_lstm_stack"])
def test_dropout_between_layers_follows_the_key(kind):
    params = make(kind, seed=2, dropout=0.5)
    xs = jax.random.normal(jax.random.key(3), (TIME, BATCH, IN))
    key = jax.random.key(4)
    wrapped = jaxrnn.carries.with_carry_outputs(params)
    final, carries = jaxrnn.unroll(wrapped, None, xs, lengths=LENGTHS, key=key)
    plain_final, plain_ys = jaxrnn.unroll(params, None, xs, lengths=LENGTHS, key=key)
    assert_trees_close(final, plain_final)
    np.testing.assert_allclose(top_outputs(params, carries), plain_ys, rtol=1e-5, atol=1e-5)
    # Dropout did act: without a key the top layer sees other inputs.
    _, eval_carries = jaxrnn.unroll(wrapped, None, xs, lengths=LENGTHS)
    assert not np.allclose(top_outputs(params, eval_carries), plain_ys)
    # The bottom layer is before any dropout.
    assert_trees_close(carries[0], eval_carries[0])


def test_output_dropout_of_regularized_layers_feeds_the_next_layer():
    keys = jax.random.split(jax.random.key(5), 2)
    rates = {"output_dropout": 0.4, "recurrent_dropout": 0.3, "zoneout_c": 0.2}
    params = jaxrnn.stack(
        [
            jaxrnn.regularization.regularize(jaxrnn.init_params(keys[0], "lstm", IN, HID), **rates),
            jaxrnn.regularization.regularize(
                jaxrnn.init_params(keys[1], "lstm", HID, HID), **rates
            ),
        ]
    )
    xs = jax.random.normal(jax.random.key(6), (TIME, BATCH, IN))
    key = jax.random.key(7)
    final, carries = jaxrnn.unroll(jaxrnn.carries.with_carry_outputs(params), None, xs, key=key)
    plain_final, _ = jaxrnn.unroll(params, None, xs, key=key)
    assert_trees_close(final, plain_final)
    assert_trees_close(jax.tree.map(lambda c: c[-1], carries), plain_final)


def test_cell_step_of_a_stack_outputs_its_whole_carry():
    params = make("lstm_stack", seed=8)
    x = jax.random.normal(jax.random.key(9), (BATCH, IN))
    wrapped = jaxrnn.carries.with_carry_outputs(params)
    new, out = jaxrnn.cell_step(wrapped, None, x)
    plain_new, plain_y = jaxrnn.cell_step(params, None, x)
    assert_trees_close(new, plain_new)
    assert_trees_close(out, plain_new)
    np.testing.assert_allclose(out[-1].h, plain_y, rtol=1e-6)
    assert jax.tree.structure(jaxrnn.init_carry(wrapped, (BATCH,))) == jax.tree.structure(new)
    with pytest.raises(ValueError, match=r"cell_step: params must be a cell or a stack"):
        jaxrnn.cell_step(jaxrnn.carries.with_carry_outputs(make("bi_gru")), None, x)


# Attention decoders whose unroll draws masks from the key, inside and around them.
RATES = dict(recurrent_dropout=0.3, zoneout_h=0.2)
ATTENTION_DECODERS = {
    # a stack: dropout between the inner layers and inside each (regularize)
    "luong_stack": dict(cell="gru", kind="luong_general", num_layers=2, dropout=0.5),
    # one regularized inner layer: it gets unroll's key itself
    "bahdanau_lstm": dict(cell="lstm", kind="bahdanau"),
    # regularize() around the whole decoder, whose inner layers get a key of their own
    "regularized_decoder": dict(cell="gru", kind="luong_dot", num_layers=2, dropout=0.5),
}


def attention_decoder(name):
    decoder = jaxrnn.attention.init_attention_cell(
        jax.random.key(10),
        input_size=IN,
        hidden_size=HID,
        memory_size=HID,
        **ATTENTION_DECODERS[name],
    )
    memory = jax.random.normal(jax.random.key(11), (4, BATCH, HID))
    bound = jaxrnn.attention.with_memory(decoder, memory, jnp.array([4, 1, 3]))
    if name == "regularized_decoder":
        # regularize() needs the decoder without memory; bind the one inside
        wrapped = jaxrnn.regularization.regularize(decoder, output_dropout=0.4)
        return dataclasses.replace(wrapped, cell=bound)
    rates = {**RATES, "zoneout_c": 0.3} if name == "bahdanau_lstm" else RATES
    return dataclasses.replace(bound, cell=jaxrnn.regularization.regularize(bound.cell, **rates))


def outputs_in_carries(name, params, carries, ys, xs, key):
    """The part of the plain unroll's ys that the carries hold, from both."""
    if name == "bahdanau_lstm":  # y_t = [h_t; context_t]
        return carries.cell.h, ys[..., :HID]
    if name == "luong_stack":  # y_t = h~_t, fed back in the carry
        return carries.attentional, ys
    # h~_t times the regularize()d decoder's output mask (drawn once for all steps)
    output_mask = 1.0 if key is None else draw_masks(params, xs, key).output
    return carries.attentional * output_mask, ys


@pytest.mark.parametrize("name", list(ATTENTION_DECODERS))
def test_attention_decoder_carries_follow_the_key(name):
    """with_carry_outputs(decoder) goes through the states of unroll(decoder, key=key),
    with the same masks inside the decoder (between its inner layers, in regularize()d
    inner layers) and around it (a regularize()d decoder); without a key, through those
    of the deterministic unroll."""
    params = attention_decoder(name)
    xs = jax.random.normal(jax.random.key(12), (TIME, BATCH, IN))
    lengths = jnp.array([5, 5, 2])
    wrapped = jaxrnn.carries.with_carry_outputs(params)
    held = {}
    for key in (jax.random.key(13), None):
        final, carries = jaxrnn.unroll(wrapped, None, xs, lengths=lengths, key=key)
        plain_final, plain_ys = jaxrnn.unroll(params, None, xs, lengths=lengths, key=key)
        assert_trees_close(final, plain_final, tol=1e-6)
        last = jax.tree.map(lambda c: c[lengths - 1, jnp.arange(BATCH)], carries)
        assert_trees_close(last, plain_final, tol=1e-6)
        held[key is None], expected = outputs_in_carries(name, params, carries, plain_ys, xs, key)
        np.testing.assert_allclose(held[key is None], expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(held[False], held[True]), "the key did not act"
