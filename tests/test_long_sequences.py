"""Truncated BPTT (gradients stop at chunk boundaries) and streaming carries with resets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

TIME, BATCH, INPUT, HIDDEN, CHUNK = 12, 2, 2, 4, 4


def make(cell="gru"):
    params = jaxrnn.init_params(jax.random.key(0), cell, INPUT, HIDDEN)
    xs = jax.random.normal(jax.random.key(1), (TIME, BATCH, INPUT))
    targets = jax.random.normal(jax.random.key(2), (TIME, BATCH, HIDDEN))
    return params, xs, targets


def chunk_loss(params, carry, chunk):
    xs, targets = chunk
    carry, ys = jaxrnn.unroll(params, carry, xs)
    return jnp.mean((ys - targets) ** 2), carry


def assert_trees_close(a, b, **tolerances):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tolerances), a, b)


def test_split_chunks_and_chunk_lengths():
    xs = jnp.arange(TIME * 2).reshape(TIME, 2)
    chunks = jaxrnn.long_sequences.split_chunks({"xs": xs}, CHUNK)["xs"]
    assert chunks.shape == (TIME // CHUNK, CHUNK, 2)
    np.testing.assert_array_equal(chunks.reshape(TIME, 2), xs)
    lengths = jnp.array([12, 5, 0])
    per_chunk = jaxrnn.long_sequences.chunk_lengths(lengths, TIME // CHUNK, CHUNK)
    np.testing.assert_array_equal(per_chunk.sum(0), lengths)
    # the chunks' masks, side by side, are the whole sequence's mask
    masks = jax.vmap(lambda l: jaxrnn.sequence_mask(l, CHUNK))(per_chunk)
    np.testing.assert_array_equal(masks.reshape(TIME, 3), jaxrnn.sequence_mask(lengths, TIME))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncated_bptt_equals_chunk_by_chunk_gradients(cell):
    """Oracle: a Python loop in which each chunk starts from a constant (numpy) carry."""
    params, xs, targets = make(cell)
    chunks = jaxrnn.long_sequences.split_chunks((xs, targets), CHUNK)
    carry0 = jaxrnn.init_carry(params, (BATCH,))
    carry, losses, grads = jax.jit(jaxrnn.long_sequences.truncated_bptt, static_argnums=0)(
        chunk_loss, params, carry0, chunks
    )
    expected_grads = jax.tree.map(jnp.zeros_like, params)
    state = carry0
    for i in range(TIME // CHUNK):
        constant = jax.tree.map(np.asarray, state)  # no graph can reach earlier chunks
        (loss, state), g = jax.value_and_grad(chunk_loss, has_aux=True)(
            params,
            constant,
            (xs[i * CHUNK : (i + 1) * CHUNK], targets[i * CHUNK : (i + 1) * CHUNK]),
        )
        np.testing.assert_allclose(losses[i], loss, rtol=1e-5)
        expected_grads = jax.tree.map(jnp.add, expected_grads, g)
    assert_trees_close(grads, expected_grads, rtol=1e-4, atol=1e-6)
    assert_trees_close(carry, state, rtol=1e-5, atol=1e-6)
    # the state does flow across chunks: the final carry is that of one long unroll
    assert_trees_close(carry, jaxrnn.unroll(params, None, xs)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("chunk_size", "crosses"), [(CHUNK, False), (TIME, True)])
def test_gradients_do_not_cross_chunk_boundaries(chunk_size, crosses):
    """The loss is on the last CHUNK steps only. An input offset (a parameter) on earlier
    steps gets a zero gradient when those steps are in earlier chunks, and a non-zero one
    when a single chunk covers everything (full BPTT)."""
    cell, xs, targets = make()
    weight = (jnp.arange(TIME) >= TIME - CHUNK).astype(jnp.float32)
    num_chunks = TIME // chunk_size

    def loss_fn(params, carry, chunk):
        cell, offset = params
        xs, targets, weight, offset_chunk = chunk
        carry, ys = jaxrnn.unroll(cell, carry, xs + offset[offset_chunk])
        return jnp.sum(weight[:, None, None] * (ys - targets) ** 2), carry

    offset = jnp.zeros((num_chunks, chunk_size, BATCH, INPUT))
    chunks = (
        *jaxrnn.long_sequences.split_chunks((xs, targets, weight), chunk_size),
        jnp.arange(num_chunks),
    )
    _, _, (_, offset_grad) = jaxrnn.long_sequences.truncated_bptt(
        loss_fn, (cell, offset), jaxrnn.init_carry(cell, (BATCH,)), chunks
    )
    offset_grad = offset_grad.reshape(TIME, BATCH, INPUT)
    assert bool(jnp.any(offset_grad[TIME - CHUNK :] != 0))
    assert bool(jnp.any(offset_grad[: TIME - CHUNK] != 0)) == crosses


def test_streaming_chunks_with_carry_equal_one_long_unroll():
    params, xs, _ = make("lstm")
    carry, ys = None, []
    for i in range(TIME // CHUNK):  # a stateful model reading the stream chunk by chunk
        carry, chunk_ys = jaxrnn.unroll(params, carry, xs[i * CHUNK : (i + 1) * CHUNK])
        ys.append(chunk_ys)
    whole_carry, whole_ys = jaxrnn.unroll(params, None, xs)
    np.testing.assert_allclose(jnp.concatenate(ys), whole_ys, rtol=1e-5, atol=1e-6)
    assert_trees_close(carry, whole_carry, rtol=1e-5, atol=1e-6)


def test_reset_carry_resets_only_flagged_sequences():
    params, xs, _ = make("lstm")
    carry, _ = jaxrnn.unroll(params, None, xs)
    initial = jax.tree.map(jnp.ones_like, carry)
    reset = jnp.array([True, False])
    for init, value in ((None, 0.0), (initial, 1.0)):
        new = jaxrnn.long_sequences.reset_carry(params, carry, reset, init)
        assert bool(jnp.all(new.h[0] == value)) and bool(jnp.all(new.c[0] == value))
        np.testing.assert_array_equal(new.h[1], carry.h[1])
        np.testing.assert_array_equal(new.c[1], carry.c[1])


def test_unroll_with_resets_equals_separate_sequences():
    params, xs, _ = make("gru")
    resets = jnp.zeros((TIME, BATCH), bool).at[5, 0].set(True).at[0, 1].set(True)
    carry0 = jax.random.normal(jax.random.key(3), (BATCH, HIDDEN))
    carry, ys = jax.jit(jaxrnn.long_sequences.unroll_with_resets)(params, carry0, xs, resets)
    _, first = jaxrnn.unroll(params, carry0[0], xs[:5, 0])
    last_carry, second = jaxrnn.unroll(params, None, xs[5:, 0])
    np.testing.assert_allclose(ys[:, 0], jnp.concatenate([first, second]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry[0], last_carry, rtol=1e-5, atol=1e-6)
    whole_carry, whole = jaxrnn.unroll(params, None, xs[:, 1])  # reset at t=0: fresh start
    np.testing.assert_allclose(ys[:, 1], whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry[1], whole_carry, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda p: jaxrnn.long_sequences.split_chunks(jnp.ones((10, 2)), 4),
            ValueError,
            r"split_chunks: xs must have a time axis that is a multiple of chunk_size=4; "
            r"got \(10, 2\)",
        ),
        (
            lambda p: jaxrnn.long_sequences.reset_carry(
                p, jnp.zeros((2, HIDDEN)), jnp.array([1, 0])
            ),
            TypeError,
            "reset_carry: reset_mask must have dtype bool; got int32",
        ),
        (
            lambda p: jaxrnn.long_sequences.reset_carry(
                p, jnp.zeros((3, HIDDEN)), jnp.array([True, False])
            ),
            ValueError,
            r"reset_carry: carry must match init_carry\(params, batch_shape=\(2,\)\)",
        ),
        (
            lambda p: jaxrnn.long_sequences.unroll_with_resets(
                p, None, jnp.ones((3, 2, INPUT)), jnp.zeros((3, 3), bool)
            ),
            ValueError,
            r"unroll_with_resets: resets must be bool of shape \(time, \*batch\) = \(3, 2\)",
        ),
    ],
)
def test_errors(call, error, match):
    params, _, _ = make("gru")
    with pytest.raises(error, match=match):
        call(params)
