"""Many-to-one pooling: NumPy loops over valid steps, padding ignored, carries read right."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

TIME = 5
LENGTHS = jnp.array([5, 2, 0, 1])


def numpy_pool(kind, ys, lengths):
    ys = np.asarray(ys)
    out = np.zeros(ys.shape[1:], ys.dtype)
    for b, length in enumerate(np.asarray(lengths)):
        if length == 0:
            continue  # empty sequences pool to zeros
        valid = ys[:length, b]  # a plain slice of the valid steps
        out[b] = {"last": valid[-1], "mean": valid.mean(0), "max": valid.max(0)}[kind]
    return out


POOLS = {
    "last": jaxrnn.pooling.pool_last,
    "mean": jaxrnn.pooling.pool_mean,
    "max": jaxrnn.pooling.pool_max,
}


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_matches_numpy_and_ignores_padding(kind):
    ys = jax.random.normal(jax.random.key(0), (TIME, 4, 3))
    valid = jaxrnn.sequence_mask(LENGTHS, TIME)[..., None]
    ys_bad = jnp.where(valid, ys, jnp.nan)  # padding holds NaN: it must never be read
    pooled = POOLS[kind](ys_bad, LENGTHS)
    np.testing.assert_allclose(pooled, numpy_pool(kind, ys, LENGTHS), rtol=1e-6)
    grad = jax.grad(lambda ys: POOLS[kind](ys, LENGTHS).sum())(ys_bad)
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.all(grad[~valid[..., 0]] == 0))


@pytest.mark.parametrize("kind", sorted(POOLS))
def test_without_lengths_pools_all_steps_and_jits(kind):
    ys = jax.random.normal(jax.random.key(1), (TIME, 2, 3, 2))  # 2-D batch, 2 features
    full = jnp.full((2, 3), TIME)
    np.testing.assert_allclose(POOLS[kind](ys), jax.jit(POOLS[kind])(ys, full), rtol=1e-6)


@pytest.mark.parametrize(
    "options",
    [
        {"cell": "rnn"},
        {"cell": "lstm", "proj_size": 2},
        {"cell": "gru", "num_layers": 2},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()),
)
def test_final_hidden_is_last_valid_output_when_unidirectional(options):
    options = dict(options)
    params = jaxrnn.init_params(jax.random.key(0), options.pop("cell"), 3, 4, **options)
    xs = jax.random.normal(jax.random.key(1), (TIME, 4, 3))
    carry, ys = jaxrnn.unroll(params, None, xs, lengths=LENGTHS)
    hidden = jaxrnn.pooling.final_hidden(carry)
    non_empty = LENGTHS > 0
    np.testing.assert_allclose(hidden[non_empty], jaxrnn.pooling.pool_last(ys, LENGTHS)[non_empty])


@pytest.mark.parametrize("merge", ["concat", "sum", "mean"])
def test_final_hidden_of_bidirectional_reads_both_directions(merge):
    """The backward direction's final state is its output at t = 0 (it read everything)."""
    params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4, bidirectional=True)
    xs = jax.random.normal(jax.random.key(1), (TIME, 4, 3))
    carry, ys = jaxrnn.unroll(params, None, xs, lengths=LENGTHS)
    forward = jaxrnn.pooling.pool_last(ys[..., :4], LENGTHS)
    backward = ys[0, :, 4:]
    expected = {
        "concat": jnp.concatenate([forward, backward], -1),
        "sum": forward + backward,
        "mean": (forward + backward) / 2,
    }[merge]
    np.testing.assert_allclose(jaxrnn.pooling.final_hidden(carry, merge=merge), expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: jaxrnn.pooling.pool_mean(jnp.ones((3, 2, 1)), jnp.ones(3, int)),
            ValueError,
            r"pool_mean: lengths must have the batch shape of xs \(2,\); got \(3,\)",
        ),
        (
            lambda: jaxrnn.pooling.pool_max(jnp.ones((3, 2, 1)), jnp.ones(2)),
            TypeError,
            "pool_max: lengths must have an integer dtype; got float32",
        ),
        (
            lambda: jaxrnn.pooling.final_hidden({"h": jnp.ones(2)}),
            ValueError,
            "final_hidden: carry must hold the top layer's output",
        ),
        (
            lambda: jaxrnn.pooling.final_hidden(jnp.ones(2), merge="max"),
            ValueError,
            "final_hidden: merge must be one of 'concat', 'sum', 'mean'; got 'max'",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
