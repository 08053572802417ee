"""The toolkit composes: batch-major data everywhere ``unroll`` takes it, decoding that
returns each step's scores (free-running training), encoder-decoders without embeddings
and with cell options, and a train step whose loss gets a key and the step count."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import decoding, heads, losses, pooling, seq2seq, train

KEY = jax.random.key(0)
LENGTHS = jnp.array([5, 2, 0])


def test_losses_take_batch_major_arrays():
    k1, k2, k3 = jax.random.split(KEY, 3)
    logits = jax.random.normal(k1, (5, 3, 4))  # (time, batch, classes)
    labels = jax.random.randint(k2, (5, 3), 0, 4)
    targets = jax.random.normal(k3, (5, 3, 4))
    bm = lambda a: jnp.moveaxis(a, 0, 1)  # noqa: E731 - batch-major view
    for reduction in ("mean", "sum", "none"):
        tm = losses.sequence_softmax_cross_entropy(
            logits, labels, lengths=LENGTHS, reduction=reduction
        )
        got = losses.sequence_softmax_cross_entropy(
            bm(logits), bm(labels), lengths=LENGTHS, reduction=reduction, time_major=False
        )
        np.testing.assert_allclose(got, tm.T if reduction == "none" else tm, rtol=1e-6)
    pairs = [
        (losses.sequence_mean_squared_error, logits, targets),
        (losses.sequence_binary_cross_entropy, logits, jax.nn.sigmoid(targets)),
    ]
    for loss, a, b in pairs:
        np.testing.assert_allclose(
            loss(bm(a), bm(b), lengths=LENGTHS, time_major=False),
            loss(a, b, lengths=LENGTHS),
            rtol=1e-6,
        )
    per_step = jnp.abs(targets[..., 0])
    np.testing.assert_allclose(
        losses.masked_reduce(per_step.T, LENGTHS, "sum", time_major=False),
        losses.masked_reduce(per_step, LENGTHS, "sum"),
        rtol=1e-6,
    )


@pytest.mark.parametrize("pool", [pooling.pool_last, pooling.pool_mean, pooling.pool_max])
def test_pooling_and_masks_take_batch_major_arrays(pool):
    ys = jax.random.normal(KEY, (5, 3, 4))
    np.testing.assert_allclose(
        pool(jnp.moveaxis(ys, 0, 1), LENGTHS, time_major=False), pool(ys, LENGTHS), rtol=1e-6
    )
    mask = jaxrnn.sequence_mask(LENGTHS, 5, time_major=False)
    np.testing.assert_array_equal(mask, jaxrnn.sequence_mask(LENGTHS, 5).T)


def _decoder():
    k1, k2, k3 = jax.random.split(KEY, 3)
    cell = jaxrnn.init_params(k1, "gru", 4, 8)
    head = heads.init_readout(k2, 8, 6)
    table = jax.random.normal(k3, (6, 4))
    return cell, head, table


def test_rollout_returns_the_scores_it_chose_from():
    cell, head, table = _decoder()
    first = table[jnp.zeros(3, int)]
    options = dict(readout=lambda y: heads.readout(head, y), embed=lambda t: table[t])
    _, tokens, scores = decoding.rollout(cell, None, first, 7, end_token=5, **options)
    assert scores.shape == (7, 3, 6)
    # The scores are the readout of the steps that fed back their argmax.
    step_carry, x = None, first
    for t in range(7):
        step_carry, y = jaxrnn.cell_step(cell, step_carry, x)
        expected = heads.readout(head, y)
        live = np.asarray(jnp.cumsum(tokens == 5, 0)[t] - (tokens[t] == 5) == 0)
        np.testing.assert_allclose(scores[t][live], expected[live], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(scores[t][~live], 0)
        x = table[jnp.argmax(expected, -1)]
    # generate is the same loop without the scores; batch-major outputs are transposed.
    np.testing.assert_array_equal(
        decoding.generate(cell, None, first, 7, end_token=5, **options)[1], tokens
    )
    _, tokens_bm, scores_bm = decoding.rollout(
        cell, None, first, 7, end_token=5, time_major=False, **options
    )
    np.testing.assert_array_equal(tokens_bm, tokens.T)
    np.testing.assert_allclose(scores_bm, jnp.moveaxis(scores, 0, 1))
    # ... and their lengths are those of the time-major tokens.
    np.testing.assert_array_equal(
        decoding.decoded_lengths(tokens_bm, 5, time_major=False),
        decoding.decoded_lengths(tokens, 5),
    )


def test_decoded_lengths_of_batch_major_tokens_count_along_time():
    tokens = jnp.array([[3, 1, 0, 1], [1, 0, 0, 0], [2, 2, 2, 2]])  # (batch, time); end 1
    np.testing.assert_array_equal(decoding.decoded_lengths(tokens, 1, time_major=False), [2, 1, 4])
    stacked = jnp.stack([tokens, tokens[::-1]])  # (2, batch, time): several batch axes
    np.testing.assert_array_equal(
        decoding.decoded_lengths(stacked, 1, time_major=False), [[2, 1, 4], [4, 1, 2]]
    )


def test_free_running_training_is_a_few_lines():
    cell, head, table = _decoder()
    targets = jnp.array([[1, 2, 3], [3, 4, 1], [5, 0, 2]])  # (time, batch)

    def loss(params):
        cell, head, table = params
        _, _, logits = decoding.rollout(
            cell,
            None,
            table[jnp.arange(3)],  # each sequence starts from its own token
            3,
            readout=lambda y: heads.readout(head, y),
            embed=lambda t: table[t],
        )
        return losses.sequence_softmax_cross_entropy(logits, targets)

    step = train.make_train_step(loss, optax.adam(0.05))
    state = step.init((cell, head, table))
    first = None
    for _ in range(60):
        state, metrics = step.step(state)
        first = metrics.loss if first is None else first
    assert float(metrics.loss) < 0.5 * float(first)


def test_decoding_errors_name_the_argument():
    cell, _, table = _decoder()
    with pytest.raises(ValueError, match=r"^generate: choose must return an array .*; got tuple"):
        decoding.generate(
            cell, None, table[jnp.zeros(2, int)], 3, choose=lambda s, k: (s, s), end_token=1
        )
    with pytest.raises(TypeError, match=r"^greedy_decode: params must be Seq2SeqParams"):
        seq2seq.greedy_decode(
            {"encoder": cell}, jnp.zeros((3, 2), int), max_length=3, start_token=1, end_token=2
        )


def test_seq2seq_without_embeddings_reads_one_hot_tokens_and_continuous_inputs():
    params = seq2seq.init_seq2seq(KEY, 7, 5, embed_size=None, hidden_size=8, forget_bias=0.5)
    assert params.source_embedding is None and params.target_embedding is None
    np.testing.assert_array_equal(params.encoder.b_x[8:16], 0.5)  # the forget gate's bias
    source = jax.random.randint(jax.random.key(1), (6, 3), 0, 7)
    targets = jax.random.randint(jax.random.key(2), (4, 3), 0, 5)
    batch = (source, LENGTHS.at[2].set(3), targets, jnp.array([4, 3, 1]))
    one_hot = seq2seq.seq2seq_loss(params, *batch, start_token=0)
    identity = dataclasses.replace(params, source_embedding=jnp.eye(7), target_embedding=jnp.eye(5))
    np.testing.assert_allclose(one_hot, seq2seq.seq2seq_loss(identity, *batch, start_token=0))
    continuous = jax.nn.one_hot(source, 7)
    np.testing.assert_allclose(
        seq2seq.encode(params, continuous, batch[1])[1], seq2seq.encode(params, *batch[:2])[1]
    )


def test_train_step_gives_the_loss_a_key_and_the_step():
    seen = []

    def loss(params, *, key, step):
        seen.append(None)  # traced once
        return jnp.sum(params**2), (jax.random.key_data(key), step)

    step = train.make_train_step(
        loss, optax.sgd(0.1), key=jax.random.key(7), pass_step=True, has_aux=True
    )
    state = step.init(jnp.ones(2))
    keys, steps = [], []
    for _ in range(3):
        state, metrics = step.step(state)
        keys.append(np.asarray(metrics.aux[0]))
        steps.append(int(metrics.aux[1]))
    assert steps == [0, 1, 2]
    expected = [
        np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(7), i))) for i in range(3)
    ]
    np.testing.assert_array_equal(keys, expected)
    assert len(seen) == 1


def test_seq2seq_takes_batch_major_data():
    params = seq2seq.init_seq2seq(KEY, 7, 5, embed_size=4, hidden_size=8)
    source = jax.random.randint(jax.random.key(1), (6, 3), 0, 7)  # (time, batch)
    targets = jax.random.randint(jax.random.key(2), (4, 3), 0, 5)
    lengths, target_lengths = jnp.array([6, 2, 4]), jnp.array([4, 3, 1])
    logits = seq2seq.seq2seq_logits(params, source, lengths, targets, start_token=0)
    batch_major = seq2seq.seq2seq_logits(
        params, source.T, lengths, targets.T, start_token=0, time_major=False
    )
    np.testing.assert_allclose(batch_major, jnp.moveaxis(logits, 0, 1), rtol=1e-5)
    loss = seq2seq.seq2seq_loss(params, source, lengths, targets, target_lengths, start_token=0)
    np.testing.assert_allclose(
        seq2seq.seq2seq_loss(
            params, source.T, lengths, targets.T, target_lengths, start_token=0, time_major=False
        ),
        loss,
        rtol=1e-6,
    )
    options = dict(max_length=5, start_token=0, end_token=1)
    tokens, decoded = seq2seq.greedy_decode(params, source, lengths, **options)
    tokens_bm, decoded_bm = seq2seq.greedy_decode(
        params, source.T, lengths, time_major=False, **options
    )
    np.testing.assert_array_equal(tokens_bm, tokens.T)
    np.testing.assert_array_equal(decoded_bm, decoded)
    beams = seq2seq.beam_search(params, source, lengths, beam_size=2, **options)
    beams_bm = seq2seq.beam_search(
        params, source.T, lengths, beam_size=2, time_major=False, **options
    )
    np.testing.assert_array_equal(beams_bm[0], beams[0].T)
    np.testing.assert_allclose(beams_bm[2], beams[2], rtol=1e-6)
