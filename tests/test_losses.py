"""Masked sequence losses: against a NumPy loop over valid steps; padding never counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

TIME, NUM_OUT = 5, 3
LENGTHS = jnp.array([[5, 2, 0], [1, 3, 4]])  # a 2-D batch, one empty sequence


def np_sigmoid_bce(z, y):
    p = 1 / (1 + np.exp(-z))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def np_softmax_ce(z, y):
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -np.take_along_axis(log_p, y[..., None], -1)[..., 0]


def make_inputs(name, key, fill=None):
    """(predictions, targets, per-step NumPy oracle); padding set to ``fill`` if given."""
    k1, k2 = jax.random.split(key)
    shape = (TIME, *LENGTHS.shape)
    z = jax.random.normal(k1, (*shape, NUM_OUT))
    if name == "softmax":
        y = jax.random.randint(k2, shape, 0, NUM_OUT)
        oracle = np_softmax_ce
    elif name == "bce":
        y = jax.random.bernoulli(k2, 0.5, (*shape, NUM_OUT)).astype(jnp.float32)
        oracle = lambda z, y: np_sigmoid_bce(z, y).sum(-1)  # noqa: E731
    else:
        y = jax.random.normal(k2, (*shape, NUM_OUT))
        oracle = lambda z, y: ((z - y) ** 2).mean(-1)  # noqa: E731
    if fill is not None:
        valid = jaxrnn.sequence_mask(LENGTHS, TIME)
        z = jnp.where(valid[..., None], z, fill)
        if name != "softmax":
            y = jnp.where(valid[..., None], y, fill)
    return z, y, oracle


LOSSES = {
    "bce": jaxrnn.losses.sequence_binary_cross_entropy,
    "softmax": jaxrnn.losses.sequence_softmax_cross_entropy,
    "mse": jaxrnn.losses.sequence_mean_squared_error,
}


def numpy_reference(per_step_fn, z, y, reduction):
    z, y = np.asarray(z, np.float64), np.asarray(y)
    per_step = np.zeros((TIME, *LENGTHS.shape))
    for index in np.ndindex(*LENGTHS.shape):
        for t in range(int(LENGTHS[index])):  # a plain loop over the valid steps
            per_step[(t, *index)] = per_step_fn(z[(t, *index)], y[(t, *index)])
    if reduction == "none":
        return per_step
    total = per_step.sum()
    return total if reduction == "sum" else total / int(LENGTHS.sum())


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_numpy_loop(name, reduction):
    z, y, oracle = make_inputs(name, jax.random.key(0))
    loss = LOSSES[name](z, y, lengths=LENGTHS, reduction=reduction)
    expected = numpy_reference(oracle, z, y, reduction)
    assert loss.shape == np.shape(expected)
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_padding_never_counts_in_value_or_gradient(name):
    """Garbage (inf, NaN) in padded predictions and targets changes nothing."""
    z, y, _ = make_inputs(name, jax.random.key(1))
    z_bad, y_bad, _ = make_inputs(name, jax.random.key(1), fill=jnp.nan)
    value_and_grad = jax.jit(
        jax.value_and_grad(lambda z, y: LOSSES[name](z, y, lengths=LENGTHS, reduction="mean"))
    )
    value, grad = value_and_grad(z, y)
    value_bad, grad_bad = value_and_grad(z_bad, y_bad)
    np.testing.assert_allclose(value, value_bad, rtol=1e-6)
    np.testing.assert_allclose(grad, grad_bad, rtol=1e-6)
    padding = ~jaxrnn.sequence_mask(LENGTHS, TIME)
    assert bool(jnp.all(grad[padding] == 0))


def test_no_lengths_means_all_steps_and_none_reduction_is_masked():
    z, y, _ = make_inputs("softmax", jax.random.key(2))
    full = jnp.full(LENGTHS.shape, TIME)
    loss = jaxrnn.losses.sequence_softmax_cross_entropy
    np.testing.assert_allclose(loss(z, y), loss(z, y, lengths=full), rtol=1e-6)
    per_step = loss(z, y, lengths=LENGTHS, reduction="none")
    assert bool(jnp.all(per_step[~jaxrnn.sequence_mask(LENGTHS, TIME)] == 0))
    np.testing.assert_allclose(
        per_step.sum() / LENGTHS.sum(), loss(z, y, lengths=LENGTHS), rtol=1e-6
    )


def test_sequence_mask_and_masked_reduce():
    mask = jaxrnn.sequence_mask(LENGTHS, TIME)
    expected = np.arange(TIME)[:, None, None] < np.asarray(LENGTHS)[None]
    np.testing.assert_array_equal(mask, expected)
    assert (
        float(jaxrnn.losses.masked_reduce(jnp.ones((TIME, 2, 3)), LENGTHS, "sum")) == LENGTHS.sum()
    )
    # an all-empty batch has mean 0, not NaN
    assert float(jaxrnn.losses.masked_reduce(jnp.ones((TIME, 2)), jnp.zeros(2, int), "mean")) == 0.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: jaxrnn.losses.sequence_binary_cross_entropy(
                jnp.ones((3, 2, 1)), jnp.ones((3, 2))
            ),
            ValueError,
            r"labels must have the shape of logits \(3, 2, 1\); got \(3, 2\)",
        ),
        (
            lambda: jaxrnn.losses.sequence_softmax_cross_entropy(
                jnp.ones((3, 2, 4)), jnp.ones((3, 2))
            ),
            TypeError,
            "labels must have an integer dtype; got float32",
        ),
        (
            lambda: jaxrnn.losses.sequence_softmax_cross_entropy(
                jnp.ones((3, 2, 4)), jnp.ones((3, 3), int)
            ),
            ValueError,
            r"labels must have shape \(time, \.\.\.\) = \(3, 2\); got \(3, 3\)",
        ),
        (
            lambda: jaxrnn.losses.sequence_mean_squared_error(
                jnp.ones((3, 2, 1)), jnp.ones((3, 2, 1)), lengths=jnp.ones(3, int)
            ),
            ValueError,
            r"lengths must have the batch shape .*\(2,\); got \(3,\)",
        ),
        (
            lambda: jaxrnn.losses.sequence_mean_squared_error(
                jnp.ones((3, 2, 1)), jnp.ones((3, 2, 1)), reduction="avg"
            ),
            ValueError,
            "reduction must be one of 'sum', 'mean', 'none'; got 'avg'",
        ),
        (
            lambda: jaxrnn.sequence_mask(jnp.ones(2), 3),
            TypeError,
            "sequence_mask: lengths must have an integer dtype; got float32",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
