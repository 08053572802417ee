"""``generate``: against a Python loop over ``cell_step``; sampling; end tokens; errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

VOCAB, EMBED, HIDDEN, BATCH, STEPS = 5, 3, 8, 4, 6


def make_model(cell, num_layers=1, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = jaxrnn.init_params(k1, cell, EMBED, HIDDEN, num_layers=num_layers)
    out = jaxrnn.heads.init_readout(k2, HIDDEN, VOCAB)
    table = jax.random.normal(k3, (VOCAB, EMBED))
    return params, out, table


def keep_where(finished, old, new):
    finished = jnp.asarray(finished)
    return jax.tree.map(
        lambda o, n: jnp.where(finished.reshape(finished.shape + (1,) * (n.ndim - 1)), o, n),
        old,
        new,
    )


def loop_oracle(params, out, table, carry, token, num_steps, end_token=None, pad=0):
    """The loop of ``generate``'s docstring, greedy, one Python step at a time."""
    tokens, finished = [], np.zeros(token.shape, bool)
    for _ in range(num_steps):
        new_carry, y = jaxrnn.cell_step(params, carry, table[token])
        token = np.asarray(jnp.argmax(jaxrnn.heads.readout(out, y), -1))
        if end_token is not None:
            token = np.where(finished, pad, token)
            new_carry = keep_where(finished, carry, new_carry)
            finished = finished | (token == end_token)
        carry = new_carry
        tokens.append(token)
    return carry, np.stack(tokens)


def run_generate(params, out, table, carry, token, **options):
    return jaxrnn.decoding.generate(
        params,
        carry,
        table[token],
        options.pop("num_steps", STEPS),
        readout=lambda y: jaxrnn.heads.readout(out, y),
        embed=lambda t: table[t],
        **options,
    )


@pytest.mark.parametrize(("cell", "num_layers"), [("rnn", 1), ("lstm", 1), ("gru", 2)])
def test_greedy_matches_python_loop(cell, num_layers):
    params, out, table = make_model(cell, num_layers)
    start = jnp.arange(BATCH) % VOCAB
    carry = jaxrnn.init_carry(params, (BATCH,))
    expected_carry, expected = loop_oracle(params, out, table, carry, start, STEPS)
    run = jax.jit(functools.partial(run_generate, params, out, table))
    got_carry, got = run(carry, start)
    np.testing.assert_array_equal(got, expected)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), got_carry, expected_carry
    )


def test_end_token_finishes_sequences_with_padding_and_frozen_carry():
    params, out, table = make_model("gru", seed=3)
    start = jnp.arange(BATCH) % VOCAB
    # The most frequent greedy token ends sequences, so some finish early, some late.
    _, free = run_generate(params, out, table, None, start, num_steps=12)
    end = int(jnp.bincount(free.reshape(-1), length=VOCAB).argmax())
    pad = (end + 1) % VOCAB
    carry, tokens = run_generate(
        params, out, table, None, start, num_steps=12, end_token=end, pad_token=pad
    )
    expected_carry, expected = loop_oracle(
        params, out, table, jaxrnn.init_carry(params, (BATCH,)), start, 12, end_token=end, pad=pad
    )
    np.testing.assert_array_equal(tokens, expected)
    np.testing.assert_allclose(carry, expected_carry, atol=1e-6)
    lengths = jaxrnn.decoding.decoded_lengths(tokens, end)
    assert bool(jnp.any(lengths < 12))
    for b in range(BATCH):
        after = np.asarray(tokens[int(lengths[b]) :, b])
        assert np.all(after == pad), "a finished sequence emitted something other than padding"
        if lengths[b] < 12:
            assert int(tokens[int(lengths[b]) - 1, b]) == end


def test_sampling_uses_the_key_and_low_temperature_is_greedy():
    params, out, table = make_model("lstm")
    start = jnp.zeros(BATCH, int)
    # temperature is traced: one compilation serves every temperature
    run = jax.jit(
        functools.partial(
            run_generate, params, out, table, None, start, choose="sample", num_steps=20
        )
    )
    a = run(key=jax.random.key(1), temperature=2.0)[1]
    b = run(key=jax.random.key(1), temperature=2.0)[1]
    c = run(key=jax.random.key(2), temperature=2.0)[1]
    np.testing.assert_array_equal(a, b)
    assert bool(jnp.any(a != c))
    assert set(np.unique(a)) <= set(range(VOCAB))
    cold = run(key=jax.random.key(1), temperature=1e-4)[1]
    greedy = run_generate(params, out, table, None, start, num_steps=20)[1]
    np.testing.assert_array_equal(cold, greedy)


def test_continuous_outputs_and_custom_functions_batch_like_vmap():
    """Feed back a real-valued prediction; batching equals vmap over single sequences."""
    params = jaxrnn.init_params(jax.random.key(0), "gru", 2, HIDDEN)
    out = jaxrnn.heads.init_readout(jax.random.key(1), HIDDEN, 2)

    def gen(x0):
        return jaxrnn.decoding.generate(
            params,
            None,
            x0,
            7,
            readout=lambda y: jaxrnn.heads.readout(out, y, "tanh"),
            choose="identity",
        )[1]

    x0 = jax.random.normal(jax.random.key(2), (3, 2))
    batched = gen(x0)
    assert batched.shape == (7, 3, 2)
    np.testing.assert_allclose(batched, jnp.moveaxis(jax.vmap(gen)(x0), 0, 1), atol=1e-6)
    custom = jaxrnn.decoding.generate(
        params,
        None,
        x0,
        7,
        readout=lambda y: jaxrnn.heads.readout(out, y, "tanh"),
        choose=lambda scores, key: scores,
    )[1]
    np.testing.assert_allclose(custom, batched)


def test_decoded_lengths():
    tokens = jnp.array([[3, 1, 0], [1, 2, 0], [0, 1, 0]])  # (time, batch), end token 1
    np.testing.assert_array_equal(jaxrnn.decoding.decoded_lengths(tokens, 1), [2, 1, 3])


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"choose": "sample"}, TypeError, "generate: key must be a PRNG key with choose='sample'"),
        ({"key": jax.random.key(0)}, ValueError, "generate: key must be None with choose='argmax'"),
        ({"choose": "top"}, ValueError, "generate: choose must be one of 'argmax', 'sample'"),
        ({"num_steps": 0}, ValueError, "generate: num_steps must be a positive int; got 0"),
        (
            {"embed": lambda t: jnp.ones((BATCH, 7))},
            ValueError,
            r"generate: embed must give the next input of shape \(4, 3\); got \(4, 7\)",
        ),
        (
            {"choose": "sample", "key": jax.random.key(0), "temperature": 0.0},
            ValueError,
            "generate: temperature must be > 0; got 0.0",
        ),
    ],
)
def test_errors(options, error, match):
    params, out, table = make_model("rnn")
    options = {
        "num_steps": 3,
        "readout": lambda y: jaxrnn.heads.readout(out, y),
        "embed": lambda t: table[t],
        **options,
    }
    with pytest.raises(error, match=match):
        jaxrnn.decoding.generate(params, None, table[jnp.zeros(BATCH, int)], **options)


def test_bidirectional_params_are_rejected():
    params = jaxrnn.init_params(jax.random.key(0), "gru", EMBED, HIDDEN, bidirectional=True)
    with pytest.raises(ValueError, match="cell_step: params must be a cell or a stack"):
        jaxrnn.decoding.generate(
            params, None, jnp.ones((2, EMBED)), 3, choose="identity", embed=lambda y: y[..., :EMBED]
        )
