"""Encoder–decoder: bridges, teacher forcing, greedy/sample/beam decoding, and learning to copy.

Decoders are checked against teacher forcing (a greedy token is the arg-max of the logits
the decoder gives when it is fed those same tokens), and beam search against brute force.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn

PAD, START, END, FIRST = 0, 1, 2, 3  # token ids; data tokens are FIRST..vocab-1
VOCAB, MAX_SOURCE = 7, 4


def copy_batch(key, batch, vocab=VOCAB, max_source=MAX_SOURCE):
    """Source: random data tokens, lengths 1..max; target: the same, then END, then PAD."""
    k1, k2 = jax.random.split(key)
    lengths = jax.random.randint(k1, (batch,), 1, max_source + 1)
    tokens = jax.random.randint(k2, (max_source, batch), FIRST, vocab)
    source = jnp.where(jaxrnn.sequence_mask(lengths, max_source), tokens, PAD)
    targets = jnp.concatenate([source, jnp.full((1, batch), PAD)])
    targets = targets.at[lengths, jnp.arange(batch)].set(END)
    return source, lengths, targets, lengths + 1


@jax.jit
def sequence_log_prob(params, source, source_lengths, tokens, lengths):
    """log p(tokens[:lengths] | source) by teacher forcing."""
    logits = jaxrnn.seq2seq_logits(
        params, source, source_lengths, tokens, lengths, start_token=START
    )
    nll = jaxrnn.sequence_softmax_cross_entropy(logits, tokens, lengths=lengths, reduction="none")
    return -nll.sum(0)


CONFIGS = [
    dict(
        cell="lstm",
        num_layers=2,
        bidirectional_encoder=True,
        bridge="linear",
        decoder_hidden_size=5,
    ),
    dict(cell="gru", num_layers=1, bidirectional_encoder=True, bridge="sum"),
    dict(cell="rnn", num_layers=1, bidirectional_encoder=False, bridge="concat"),
]


def config_id(config):
    return "-".join(str(v) for v in config.values())


def init(config, seed=0, hidden_size=4):
    return jaxrnn.init_seq2seq(
        jax.random.key(seed), VOCAB, VOCAB, embed_size=3, hidden_size=hidden_size, **config
    )


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_shapes_bridge_and_gradients_reach_every_part(config):
    params = init(config)
    source, source_lengths, targets, target_lengths = copy_batch(jax.random.key(1), 3)
    encoder_carry, encoder_ys = jaxrnn.encode(params, source, source_lengths)
    decoder_carry = jaxrnn.bridge_carry(params, encoder_carry)
    expected = jax.eval_shape(lambda: jaxrnn.init_carry(params.decoder, (3,)))
    assert jax.tree.structure(decoder_carry) == jax.tree.structure(expected)
    assert [a.shape for a in jax.tree.leaves(decoder_carry)] == [
        a.shape for a in jax.tree.leaves(expected)
    ]
    assert encoder_ys.shape[:2] == source.shape
    loss_fn = functools.partial(jaxrnn.seq2seq_loss, start_token=START)
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(
        params, source, source_lengths, targets, target_lengths
    )
    assert loss.shape == () and bool(jnp.isfinite(loss))
    for name in ("source_embedding", "encoder", "decoder", "bridge_params", "readout"):
        leaves = jax.tree.leaves(getattr(grads, name))
        if name == "bridge_params" and config["bridge"] != "linear":
            assert not leaves
            continue
        assert leaves and any(bool(jnp.any(g != 0)) for g in leaves), name


@pytest.mark.parametrize("bridge", ["concat", "sum"])
def test_bidirectional_bridge_combines_directions(bridge):
    params = init(dict(cell="lstm", bidirectional_encoder=True, bridge=bridge))
    source, source_lengths, _, _ = copy_batch(jax.random.key(2), 3)
    encoder_carry, _ = jaxrnn.encode(params, source, source_lengths)
    forward, backward = encoder_carry.forward, encoder_carry.backward
    combine = {"concat": lambda f, b: jnp.concatenate([f, b], -1), "sum": jnp.add}[bridge]
    bridged = jaxrnn.bridge_carry(params, encoder_carry)
    np.testing.assert_allclose(bridged.h, combine(forward.h, backward.h))
    np.testing.assert_allclose(bridged.c, combine(forward.c, backward.c))


def test_unidirectional_bridge_hands_the_carry_over():
    params = init(dict(cell="gru", num_layers=2))
    source, source_lengths, _, _ = copy_batch(jax.random.key(2), 3)
    encoder_carry, _ = jaxrnn.encode(params, source, source_lengths)
    bridged = jaxrnn.bridge_carry(params, encoder_carry)
    jax.tree.map(np.testing.assert_array_equal, bridged, encoder_carry)


def test_padding_tokens_change_nothing():
    params = init(CONFIGS[1])
    source, source_lengths, targets, target_lengths = copy_batch(jax.random.key(3), 4)
    source_junk = jnp.where(jaxrnn.sequence_mask(source_lengths, MAX_SOURCE), source, VOCAB - 1)
    valid_targets = jaxrnn.sequence_mask(target_lengths, MAX_SOURCE + 1)
    targets_junk = jnp.where(valid_targets, targets, FIRST)
    loss_fn = jax.jit(functools.partial(jaxrnn.seq2seq_loss, start_token=START))
    np.testing.assert_allclose(
        loss_fn(params, source, source_lengths, targets, target_lengths),
        loss_fn(params, source_junk, source_lengths, targets_junk, target_lengths),
        rtol=1e-6,
    )


def test_shift_right():
    targets = jnp.array([[5, 6], [7, 8], [2, 0]])
    np.testing.assert_array_equal(jaxrnn.shift_right(targets, START), [[1, 1], [5, 6], [7, 8]])


def test_greedy_is_argmax_of_teacher_forcing_on_its_own_output_and_pads_after_end():
    # An untrained model ends rarely; make END likely with a large readout bias.
    params = init(CONFIGS[1], seed=4)
    bias = params.readout.b_y.at[END].set(0.5)
    params = params.__class__(
        **{**vars(params), "readout": jaxrnn.ReadoutParams(params.readout.w_y * 3, bias)}
    )
    source, source_lengths, _, _ = copy_batch(jax.random.key(5), 16)
    decode = jax.jit(
        functools.partial(
            jaxrnn.greedy_decode, max_length=6, start_token=START, end_token=END, pad_token=PAD
        )
    )
    tokens, lengths = decode(params, source, source_lengths)
    assert tokens.shape == (6, 16) and bool(jnp.any(lengths < 6)) and bool(jnp.any(lengths > 1))
    logits = jaxrnn.seq2seq_logits(
        params, source, source_lengths, tokens, lengths, start_token=START
    )
    valid = jaxrnn.sequence_mask(lengths, 6)
    np.testing.assert_array_equal(
        jnp.where(valid, jnp.argmax(logits, -1), -1), jnp.where(valid, tokens, -1)
    )
    assert bool(jnp.all(jnp.where(valid, True, tokens == PAD))), "padding after the end"
    ended = lengths < 6
    assert bool(jnp.all(tokens[lengths - 1, jnp.arange(16)][ended] == END))


def test_sampling_is_reproducible_and_covers_tokens():
    params = init(CONFIGS[2])
    source, source_lengths, _, _ = copy_batch(jax.random.key(6), 8)
    sample = jax.jit(
        functools.partial(
            jaxrnn.sample_decode, max_length=5, start_token=START, end_token=END, temperature=3.0
        )
    )
    a, lengths_a = sample(params, source, source_lengths, key=jax.random.key(7))
    b, lengths_b = sample(params, source, source_lengths, key=jax.random.key(7))
    c, _ = sample(params, source, source_lengths, key=jax.random.key(8))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lengths_a, lengths_b)
    assert bool(jnp.any(a != c))
    valid = jaxrnn.sequence_mask(lengths_a, 5)
    assert bool(jnp.all(jnp.where(valid, True, a == PAD)))


def test_beam_search_finds_the_most_likely_output_by_brute_force():
    """With a beam of vocab**(max_length - 1) hypotheses nothing is pruned: the result
    must be the best of all vocab**max_length outputs, scored by teacher forcing."""
    vocab, max_length = 4, 3
    params = jaxrnn.init_seq2seq(
        jax.random.key(9), vocab, vocab, embed_size=3, hidden_size=4, cell="gru"
    )
    params = params.__class__(
        **{
            **vars(params),
            "readout": jaxrnn.ReadoutParams(params.readout.w_y * 4, params.readout.b_y),
        }
    )
    source, source_lengths, _, _ = copy_batch(jax.random.key(10), 2, vocab=vocab, max_source=3)
    tokens, lengths, scores = jaxrnn.beam_search(
        params,
        source,
        source_lengths,
        beam_size=vocab ** (max_length - 1),
        max_length=max_length,
        start_token=START,
        end_token=END,
        pad_token=PAD,
    )
    # every output: tokens after the first END become PAD
    outputs = jnp.array(list(itertools.product(range(vocab), repeat=max_length))).T  # (3, 64)
    out_lengths = jaxrnn.decoded_lengths(outputs, END)
    outputs = jnp.where(jaxrnn.sequence_mask(out_lengths, max_length), outputs, PAD)
    n = outputs.shape[1]
    for b in range(2):
        log_probs = sequence_log_prob(
            params,
            jnp.repeat(source[:, b : b + 1], n, 1),
            jnp.repeat(source_lengths[b], n),
            outputs,
            out_lengths,
        )
        best = int(jnp.argmax(log_probs))
        np.testing.assert_allclose(scores[b], log_probs[best], rtol=1e-5)
        np.testing.assert_array_equal(tokens[:, b], outputs[:, best])
        assert int(lengths[b]) == int(out_lengths[best])
    greedy, _ = jaxrnn.greedy_decode(
        params, source, source_lengths, max_length=max_length, start_token=START, end_token=END
    )
    beam_one, _, _ = jaxrnn.beam_search(
        params,
        source,
        source_lengths,
        beam_size=1,
        max_length=max_length,
        start_token=START,
        end_token=END,
    )
    np.testing.assert_array_equal(beam_one, greedy)


def test_learns_to_copy_and_greedy_decode_reproduces_the_input():
    """End to end: train on random copy data; the loss falls, greedy decoding copies."""
    params = jaxrnn.init_seq2seq(
        jax.random.key(0),
        VOCAB,
        VOCAB,
        embed_size=8,
        hidden_size=32,
        cell="gru",
        bidirectional_encoder=True,
    )
    loss_fn = functools.partial(jaxrnn.seq2seq_loss, start_token=START)
    train = jaxrnn.make_train_step(loss_fn, optax.adam(1e-2), max_grad_norm=1.0)
    make = jax.jit(copy_batch, static_argnums=1)
    batches = lambda epoch: (make(jax.random.key(step), 64) for step in range(150))  # noqa: E731
    state, history = jaxrnn.fit(train, train.init(params), batches, progress=False)
    assert history[-1] < 0.05 * history[0]
    source, source_lengths, targets, target_lengths = copy_batch(jax.random.key(10**6), 256)
    tokens, lengths = jax.jit(
        functools.partial(
            jaxrnn.greedy_decode, max_length=MAX_SOURCE + 1, start_token=START, end_token=END
        )
    )(state.params, source, source_lengths)
    valid = jaxrnn.sequence_mask(target_lengths, MAX_SOURCE + 1)
    exact = jnp.all(jnp.where(valid, tokens == targets, True), 0) & (lengths == target_lengths)
    assert float(exact.mean()) > 0.9  # chance is about 4**-length


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda p: init(dict(bridge="attention")),
            ValueError,
            "init_seq2seq: bridge must be one of 'concat', 'sum', 'linear'; got 'attention'",
        ),
        (
            lambda p: init(dict(decoder_hidden_size=3)),
            ValueError,
            "init_seq2seq: decoder_hidden_size must be None unless bridge='linear'; got 3",
        ),
        (
            lambda p: jaxrnn.encode(p, jnp.zeros((3, 2))),
            ValueError,
            r"encode: source must be integer tokens of shape \(time, \.\.\.\); got float32\(3, 2\)",
        ),
        (
            lambda p: jaxrnn.beam_search(
                p,
                jnp.zeros((3, 2), int),
                beam_size=0,
                max_length=2,
                start_token=START,
                end_token=END,
            ),
            TypeError,
            "beam_search: beam_size must be a positive int; got 0",
        ),
    ],
)
def test_errors(call, error, match):
    params = init(CONFIGS[2])
    with pytest.raises(error, match=match):
        call(params)
