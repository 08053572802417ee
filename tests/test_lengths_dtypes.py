"""Lengths of every integer dtype mean the same number of steps, also past the dtype's
maximum; a carry is never silently truncated to integers.

Both were silent wrong results: lengths were clipped to ``[0, time]`` in their own dtype
(an int8 ``[100]`` over 200 steps ran 0 steps, since 200 wraps to -56 in int8), and an
int32 carry for float params kept its dtype from step to step, so the state was truncated
to integers at every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import losses, pooling

KEY = jax.random.key(0)
RNN = jaxrnn.init_params(KEY, "rnn", 1, 2)

INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_sequence_mask_counts_past_the_dtype_maximum(dtype):
    info = np.iinfo(dtype)
    num_steps = min(int(info.max) + 40, 70_000)  # above the maximum of 8- and 16-bit dtypes
    lengths = np.array([0, 1, 100, min(int(info.max), 2**40)], dtype=dtype)
    mask = jaxrnn.sequence_mask(lengths, num_steps)
    expected = np.minimum(lengths.astype(np.int64), num_steps)
    np.testing.assert_array_equal(np.asarray(mask).sum(0), expected)


@pytest.mark.parametrize(
    ("dtype", "length", "num_steps"),
    [(np.int8, 100, 200), (np.uint8, 100, 300), (np.int16, 30_000, 40_000), (np.uint16, 3, 70_000)],
    ids=["int8", "uint8", "int16", "uint16"],
)
def test_unroll_runs_every_valid_step_of_narrow_lengths(dtype, length, num_steps):
    xs = jnp.ones((num_steps, 1, 1))
    narrow, _ = jaxrnn.unroll(RNN, None, xs, lengths=np.array([length], dtype))
    wide, _ = jaxrnn.unroll(RNN, None, xs[:length])
    np.testing.assert_allclose(narrow, wide, rtol=1e-6)
    # Lengths past the end (the dtype's maximum) are clipped to the padded length.
    full, _ = jaxrnn.unroll(RNN, None, xs[:200], lengths=np.array([np.iinfo(dtype).max], dtype))
    np.testing.assert_allclose(full, jaxrnn.unroll(RNN, None, xs[:200])[0], rtol=1e-6)


def test_losses_and_pooling_count_narrow_lengths():
    num_steps = 300
    ys = jnp.arange(num_steps, dtype=jnp.float32).reshape(num_steps, 1, 1)
    lengths = np.array([250], np.uint8)
    assert float(pooling.pool_last(ys, lengths)[0, 0]) == 249.0
    assert float(pooling.pool_mean(ys, lengths)[0, 0]) == pytest.approx(124.5)
    per_step = jnp.ones((num_steps, 1))
    assert float(losses.masked_reduce(per_step, lengths, "sum")) == 250.0


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.int8, jnp.bool_], ids=str)
def test_an_integer_carry_is_refused_not_truncated(dtype):
    params = jaxrnn.init_params(KEY, "lstm", 3, 4)
    carry = jax.tree.map(lambda c: c.astype(dtype), jaxrnn.init_carry(params, (2,)))
    with pytest.raises(TypeError, match=r"^unroll: carry must have real floating leaves"):
        jaxrnn.unroll(params, carry, jnp.ones((5, 2, 3)))
    with pytest.raises(TypeError, match=r"^cell_step: carry must have real floating leaves"):
        jaxrnn.cell_step(params, carry, jnp.ones((2, 3)))


def test_complex_inputs_are_refused():
    with pytest.raises(TypeError, match=r"^unroll: xs must have a real floating dtype"):
        jaxrnn.unroll(RNN, None, jnp.ones((5, 2, 1), jnp.complex64))
