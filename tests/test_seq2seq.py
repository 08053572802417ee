"""Encoder–decoder: bridges, teacher forcing, greedy/sample/beam decoding, dropout in
training (a key split between encoder and decoder), and learning to copy.

Decoders are checked against teacher forcing (a greedy token is the arg-max of the logits
the decoder gives when it is fed those same tokens), and beam search against brute force.
"""

from __future__ import annotations

import dataclasses
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
    logits = jaxrnn.seq2seq.seq2seq_logits(
        params, source, source_lengths, tokens, lengths, start_token=START
    )
    nll = jaxrnn.losses.sequence_softmax_cross_entropy(
        logits, tokens, lengths=lengths, reduction="none"
    )
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
    return jaxrnn.seq2seq.init_seq2seq(
        jax.random.key(seed), VOCAB, VOCAB, embed_size=3, hidden_size=hidden_size, **config
    )


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_shapes_bridge_and_gradients_reach_every_part(config):
    params = init(config)
    source, source_lengths, targets, target_lengths = copy_batch(jax.random.key(1), 3)
    encoder_carry, encoder_ys = jaxrnn.seq2seq.encode(params, source, source_lengths)
    decoder_carry = jaxrnn.seq2seq.bridge_carry(params, encoder_carry)
    expected = jax.eval_shape(lambda: jaxrnn.init_carry(params.decoder, (3,)))
    assert jax.tree.structure(decoder_carry) == jax.tree.structure(expected)
    assert [a.shape for a in jax.tree.leaves(decoder_carry)] == [
        a.shape for a in jax.tree.leaves(expected)
    ]
    assert encoder_ys.shape[:2] == source.shape
    loss_fn = functools.partial(jaxrnn.seq2seq.seq2seq_loss, start_token=START)
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
    encoder_carry, _ = jaxrnn.seq2seq.encode(params, source, source_lengths)
    forward, backward = encoder_carry.forward, encoder_carry.backward
    combine = {"concat": lambda f, b: jnp.concatenate([f, b], -1), "sum": jnp.add}[bridge]
    bridged = jaxrnn.seq2seq.bridge_carry(params, encoder_carry)
    np.testing.assert_allclose(bridged.h, combine(forward.h, backward.h))
    np.testing.assert_allclose(bridged.c, combine(forward.c, backward.c))


def test_unidirectional_bridge_hands_the_carry_over():
    params = init(dict(cell="gru", num_layers=2))
    source, source_lengths, _, _ = copy_batch(jax.random.key(2), 3)
    encoder_carry, _ = jaxrnn.seq2seq.encode(params, source, source_lengths)
    bridged = jaxrnn.seq2seq.bridge_carry(params, encoder_carry)
    jax.tree.map(np.testing.assert_array_equal, bridged, encoder_carry)


def test_padding_tokens_change_nothing():
    params = init(CONFIGS[1])
    source, source_lengths, targets, target_lengths = copy_batch(jax.random.key(3), 4)
    source_junk = jnp.where(jaxrnn.sequence_mask(source_lengths, MAX_SOURCE), source, VOCAB - 1)
    valid_targets = jaxrnn.sequence_mask(target_lengths, MAX_SOURCE + 1)
    targets_junk = jnp.where(valid_targets, targets, FIRST)
    loss_fn = jax.jit(functools.partial(jaxrnn.seq2seq.seq2seq_loss, start_token=START))
    np.testing.assert_allclose(
        loss_fn(params, source, source_lengths, targets, target_lengths),
        loss_fn(params, source_junk, source_lengths, targets_junk, target_lengths),
        rtol=1e-6,
    )


def test_shift_right():
    targets = jnp.array([[5, 6], [7, 8], [2, 0]])
    np.testing.assert_array_equal(
        jaxrnn.seq2seq.shift_right(targets, START), [[1, 1], [5, 6], [7, 8]]
    )


def test_greedy_is_argmax_of_teacher_forcing_on_its_own_output_and_pads_after_end():
    # An untrained model ends rarely; make END likely with a large readout bias.
    params = init(CONFIGS[1], seed=4)
    bias = params.readout.b_y.at[END].set(0.5)
    params = params.__class__(
        **{**vars(params), "readout": jaxrnn.heads.ReadoutParams(params.readout.w_y * 3, bias)}
    )
    source, source_lengths, _, _ = copy_batch(jax.random.key(5), 16)
    decode = jax.jit(
        functools.partial(
            jaxrnn.seq2seq.greedy_decode,
            max_length=6,
            start_token=START,
            end_token=END,
            pad_token=PAD,
        )
    )
    tokens, lengths = decode(params, source, source_lengths)
    assert tokens.shape == (6, 16) and bool(jnp.any(lengths < 6)) and bool(jnp.any(lengths > 1))
    logits = jaxrnn.seq2seq.seq2seq_logits(
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
            jaxrnn.seq2seq.sample_decode,
            max_length=5,
            start_token=START,
            end_token=END,
            temperature=3.0,
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
    params = jaxrnn.seq2seq.init_seq2seq(
        jax.random.key(9), vocab, vocab, embed_size=3, hidden_size=4, cell="gru"
    )
    params = params.__class__(
        **{
            **vars(params),
            "readout": jaxrnn.heads.ReadoutParams(params.readout.w_y * 4, params.readout.b_y),
        }
    )
    source, source_lengths, _, _ = copy_batch(jax.random.key(10), 2, vocab=vocab, max_source=3)
    tokens, lengths, scores = jaxrnn.seq2seq.beam_search(
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
    out_lengths = jaxrnn.decoding.decoded_lengths(outputs, END)
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
    greedy, _ = jaxrnn.seq2seq.greedy_decode(
        params, source, source_lengths, max_length=max_length, start_token=START, end_token=END
    )
    beam_one, _, _ = jaxrnn.seq2seq.beam_search(
        params,
        source,
        source_lengths,
        beam_size=1,
        max_length=max_length,
        start_token=START,
        end_token=END,
    )
    np.testing.assert_array_equal(beam_one, greedy)


def test_learns_to_copy_with_dropout_and_greedy_decode_reproduces_the_input():
    """End to end: train a two-layer model with dropout (a fresh key every step) on random
    copy data; the loss falls, and greedy decoding (no dropout) copies."""
    params = jaxrnn.seq2seq.init_seq2seq(
        jax.random.key(0),
        VOCAB,
        VOCAB,
        embed_size=8,
        hidden_size=32,
        cell="gru",
        num_layers=2,
        bidirectional_encoder=True,
        dropout=0.2,
    )

    def loss_fn(params, source, source_lengths, targets, target_lengths, key):
        return jaxrnn.seq2seq.seq2seq_loss(
            params, source, source_lengths, targets, target_lengths, start_token=START, key=key
        )

    train = jaxrnn.train.make_train_step(loss_fn, optax.adam(1e-2), max_grad_norm=1.0)
    make = jax.jit(copy_batch, static_argnums=1)

    def batches(epoch):
        for step in range(150):
            yield (*make(jax.random.key(step), 64), jax.random.key(10**5 + step))

    state, history = jaxrnn.train.fit(train, train.init(params), batches, progress=False)
    assert np.mean(history[-10:]) < 0.05 * history[0]
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(state.params))
    source, source_lengths, targets, target_lengths = copy_batch(jax.random.key(10**6), 256)
    tokens, lengths = jax.jit(
        functools.partial(
            jaxrnn.seq2seq.greedy_decode,
            max_length=MAX_SOURCE + 1,
            start_token=START,
            end_token=END,
        )
    )(state.params, source, source_lengths)
    valid = jaxrnn.sequence_mask(target_lengths, MAX_SOURCE + 1)
    exact = jnp.all(jnp.where(valid, tokens == targets, True), 0) & (lengths == target_lengths)
    assert float(exact.mean()) > 0.9  # chance is about 4**-length


# Dropout in training: init_seq2seq(dropout=) between stacked layers, regularize()d cells.
RATES = dict(recurrent_dropout=0.3, zoneout_h=0.2)
DROPOUT_CONFIGS = {
    # PyTorch's encoder-decoder: dropout between layers, here also in a regularize()d encoder
    "stacked": dict(
        cell="lstm",
        num_layers=2,
        bidirectional_encoder=True,
        bridge="linear",
        decoder_hidden_size=5,
        dropout=0.5,
        regularize="encoder",
    ),
    # an attention decoder whose inner layers are regularize()d too
    "attention": dict(
        cell="gru",
        num_layers=2,
        bidirectional_encoder=True,
        attention="bahdanau",
        dropout=0.5,
        regularize="decoder",
    ),
}


def init_dropout(name, dropout=None):
    config = dict(DROPOUT_CONFIGS[name])
    regularized = config.pop("regularize")
    if dropout is not None:
        config["dropout"] = dropout
    params = init(config)
    if regularized == "encoder":
        return dataclasses.replace(
            params, encoder=jaxrnn.regularization.regularize(params.encoder, **RATES)
        )
    decoder = params.decoder
    decoder = dataclasses.replace(
        decoder, cell=jaxrnn.regularization.regularize(decoder.cell, **RATES)
    )
    return dataclasses.replace(params, decoder=decoder)


@jax.jit
def logits_by_hand(params, source, source_lengths, targets, target_lengths, keys):
    """The module docstring's model with unroll's dropout: the encoder and the decoder get
    a key each (or None)."""
    encoder_key, decoder_key = keys
    embedded = params.source_embedding[source]
    encoder_carry, encoder_ys = jaxrnn.unroll(
        params.encoder, None, embedded, lengths=source_lengths, key=encoder_key
    )
    decoder = params.decoder
    if isinstance(decoder, jaxrnn.attention.AttentionCell):
        decoder = jaxrnn.attention.with_memory(decoder, encoder_ys, source_lengths)
    carry = jaxrnn.seq2seq.bridge_carry(params, encoder_carry)
    inputs = params.target_embedding[jaxrnn.seq2seq.shift_right(targets, START)]
    _, ys = jaxrnn.unroll(decoder, carry, inputs, lengths=target_lengths, key=decoder_key)
    return jaxrnn.heads.readout(params.readout, ys)


logits_fn = jax.jit(functools.partial(jaxrnn.seq2seq.seq2seq_logits, start_token=START))


@pytest.mark.parametrize("name", list(DROPOUT_CONFIGS))
def test_without_a_key_nothing_is_dropped(name):
    """dropout= changes no weight, and without a key (evaluation) the model is the
    deterministic one of the module docstring."""
    params = init_dropout(name)
    undropped = init_dropout(name, dropout=0.0)
    for leaf, undropped_leaf in zip(
        jax.tree.leaves(params), jax.tree.leaves(undropped), strict=True
    ):
        np.testing.assert_array_equal(leaf, undropped_leaf)
    batch = copy_batch(jax.random.key(20), 3)
    np.testing.assert_array_equal(
        logits_fn(params, *batch), logits_by_hand(params, *batch, (None, None))
    )


@pytest.mark.parametrize("name", list(DROPOUT_CONFIGS))
def test_key_drops_in_encoder_and_decoder_with_their_own_keys(name):
    """seq2seq_logits(key=k) is the model with k_enc, k_dec = split(k) given to the
    encoder's and the decoder's unroll, and each of them drops; one key reproduces it.
    (Training with dropout: test_learns_to_copy_with_dropout_...)"""
    params = init_dropout(name)
    batch = copy_batch(jax.random.key(21), 3)
    key, other_key = jax.random.split(jax.random.key(22))
    logits = logits_fn(params, *batch, key=key)
    np.testing.assert_array_equal(logits, logits_fn(params, *batch, key=key))
    assert not np.allclose(logits, logits_fn(params, *batch, key=other_key))
    assert not np.allclose(logits, logits_fn(params, *batch))
    encoder_key, decoder_key = jax.random.split(key)
    expected = logits_by_hand(params, *batch, (encoder_key, decoder_key))
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    # either key alone changes the logits: both halves drop, independently
    for keys in [(other_key, decoder_key), (encoder_key, other_key)]:
        assert not np.allclose(logits, logits_by_hand(params, *batch, keys))


def test_regularizing_a_bound_attention_decoder_says_to_regularize_its_cell():
    """regularize() checks a cell on one sequence, which a decoder bound to a batch of
    memories cannot run: the error says what to regularize instead, and that works."""
    decoder = jaxrnn.attention.init_attention_cell(
        jax.random.key(23), "gru", 3, 4, 4, kind="luong_dot"
    )
    decoder = jaxrnn.attention.with_memory(
        decoder, jax.random.normal(jax.random.key(24), (5, 3, 4))
    )
    with pytest.raises(
        ValueError,
        match=r"regularize: params must hold cells that run on any batch shape \(an attention "
        r"decoder bound to its memory runs on the memory's only: regularize its inner cell "
        r"instead, dataclasses.replace\(decoder, "
        r"cell=jaxrnn.regularization.regularize\(decoder.cell, \.\.\.\)\)\); got AttentionCell",
    ):
        jaxrnn.regularization.regularize(decoder, output_dropout=0.2)
    fixed = dataclasses.replace(
        decoder, cell=jaxrnn.regularization.regularize(decoder.cell, output_dropout=0.5)
    )
    xs = jax.random.normal(jax.random.key(25), (2, 3, 3))
    _, ys = jaxrnn.unroll(fixed, None, xs, key=jax.random.key(26))
    assert not np.allclose(ys, jaxrnn.unroll(decoder, None, xs)[1]), "no dropout"


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
        *[
            (
                lambda p, rate=rate: init(dict(num_layers=2, dropout=rate)),
                ValueError,
                rf"init_seq2seq: dropout must be a number in \[0, 1\); got {rate!r}",
            )
            for rate in (1.0, -0.1, True, "0.5")
        ],
        (
            lambda p: init(dict(dropout=0.3)),
            ValueError,
            r"init_seq2seq: dropout must be 0 with num_layers=1 \(it acts between the stacked "
            r"layers of the encoder and of the decoder\); got 0.3",
        ),
        *[
            (
                call,
                TypeError,
                rf"{where}: key must be a single PRNG key \(jax.random.key\(seed\)\) or None; "
                rf"got {got}",
            )
            for where, call, got in [
                (
                    "seq2seq_loss",
                    lambda p: jaxrnn.seq2seq.seq2seq_loss(
                        p, jnp.zeros((3, 2), int), None, jnp.ones((2, 2), int), start_token=1, key=0
                    ),
                    "int",
                ),
                (
                    "seq2seq_logits",
                    lambda p: jaxrnn.seq2seq.seq2seq_logits(
                        p,
                        jnp.zeros((3, 2), int),
                        None,
                        jnp.ones((2, 2), int),
                        start_token=1,
                        key=jax.random.split(jax.random.key(0)),
                    ),
                    r"key<fry>\[2\]",
                ),
                (
                    "encode",
                    lambda p: jaxrnn.seq2seq.encode(p, jnp.zeros((3, 2), int), key=1.0),
                    "float",
                ),
            ]
        ],
        (
            lambda p: jaxrnn.seq2seq.encode(p, jnp.zeros((3, 2))),
            ValueError,
            r"encode: source must be integer tokens of shape \(time, \.\.\.\); got float32\(3, 2\)",
        ),
        (
            lambda p: jaxrnn.seq2seq.beam_search(
                p,
                jnp.zeros((3, 2), int),
                beam_size=0,
                max_length=2,
                start_token=START,
                end_token=END,
            ),
            ValueError,
            "beam_search: beam_size must be a positive int; got 0",
        ),
    ],
)
def test_errors(call, error, match):
    params = init(CONFIGS[2])
    with pytest.raises(error, match=match):
        call(params)
