"""Attention: scores against NumPy, masking of padding, attention decoders against a Python
loop of the papers' equations, decoding with attention, and learning to reverse.

The loop oracle builds every step from ``cell_step`` on the inner cell and ``attend``
(itself checked against NumPy), so it shares no code with ``AttentionCell.attend_step``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import padded, random_carry
from jax.test_util import check_grads

import jaxrnn

KINDS = ["bahdanau", "luong_dot", "luong_general"]
PAD, START, END, FIRST = 0, 1, 2, 3
SOURCE_TIME, QUERY, MEMORY = 5, 4, 4


def attend_numpy(params, query, memory, lengths):
    """One query at a time: scores over the valid positions, softmax, weighted mean."""
    w = {k: None if a is None else np.asarray(a) for k, a in vars(params).items()}
    query, memory = np.asarray(query), np.asarray(memory)
    batch_shape = query.shape[:-1]
    source_time = memory.shape[0]
    context = np.zeros((*batch_shape, memory.shape[-1]))
    weights = np.zeros((*batch_shape, source_time))
    for b in np.ndindex(*batch_shape):
        length = source_time if lengths is None else int(np.asarray(lengths)[b])
        q = query[b]
        ms = [memory[(s, *b)] for s in range(length)]
        if params.kind == "bahdanau":
            e = [w["v"] @ np.tanh(q @ w["w_query"] + m @ w["w_memory"] + w["b"]) for m in ms]
        elif params.kind == "luong_general":
            e = [q @ w["w_query"] @ m for m in ms]
        else:
            e = [q @ m for m in ms]
        if not ms:
            continue
        a = np.exp(np.array(e) - max(e))
        a /= a.sum()
        weights[b][:length] = a
        context[b] = sum(a_s * m for a_s, m in zip(a, ms, strict=True))
    return context, weights


def attention_params(kind, seed=0, query_size=QUERY, memory_size=MEMORY):
    size = 3 if kind == "bahdanau" else None
    return jaxrnn.attention.init_attention(
        jax.random.key(seed), query_size, memory_size, kind=kind, attention_size=size
    )


@pytest.mark.parametrize("batch_shape", [(), (2, 3)], ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_attend_matches_numpy_and_masks_padding(kind, batch_shape, x64):
    params = jax.tree.map(lambda a: a.astype(jnp.float64), attention_params(kind))
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    query = jax.random.normal(k1, (*batch_shape, QUERY), jnp.float64)
    lengths = jax.random.randint(k2, batch_shape, 0, SOURCE_TIME + 1)
    lengths = lengths.at[(0,) * len(batch_shape)].set(SOURCE_TIME)  # one full, one empty
    if batch_shape:
        lengths = lengths.at[(-1,) * len(batch_shape)].set(0)
    memory = padded(k3, SOURCE_TIME, lengths, MEMORY, dtype=jnp.float64)
    context, weights = jax.jit(jaxrnn.attention.attend)(params, query, memory, lengths)
    expected_context, expected_weights = attend_numpy(params, query, memory, lengths)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(context, expected_context, rtol=1e-12, atol=1e-14)
    valid = jnp.arange(SOURCE_TIME) < lengths[..., None]
    assert bool(jnp.all(jnp.where(valid, True, weights == 0))), "weight on padding"
    np.testing.assert_allclose(weights.sum(-1), jnp.where(lengths > 0, 1.0, 0.0), rtol=1e-12)
    full_context, _ = jax.jit(jaxrnn.attention.attend)(params, query, memory)  # every step valid
    np.testing.assert_allclose(full_context, attend_numpy(params, query, memory, None)[0])


@pytest.mark.parametrize("kind", KINDS)
def test_attend_gradients(kind, x64):
    params = jax.tree.map(lambda a: a.astype(jnp.float64), attention_params(kind))
    k1, k2 = jax.random.split(jax.random.key(1))
    lengths = jnp.array([5, 2, 0])
    query = jax.random.normal(k1, (3, QUERY), jnp.float64)
    memory = padded(k2, SOURCE_TIME, lengths, MEMORY, dtype=jnp.float64)
    attend = jax.jit(lambda p, q, m: jaxrnn.attention.attend(p, q, m, lengths))
    check_grads(attend, (params, query, memory), order=1, modes=["rev"])


@pytest.mark.parametrize("kind", KINDS)
def test_padding_content_never_reaches_results_or_gradients(kind):
    params = attention_params(kind)
    lengths = jnp.array([5, 2, 0])
    k1, k2 = jax.random.split(jax.random.key(2))
    query = jax.random.normal(k1, (3, QUERY))
    clean = padded(k2, SOURCE_TIME, lengths, MEMORY)
    dirty = padded(k2, SOURCE_TIME, lengths, MEMORY, fill=jnp.nan)

    def loss(p, q, m):
        context, weights = jaxrnn.attention.attend(p, q, m, lengths)
        return jnp.sum(jnp.sin(context)) + jnp.sum(weights * jnp.arange(SOURCE_TIME))

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    clean_value, clean_grads = value_and_grad(params, query, clean)
    dirty_value, dirty_grads = value_and_grad(params, query, dirty)
    assert bool(jnp.isfinite(dirty_value)) and float(clean_value) == float(dirty_value)
    jax.tree.map(np.testing.assert_array_equal, clean_grads, dirty_grads)
    memory_grad = dirty_grads[2]
    valid = jaxrnn.sequence_mask(lengths, SOURCE_TIME)
    assert bool(jnp.all(jnp.where(valid[..., None], True, memory_grad == 0)))


# An attention decoder, teacher-forced, against a loop of the papers' equations.
DECODERS = [
    dict(cell="gru", kind="bahdanau"),
    dict(cell="lstm", kind="bahdanau", num_layers=2, dropout=0.5),  # no key: no dropout
    dict(cell="lstm", kind="luong_dot", attentional_size=3),
    dict(cell="rnn", kind="luong_general", num_layers=2, input_feeding=False),
]


def decoder_id(config):
    return "-".join(f"{v}" for v in config.values())


def top_h(inner, carry):
    carry = carry[-1] if isinstance(inner, jaxrnn.Stack) else carry
    return carry.h if isinstance(carry, jaxrnn.LSTMState) else carry


def decode_loop(decoder, memory, memory_lengths, carry, xs, lengths):
    """The step of the module docstring, written out; masked as unroll masks."""
    inner, ys, weights = decoder.cell, [], []
    for t in range(xs.shape[0]):
        x, cell_carry, attentional = xs[t], carry.cell, carry.attentional
        if decoder.attention.kind == "bahdanau":
            c, a = jaxrnn.attention.attend(
                decoder.attention, top_h(inner, cell_carry), memory, memory_lengths
            )
            cell_carry, h = jaxrnn.cell_step(inner, cell_carry, jnp.concatenate([x, c], -1))
            y = jnp.concatenate([h, c], -1)
        else:
            x_in = jnp.concatenate([x, attentional], -1) if decoder.input_feeding else x
            cell_carry, h = jaxrnn.cell_step(inner, cell_carry, x_in)
            c, a = jaxrnn.attention.attend(decoder.attention, h, memory, memory_lengths)
            w_c, b_c = decoder.combine.w_y, decoder.combine.b_y
            y = jnp.tanh(jnp.concatenate([c, h], -1) @ w_c + b_c)
            attentional = y if decoder.input_feeding else None
        valid = t < lengths
        new = jaxrnn.attention.AttentionState(cell_carry, attentional)
        carry = jax.tree.map(
            lambda n, o, valid=valid: jnp.where(valid.reshape(-1, *[1] * (n.ndim - 1)), n, o),
            new,
            carry,
        )
        ys.append(jnp.where(valid[:, None], y, 0))
        weights.append(jnp.where(valid[:, None], a, 0))
    return carry, jnp.stack(ys), jnp.stack(weights)


@pytest.mark.parametrize("config", DECODERS, ids=decoder_id)
def test_teacher_forced_decoder_equals_loop_of_equations(config):
    config = dict(config)
    cell, kind = config.pop("cell"), config.pop("kind")
    decoder = jaxrnn.attention.init_attention_cell(
        jax.random.key(3), cell, 3, MEMORY, MEMORY, kind=kind, **config
    )
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    memory_lengths = jnp.array([5, 2, 3])
    lengths = jnp.array([6, 6, 2])
    memory = padded(k1, SOURCE_TIME, memory_lengths, MEMORY, fill=jnp.nan)
    xs = jax.random.normal(k2, (6, 3, 3))
    bound = jaxrnn.attention.with_memory(decoder, memory, memory_lengths)
    start = jax.tree.map(
        lambda a: jax.random.normal(k3, a.shape, a.dtype), jaxrnn.init_carry(bound, (3,))
    )
    carry, ys = jax.jit(functools.partial(jaxrnn.unroll, lengths=lengths))(bound, start, xs)
    loop_carry, loop_ys, loop_weights = jax.jit(decode_loop)(
        decoder, memory, memory_lengths, start, xs, lengths
    )
    assert ys.shape == (6, 3, decoder.output_size)
    np.testing.assert_allclose(ys, loop_ys, rtol=1e-5, atol=1e-6)
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), carry, loop_carry
    )
    with_alignments = functools.partial(jaxrnn.attention.unroll_with_alignments, lengths=lengths)
    _, ys_too, alignments = jax.jit(with_alignments)(bound, start, xs)
    np.testing.assert_array_equal(ys_too, ys)
    np.testing.assert_allclose(alignments, loop_weights, rtol=1e-5, atol=1e-7)
    # cell_step is the same step
    _, y0 = jax.jit(jaxrnn.cell_step)(bound, start, xs[0])
    np.testing.assert_allclose(y0, ys[0], rtol=1e-5, atol=1e-6)


# Encoder–decoders with attention.
SEQ2SEQ = [
    dict(cell="gru", attention="bahdanau", bidirectional_encoder=True, bridge="linear"),
    dict(cell="lstm", attention="luong_dot", num_layers=2),
    dict(cell="gru", attention="luong_general", bidirectional_encoder=True, bridge="sum"),
]
VOCAB = 7


def init_seq2seq(config, seed=0, hidden_size=4):
    return jaxrnn.seq2seq.init_seq2seq(
        jax.random.key(seed), VOCAB, VOCAB, embed_size=3, hidden_size=hidden_size, **config
    )


def source_batch(key, batch, max_source=4):
    k1, k2 = jax.random.split(key)
    lengths = jax.random.randint(k1, (batch,), 1, max_source + 1).at[0].set(max_source)
    tokens = jax.random.randint(k2, (max_source, batch), FIRST, VOCAB)
    return jnp.where(jaxrnn.sequence_mask(lengths, max_source), tokens, PAD), lengths


# END's readout bias, chosen per model so that some greedy outputs end early, some late.
END_BIAS = {"bahdanau": 0.5, "luong_dot": 0.4, "luong_general": 3.0}


def sharpened(params, kind):
    """Larger logits, and END likely, so decoding ends at different times."""
    out = params.readout
    readout = jaxrnn.heads.ReadoutParams(out.w_y * 4, out.b_y.at[END].set(END_BIAS[kind]))
    return params.__class__(**{**vars(params), "readout": readout})


# luong_dot's seq2seq path differs from luong_general's only in the score, which has no
# weights: the decoding test below covers it.
@pytest.mark.parametrize("config", SEQ2SEQ[::2], ids=lambda c: c["attention"])
def test_seq2seq_gradients_reach_attention_and_encoder(config):
    params = init_seq2seq(config)
    source, source_lengths = source_batch(jax.random.key(5), 3)
    targets = jax.random.randint(jax.random.key(6), (5, 3), FIRST, VOCAB)
    loss_fn = jax.jit(
        jax.value_and_grad(functools.partial(jaxrnn.seq2seq.seq2seq_loss, start_token=START))
    )
    loss, grads = loss_fn(params, source, source_lengths, targets, jnp.array([5, 2, 4]))
    assert bool(jnp.isfinite(loss))
    for part in (grads.encoder, grads.source_embedding, grads.decoder.cell, grads.readout):
        assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(part))
    attention_grads = jax.tree.leaves((grads.decoder.attention, grads.decoder.combine))
    assert attention_grads and all(bool(jnp.any(g != 0)) for g in attention_grads)
    # junk in the source padding changes nothing
    junk = jnp.where(jaxrnn.sequence_mask(source_lengths, 4), source, VOCAB - 1)
    junk_loss, _ = loss_fn(params, junk, source_lengths, targets, jnp.array([5, 2, 4]))
    np.testing.assert_allclose(junk_loss, loss, rtol=1e-6)
    alignments = jax.jit(functools.partial(jaxrnn.seq2seq.seq2seq_alignments, start_token=START))(
        params, source, source_lengths, targets, jnp.array([5, 2, 4])
    )
    valid = jaxrnn.sequence_mask(source_lengths, 4).T[None]  # (1, batch, source_time)
    assert bool(jnp.all(jnp.where(valid, True, alignments == 0)))
    np.testing.assert_allclose(alignments[:2].sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("config", SEQ2SEQ[:2], ids=lambda c: c["attention"])
def test_greedy_is_stepwise_argmax_and_beams_read_their_own_source(config):
    """Greedy decoding equals argmax step by step, beam search with one beam equals it,
    and a wider beam's scores are the teacher-forced log-probabilities of its outputs:
    so each of the batch * beam rows reads its own source's memory."""
    params = sharpened(init_seq2seq(config, seed=1), config["attention"])
    source, source_lengths = source_batch(jax.random.key(7), 6)
    max_length = 5
    options = dict(max_length=max_length, start_token=START, end_token=END, pad_token=PAD)
    tokens, lengths = jax.jit(functools.partial(jaxrnn.seq2seq.greedy_decode, **options))(
        params, source, source_lengths
    )

    @jax.jit
    def by_hand(params, source, source_lengths):
        """Step by step: the attention decoder bound to the encoder's outputs."""
        encoder_carry, encoder_ys = jaxrnn.seq2seq.encode(params, source, source_lengths)
        decoder = jaxrnn.attention.with_memory(params.decoder, encoder_ys, source_lengths)
        carry = jaxrnn.seq2seq.bridge_carry(params, encoder_carry)
        token = jnp.full(6, START)
        finished = jnp.zeros(6, bool)
        expected = []
        for _ in range(max_length):
            carry, y = jaxrnn.cell_step(decoder, carry, params.target_embedding[token])
            token = jnp.where(
                finished, PAD, jnp.argmax(jaxrnn.heads.readout(params.readout, y), -1)
            )
            finished = finished | (token == END)
            expected.append(token)
        return jnp.stack(expected)

    np.testing.assert_array_equal(tokens, by_hand(params, source, source_lengths))
    assert bool(jnp.any(lengths < max_length)) and bool(jnp.any(lengths > 1))
    beam_one, _, _ = jax.jit(functools.partial(jaxrnn.seq2seq.beam_search, beam_size=1, **options))(
        params, source, source_lengths
    )
    np.testing.assert_array_equal(beam_one, tokens)
    beams, beam_lengths, scores = jax.jit(
        functools.partial(jaxrnn.seq2seq.beam_search, beam_size=3, **options)
    )(params, source, source_lengths)
    logits = jax.jit(functools.partial(jaxrnn.seq2seq.seq2seq_logits, start_token=START))(
        params, source, source_lengths, beams, beam_lengths
    )
    nll = jaxrnn.losses.sequence_softmax_cross_entropy(
        logits, beams, lengths=beam_lengths, reduction="none"
    )
    np.testing.assert_allclose(-nll.sum(0), scores, rtol=1e-4, atol=1e-5)
    assert bool(jnp.any(beams != tokens)), "the wider beam should find other outputs"


# Sampling from an attention decoder.
SAMPLED = [SEQ2SEQ[0], SEQ2SEQ[2]]  # Bahdanau; Luong (general) with input feeding
DECODE = dict(start_token=START, end_token=END, pad_token=PAD)


@pytest.mark.parametrize("config", SAMPLED, ids=lambda c: c["attention"])
def test_sample_decode_with_attention(config):
    """Six sources, each repeated 2000 times in one batch (copy c of source b is row
    c * 6 + b), decoded by sampling:

    - the tokens are a step-by-step loop's (bind the memory, step the decoder, whose
      carry feeds h~_{t-1} back for Luong, draw token t with the t-th of
      split(key, max_length) as generate documents, PAD after END);
    - a key reproduces its tokens, another key gives others;
    - the first tokens' frequencies are softmax(z_1 / temperature) within 5 standard
      errors (fixed keys: the same draws on every run), a bound that rejects the
      untempered softmax(z_1);
    - at temperature 1e-6 it is greedy decoding (the sharpened logits lead by > 1e-4,
      far beyond 1e-6 times the Gumbel noise that categorical adds);
    - a token used only in the source padding, embedded as NaN, changes no sample.
    """
    params = sharpened(init_seq2seq(config, seed=1), config["attention"])
    base_source, base_lengths = source_batch(jax.random.key(7), 6)
    junk = VOCAB - 1  # kept out of the sources, to be put in their padding below
    base_source = jnp.where(base_source == junk, FIRST, base_source)
    copies, max_length = 2000, 4
    source, source_lengths = jnp.tile(base_source, (1, copies)), jnp.tile(base_lengths, copies)
    batch = source.shape[1]
    # temperature is a traced argument: one compilation for every temperature
    sample = jax.jit(
        functools.partial(jaxrnn.seq2seq.sample_decode, max_length=max_length, **DECODE)
    )

    @jax.jit
    def by_hand(params, source, source_lengths, key, temperature):
        encoder_carry, encoder_ys = jaxrnn.seq2seq.encode(params, source, source_lengths)
        decoder = jaxrnn.attention.with_memory(params.decoder, encoder_ys, source_lengths)
        carry = jaxrnn.seq2seq.bridge_carry(params, encoder_carry)
        token, finished, tokens, all_logits = jnp.full(batch, START), jnp.zeros(batch, bool), [], []
        for step_key in jax.random.split(key, max_length):
            carry, y = jaxrnn.cell_step(decoder, carry, params.target_embedding[token])
            logits = jaxrnn.heads.readout(params.readout, y)
            token = jax.random.categorical(step_key, logits / temperature, axis=-1)
            token = jnp.where(finished, PAD, token)
            finished = finished | (token == END)
            tokens.append(token)
            all_logits.append(logits)
        return jnp.stack(tokens), all_logits[0]

    k1, k2 = jax.random.split(jax.random.key(8))
    temperature = 0.7
    tokens, lengths = sample(params, source, source_lengths, key=k1, temperature=temperature)
    expected_tokens, first_logits = by_hand(params, source, source_lengths, k1, temperature)
    np.testing.assert_array_equal(tokens, expected_tokens)
    np.testing.assert_array_equal(lengths, jaxrnn.decoding.decoded_lengths(tokens, END))
    assert bool(jnp.any(lengths < max_length)) and bool(jnp.any(tokens == PAD))
    again, _ = sample(params, source, source_lengths, key=k1, temperature=temperature)
    np.testing.assert_array_equal(again, tokens)
    other, _ = sample(params, source, source_lengths, key=k2, temperature=temperature)
    assert float(jnp.mean(other != tokens)) > 0.1

    z_1 = first_logits[:6]  # the copies of a source have the same logits
    np.testing.assert_allclose(first_logits.reshape(copies, 6, VOCAB), z_1[None].repeat(copies, 0))
    expected = jax.nn.softmax(z_1 / temperature, -1)  # (source, vocab)
    frequencies = jax.nn.one_hot(tokens[0].reshape(copies, 6), VOCAB).mean(0)
    bound = 5 * jnp.sqrt(expected * (1 - expected) / copies) + 1e-3
    assert bool(jnp.all(jnp.abs(frequencies - expected) <= bound)), (frequencies, expected)
    untempered = jax.nn.softmax(z_1, -1)
    assert bool(jnp.any(jnp.abs(frequencies - untempered) > bound)), "the check has no power"

    greedy = jax.jit(
        functools.partial(jaxrnn.seq2seq.greedy_decode, max_length=max_length, **DECODE)
    )
    greedy_tokens, greedy_lengths = greedy(params, source, source_lengths)
    cold, cold_lengths = sample(params, source, source_lengths, key=k2, temperature=1e-6)
    np.testing.assert_array_equal(cold, greedy_tokens)
    np.testing.assert_array_equal(cold_lengths, greedy_lengths)

    assert not bool(jnp.any(source == junk)) and bool(jnp.any(source_lengths < source.shape[0]))
    poisoned = params.__class__(
        **{**vars(params), "source_embedding": params.source_embedding.at[junk].set(jnp.nan)}
    )
    dirty = jnp.where(jaxrnn.sequence_mask(source_lengths, source.shape[0]), source, junk)
    dirty_tokens, dirty_lengths = sample(
        poisoned, dirty, source_lengths, key=k1, temperature=temperature
    )
    np.testing.assert_array_equal(dirty_tokens, tokens)
    np.testing.assert_array_equal(dirty_lengths, lengths)


def reverse_batch(key, batch, max_source=5, vocab=10):
    """Source: random data tokens; target: the source reversed, then END, then PAD."""
    k1, k2 = jax.random.split(key)
    lengths = jax.random.randint(k1, (batch,), 2, max_source + 1)
    tokens = jax.random.randint(k2, (max_source, batch), FIRST, vocab)
    source = jnp.where(jaxrnn.sequence_mask(lengths, max_source), tokens, PAD)
    steps = jnp.arange(max_source)[:, None]
    reversed_source = jnp.take_along_axis(source, jnp.clip(lengths - 1 - steps, 0), axis=0)
    targets = jnp.concatenate([reversed_source, jnp.full((1, batch), PAD)])
    targets = jnp.where(jnp.arange(max_source + 1)[:, None] < lengths, targets, PAD)
    targets = targets.at[lengths, jnp.arange(batch)].set(END)
    return source, lengths, targets, lengths + 1


def test_learns_to_reverse_with_attention():
    """Reversal needs the source in the opposite order: attention learns it in 150 steps
    (exact-match above 0.9, where the same model without attention stays near 0.6)."""
    params = jaxrnn.seq2seq.init_seq2seq(
        jax.random.key(0), 10, 10, embed_size=8, hidden_size=16, cell="gru", attention="bahdanau"
    )
    loss_fn = functools.partial(jaxrnn.seq2seq.seq2seq_loss, start_token=START)
    train = jaxrnn.train.make_train_step(loss_fn, optax.adam(1e-2), max_grad_norm=1.0)
    make = jax.jit(reverse_batch, static_argnums=1)
    batches = lambda epoch: (make(jax.random.key(step), 64) for step in range(150))  # noqa: E731
    state, history = jaxrnn.train.fit(train, train.init(params), batches, progress=False)
    assert history[-1] < 0.1 * history[0]
    source, source_lengths, targets, target_lengths = reverse_batch(jax.random.key(10**6), 256)
    tokens, lengths = jax.jit(
        functools.partial(
            jaxrnn.seq2seq.greedy_decode, max_length=6, start_token=START, end_token=END
        )
    )(state.params, source, source_lengths)
    valid = jaxrnn.sequence_mask(target_lengths, 6)
    exact = jnp.all(jnp.where(valid, tokens == targets, True), 0) & (lengths == target_lengths)
    assert float(exact.mean()) > 0.9


# Dropout inside an attention decoder: unroll's key reaches its inner layers.
RATES = dict(input_dropout=0.3, output_dropout=0.2, recurrent_dropout=0.3, zoneout_h=0.2)
INNER_DROPOUT = [
    # a stack: dropout between its layers and inside each (regularize)
    dict(cell="gru", kind="luong_general", num_layers=2, dropout=0.5, regularize=RATES),
    # one regularized layer, not a stack: it gets unroll's key itself
    dict(cell="lstm", kind="bahdanau", regularize={**RATES, "zoneout_c": 0.3}),
]


def dropout_decoder(config, input_feeding=False):
    config = dict(config)
    cell, kind, rates = config.pop("cell"), config.pop("kind"), config.pop("regularize", None)
    if kind != "bahdanau":
        config["input_feeding"] = input_feeding
    decoder = jaxrnn.attention.init_attention_cell(
        jax.random.key(3), cell, 3, MEMORY, MEMORY, kind=kind, **config
    )
    if rates is not None:
        decoder = dataclasses.replace(
            decoder, cell=jaxrnn.regularization.regularize(decoder.cell, **rates)
        )
    return decoder


@pytest.mark.parametrize("config", INNER_DROPOUT, ids=lambda c: c["kind"])
def test_key_gives_the_inner_layers_their_own_dropout(config):
    """Where the inner cell's inputs do not depend on its state (Luong without input
    feeding; Bahdanau with one valid source position, whose context is that position),
    unroll(decoder, key=k) is unroll(decoder.cell, key=k) plus attention: the inner
    layers draw exactly the masks they draw on their own (between-layer dropout,
    variational dropout, zoneout), and nothing else. (Without a key the decoder is the
    deterministic loop: DECODERS above has a decoder with dropout.)"""
    decoder = dropout_decoder(config)
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    bahdanau = decoder.attention.kind == "bahdanau"
    memory_lengths = jnp.array([1, 1, 1]) if bahdanau else jnp.array([5, 2, 3])
    memory = padded(k1, SOURCE_TIME, memory_lengths, MEMORY, fill=jnp.nan)
    xs = jax.random.normal(k2, (6, 3, 3))
    lengths = jnp.array([6, 6, 2])
    bound = jaxrnn.attention.with_memory(decoder, memory, memory_lengths)
    start = random_carry(bound, (3,), k3)
    run = jax.jit(functools.partial(jaxrnn.unroll, lengths=lengths))

    @jax.jit
    def inner_then_attention(decoder, memory, start, key):
        """The inner cell unrolled on its own, then the attention over its outputs."""
        if bahdanau:
            context = jnp.broadcast_to(memory[0], (6, 3, MEMORY))
            inner_xs = jnp.concatenate([xs, context], -1)
            inner_carry, hs = jaxrnn.unroll(decoder.cell, start, inner_xs, lengths=lengths, key=key)
            ys = jnp.concatenate([hs, context], -1)
        else:
            inner_carry, hs = jaxrnn.unroll(decoder.cell, start, xs, lengths=lengths, key=key)
            read = jax.vmap(
                lambda h: jaxrnn.attention.attend(decoder.attention, h, memory, memory_lengths)
            )
            context, _ = read(hs)
            ys = jaxrnn.heads.readout(decoder.combine, jnp.concatenate([context, hs], -1), "tanh")
        return inner_carry, jnp.where(jaxrnn.sequence_mask(lengths, 6)[..., None], ys, 0)

    key, other_key = jax.random.split(jax.random.key(5))
    carry, ys = run(bound, start, xs, key=key)
    inner_carry, expected = inner_then_attention(decoder, memory, start.cell, key)
    np.testing.assert_allclose(ys, expected, rtol=1e-5, atol=1e-6)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
    jax.tree.map(close, carry.cell, inner_carry)
    _, other_ys = run(bound, start, xs, key=other_key)
    assert not np.allclose(other_ys, ys)


def test_dropout_with_input_feeding_trains():
    """With h~_{t-1} fed back (Luong's input feeding) there is no inner-only oracle: a
    key reproduces its loss, another key changes it, and gradients are finite and reach
    every inner weight and the memory."""
    decoder = dropout_decoder(INNER_DROPOUT[0], input_feeding=True)
    memory_lengths = jnp.array([5, 2, 3])
    memory = padded(jax.random.key(1), SOURCE_TIME, memory_lengths, MEMORY, fill=jnp.nan)
    xs = jax.random.normal(jax.random.key(2), (6, 3, 3))

    @jax.jit
    @functools.partial(jax.value_and_grad, argnums=(0, 1))
    def loss(decoder, memory, key):
        bound = jaxrnn.attention.with_memory(decoder, memory, memory_lengths)
        _, ys = jaxrnn.unroll(bound, None, xs, lengths=jnp.array([6, 6, 2]), key=key)
        return jnp.sum(jnp.sin(ys))

    k1, k2 = jax.random.split(jax.random.key(6))
    value, (grads, memory_grads) = loss(decoder, memory, k1)
    assert float(loss(decoder, memory, k1)[0]) == float(value)
    assert float(loss(decoder, memory, k2)[0]) != float(value)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves((grads, memory_grads)))
    assert all(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads.cell))
    valid = jaxrnn.sequence_mask(memory_lengths, SOURCE_TIME)[..., None]
    assert bool(jnp.all(jnp.where(valid, memory_grads != 0, memory_grads == 0)))


def test_regularized_attention_decoder_keeps_the_inner_dropout():
    """regularize() around a whole attention decoder drops its inputs and outputs; the
    inner layers still get a key of their own for their dropout."""
    decoder = jaxrnn.attention.init_attention_cell(
        jax.random.key(3), "gru", 3, MEMORY, MEMORY, kind="luong_dot", num_layers=2, dropout=0.5
    )
    no_dropout = dataclasses.replace(decoder, cell=dataclasses.replace(decoder.cell, dropout=0.0))
    memory = jax.random.normal(jax.random.key(1), (SOURCE_TIME, 3, MEMORY))
    xs = jax.random.normal(jax.random.key(2), (6, 3, 3))

    def outputs(decoder):
        # regularize() needs a decoder without memory (its checks step one sequence), and
        # with_memory an AttentionCell: bind the one inside.
        wrapped = jaxrnn.regularization.regularize(decoder, output_dropout=0.2)
        bound = dataclasses.replace(wrapped, cell=jaxrnn.attention.with_memory(decoder, memory))
        return jax.jit(jaxrnn.unroll)(bound, None, xs, key=jax.random.key(7))[1]

    ys, ys_without = outputs(decoder), outputs(no_dropout)
    assert not np.allclose(ys, ys_without), "the inner dropout was not applied"
    # the same output mask in both: the zeros are where the outer dropout put them
    np.testing.assert_array_equal(ys == 0, ys_without == 0)


BAHDANAU = jaxrnn.attention.init_attention(jax.random.key(0), 4, 4)
DECODER = jaxrnn.attention.init_attention_cell(jax.random.key(0), "gru", 3, 4, 4)
MEMORY_3 = jnp.ones((5, 3, 4))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: jaxrnn.attention.init_attention(jax.random.key(0), 4, 4, kind="concat"),
            ValueError,
            "init_attention: kind must be one of 'bahdanau', 'luong_dot', 'luong_general'; "
            "got 'concat'",
        ),
        (
            lambda: jaxrnn.attention.init_attention(jax.random.key(0), 4, 6, kind="luong_dot"),
            ValueError,
            "init_attention: memory_size must equal query_size=4 for kind='luong_dot'; got 6",
        ),
        (
            lambda: jaxrnn.attention.init_attention(
                jax.random.key(0), 4, 4, kind="luong_general", attention_size=3
            ),
            ValueError,
            "init_attention: attention_size must be None unless kind='bahdanau'; got 3",
        ),
        (
            lambda: jaxrnn.attention.init_attention(jax.random.key(0), 0, 4),
            ValueError,
            "init_attention: query_size must be a positive int; got 0",
        ),
        (
            lambda: jaxrnn.attention.init_attention_cell(
                jax.random.key(0), "gru", 3, 4, 4, attentional_size=2
            ),
            ValueError,
            "init_attention_cell: attentional_size must be None unless kind is a Luong kind; got 2",
        ),
        (
            lambda: jaxrnn.attention.init_attention_cell(
                jax.random.key(0), "gru", 3, 4, 4, dropout=0.3
            ),
            ValueError,
            r"init_attention_cell: dropout must be 0 with num_layers=1 \(it acts between the "
            r"inner layers\); got 0.3",
        ),
        (
            lambda: jaxrnn.attention.init_attention_cell(
                jax.random.key(0), "gru", 3, 4, 4, num_layers=2, dropout=1.0
            ),
            ValueError,
            r"init_attention_cell: dropout must be a number in \[0, 1\); got 1.0",
        ),
        (
            lambda: jaxrnn.unroll(
                jaxrnn.attention.with_memory(
                    dataclasses.replace(
                        DECODER,
                        cell=jaxrnn.carries.learned_init(
                            jaxrnn.regularization.regularize(DECODER.cell, input_dropout=0.1)
                        ),
                    ),
                    MEMORY_3,
                ),
                None,
                jnp.ones((2, 3, 3)),
                key=jax.random.key(0),
            ),
            ValueError,
            r"unroll: params must have regularize\(\)d cells of an AttentionCell as its inner "
            r"layers, not inside other wrappers \(where a key would not reach them\); got "
            r"layer 0: LearnedInit around a Regularized",
        ),
        (
            lambda: jaxrnn.attention.attend(BAHDANAU, jnp.ones((3, 4)), jnp.ones((5, 3, 6))),
            ValueError,
            r"attend: memory must have shape \(source_time, \.\.\., memory_size=4\); "
            r"got \(5, 3, 6\)",
        ),
        (
            lambda: jaxrnn.attention.attend(BAHDANAU, jnp.ones((3, 4)), jnp.ones((5, 3, 4), int)),
            TypeError,
            "attend: memory must have a floating dtype; got int32",
        ),
        (
            lambda: jaxrnn.attention.attend(BAHDANAU, jnp.ones((3, 5)), MEMORY_3),
            ValueError,
            r"attend: query must have shape \(\.\.\., query_size=4\); got \(3, 5\)",
        ),
        (
            lambda: jaxrnn.attention.attend(BAHDANAU, jnp.ones((2, 4)), MEMORY_3),
            ValueError,
            r"attend: query must have the batch shape of memory \(3,\); got \(2,\)",
        ),
        (
            lambda: jaxrnn.attention.attend(
                BAHDANAU, jnp.ones((3, 4)), MEMORY_3, jnp.array([1, 2])
            ),
            ValueError,
            r"attend: memory_lengths must have the batch shape of memory \(3,\); got \(2,\)",
        ),
        (
            lambda: jaxrnn.attention.attend(BAHDANAU, jnp.ones((3, 4)), MEMORY_3, jnp.ones(3)),
            TypeError,
            "attend: memory_lengths must have an integer dtype; got float32",
        ),
        (
            lambda: jaxrnn.attention.attend(DECODER, jnp.ones((3, 4)), MEMORY_3),
            TypeError,
            "attend: params must be AttentionParams; got AttentionCell",
        ),
        (
            lambda: jaxrnn.unroll(DECODER, None, jnp.ones((2, 3, 3))),
            ValueError,
            r"AttentionCell: memory must be bound with with_memory\(params, memory, "
            r"memory_lengths\) before the cell runs; got None",
        ),
        (
            lambda: jaxrnn.cell_step(
                jaxrnn.attention.with_memory(DECODER, MEMORY_3), None, jnp.ones((2, 3))
            ),
            ValueError,
            r"AttentionCell: x must have the batch shape of the memory \(3,\); got \(2,\)",
        ),
        (
            lambda: jaxrnn.attention.with_memory(DECODER.cell, MEMORY_3),
            TypeError,
            "with_memory: params must be an AttentionCell; got GRUParams",
        ),
        (
            lambda: jaxrnn.attention.unroll_with_alignments(DECODER, None, jnp.ones((2, 3, 3))),
            ValueError,
            "unroll_with_alignments: params must have a memory \\(see with_memory\\); "
            "got an AttentionCell without one",
        ),
        (
            lambda: init_seq2seq(
                dict(bidirectional_encoder=True, bridge="sum", attention="luong_dot")
            ),
            ValueError,
            r"init_seq2seq: attention must not be 'luong_dot' when the decoder width \(4\) "
            r"differs from the encoder's output size \(8\); use 'luong_general' or "
            r"'bahdanau'; got 'luong_dot'",
        ),
        (
            lambda: init_seq2seq(dict(attention="dot")),
            ValueError,
            "init_seq2seq: attention must be one of None, 'bahdanau', 'luong_dot', "
            "'luong_general'; got 'dot'",
        ),
        (
            lambda: jaxrnn.seq2seq.seq2seq_alignments(
                init_seq2seq({}), jnp.ones((3, 2), int), None, jnp.ones((2, 2), int), start_token=1
            ),
            ValueError,
            r"seq2seq_alignments: params must have an attention decoder "
            r"\(init_seq2seq\(\.\.\., attention=\.\.\.\)\); got a LSTMParams decoder",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
