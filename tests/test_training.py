"""Train step (against hand-written optax), fit loop, learning end to end, checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn


def assert_trees_close(a, b, **tolerances):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tolerances), a, b)


def regression_loss(params, xs, targets):
    _, ys = jaxrnn.unroll(params, None, xs)
    return jnp.mean((ys[..., 0] - targets) ** 2)


def regression_problem():
    params = jaxrnn.init_params(jax.random.key(0), "gru", 2, 4)
    xs = jax.random.normal(jax.random.key(1), (5, 3, 2))
    return params, xs, jnp.cumsum(xs[..., 0], 0) / 3


@pytest.mark.parametrize("max_grad_norm", [None, 1e-3])
def test_step_equals_hand_written_optax(max_grad_norm):
    params, xs, targets = regression_problem()
    optimizer = optax.sgd(0.5)
    train = jaxrnn.train.make_train_step(regression_loss, optimizer, max_grad_norm=max_grad_norm)
    state, metrics = train.step(train.init(params), xs, targets)

    loss, grads = jax.value_and_grad(regression_loss)(params, xs, targets)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    if max_grad_norm is not None:  # clip_by_global_norm, written out
        grads = jax.tree.map(lambda g: g * jnp.minimum(1.0, max_grad_norm / norm), grads)
    expected = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    assert_trees_close(state.params, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics.loss, loss, rtol=1e-6)
    np.testing.assert_allclose(metrics.grad_norm, norm, rtol=1e-5)
    assert int(state.step) == 1 and metrics.aux is None
    assert type(state.params) is type(params)


def test_has_aux_carries_state_across_chunks():
    """Stateful training: each chunk's step returns the carry for the next chunk."""
    params, xs, targets = regression_problem()

    def loss_fn(params, carry, xs, targets):
        carry, ys = jaxrnn.unroll(params, carry, xs)
        return jnp.mean((ys[..., 0] - targets) ** 2), carry

    train = jaxrnn.train.make_train_step(loss_fn, optax.adam(1e-2), has_aux=True)
    state, carry = train.init(params), jaxrnn.init_carry(params, (3,))
    state, metrics = train.step(state, carry, xs, targets)
    expected_carry, _ = jaxrnn.unroll(params, carry, xs)
    np.testing.assert_allclose(metrics.aux, expected_carry, rtol=1e-6)
    state, metrics = train.step(state, metrics.aux, xs, targets)
    assert int(state.step) == 2


def test_fit_runs_every_batch_every_epoch_and_shows_the_loss(capsys):
    params, xs, targets = regression_problem()
    train = jaxrnn.train.make_train_step(regression_loss, optax.adam(1e-2))
    seen = []

    def batches(epoch):
        seen.append(epoch)
        return [(xs, targets), (xs[:, :2], targets[:, :2])]

    state, history = jaxrnn.train.fit(train, train.init(params), batches, num_epochs=3, log_every=2)
    assert seen == [0, 1, 2] and len(history) == 6 and int(state.step) == 6
    assert all(isinstance(loss, float) for loss in history)
    assert "loss=" in capsys.readouterr().err
    _, history = jaxrnn.train.fit(train, state, [(xs, targets)], num_epochs=2, progress=False)
    assert len(history) == 2


@pytest.mark.parametrize(
    ("batches", "match"),
    [
        ((b for b in [(1,)]), "fit: batches must be a sequence of batches or a function"),
        ([[1, 2]], "fit: each batch must be a tuple of loss_fn arguments; got list"),
    ],
)
def test_fit_errors(batches, match):
    train = jaxrnn.train.make_train_step(lambda p, *b: 0.0, optax.sgd(1.0))
    with pytest.raises(TypeError, match=match):
        jaxrnn.train.fit(train, train.init({}), batches, progress=False)


def majority_data(key, batch, max_time=9):
    """Sequences of +-1 with odd lengths 3..9; label: is the sum positive? Padding holds
    +5, so a model that read padding would answer 'positive' far too often."""
    k1, k2 = jax.random.split(key)
    lengths = 2 * jax.random.randint(k1, (batch,), 1, (max_time + 1) // 2) + 1
    signs = jnp.where(jax.random.bernoulli(k2, 0.5, (max_time, batch)), 1.0, -1.0)
    valid = jaxrnn.sequence_mask(lengths, max_time)
    labels = (jnp.sum(jnp.where(valid, signs, 0.0), 0) > 0).astype(jnp.float32)
    xs = jnp.where(valid, signs, 5.0)[..., None]
    return xs, lengths, labels


def test_many_to_one_classifier_learns():
    """End to end: unroll + final_hidden + readout + masked lengths; loss falls and
    accuracy beats chance (50%) by a clear margin."""
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "rnn": jaxrnn.init_params(k1, "gru", 1, 16),
        "out": jaxrnn.heads.init_readout(k2, 16, 1),
    }

    def logits_fn(params, xs, lengths):
        carry, _ = jaxrnn.unroll(params["rnn"], None, xs, lengths=lengths)
        return jaxrnn.heads.readout(params["out"], jaxrnn.pooling.final_hidden(carry))[:, 0]

    def loss_fn(params, xs, lengths, labels):
        return optax.losses.sigmoid_binary_cross_entropy(
            logits_fn(params, xs, lengths), labels
        ).mean()

    train = jaxrnn.train.make_train_step(loss_fn, optax.adam(1e-2), max_grad_norm=1.0)
    make = jax.jit(majority_data, static_argnums=1)
    batches = [make(jax.random.key(i), 64) for i in range(150)]
    state, history = jaxrnn.train.fit(train, train.init(params), batches, progress=False)
    assert np.mean(history[-10:]) < 0.3 * np.mean(history[:10])
    xs, lengths, labels = majority_data(jax.random.key(10**6), 512)
    accuracy = jnp.mean((logits_fn(state.params, xs, lengths) > 0) == (labels > 0))
    assert float(accuracy) > 0.9


def test_checkpoint_round_trip_keeps_types_values_and_training(tmp_path):
    params = jaxrnn.init_params(jax.random.key(0), "lstm", 2, 4, num_layers=2)
    xs = jax.random.normal(jax.random.key(1), (5, 3, 2))
    targets = jnp.sin(jnp.cumsum(xs[..., 0], 0))
    train = jaxrnn.train.make_train_step(regression_loss, optax.adam(1e-2), max_grad_norm=1.0)
    state, _ = jaxrnn.train.fit(train, train.init(params), [(xs, targets)] * 3, progress=False)
    path = tmp_path / "state.msgpack"
    jaxrnn.train.save_checkpoint(path, state)

    template = train.init(jaxrnn.init_params(jax.random.key(7), "lstm", 2, 4, num_layers=2))
    restored = jaxrnn.train.restore_checkpoint(path, template)
    assert jax.tree.structure(restored) == jax.tree.structure(state)  # node types, statics
    assert type(restored.params.layers[0]) is jaxrnn.LSTMParams
    for got, saved in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        assert got.dtype == saved.dtype
        np.testing.assert_array_equal(got, saved)
    # training goes on exactly as if it had never stopped
    continued, _ = train.step(state, xs, targets)
    resumed, _ = train.step(restored, xs, targets)
    assert_trees_close(resumed, continued, rtol=0, atol=0)


def test_checkpoint_dtypes_and_mismatched_template(tmp_path):
    tree = {"half": jnp.ones(3, jnp.float16), "count": jnp.arange(2), "flag": jnp.array([True])}
    path = tmp_path / "tree.msgpack"
    jaxrnn.train.save_checkpoint(path, tree)
    restored = jaxrnn.train.restore_checkpoint(path, tree)
    assert {k: v.dtype for k, v in restored.items()} == {k: v.dtype for k, v in tree.items()}
    with pytest.raises(
        ValueError,
        match=r"restore_checkpoint: template leaf \['half'\] must "
        r"match the saved float16\[3\]; got float16\[4\]",
    ):
        jaxrnn.train.restore_checkpoint(path, {**tree, "half": jnp.ones(4, jnp.float16)})
    with pytest.raises(ValueError, match=r"missing \[\"\['extra'\]\"\]"):
        jaxrnn.train.restore_checkpoint(path, {**tree, "extra": jnp.ones(1)})
