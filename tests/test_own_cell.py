"""A cell defined in one module with public names only runs through the whole core.

The cell is IndRNN (Li et al. 2018), ``h' = tanh(x W + b + u * h)``: nothing in jaxrnn
knows it. It gets ``unroll`` with lengths, reverse, remat, ``vmap``, ``jit`` and ``grad``,
``stack``, ``bidirectional`` and ``cell_step``, each checked against a plain loop.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn.methods import HandDerivatives, MethodError, Sequential


@jaxrnn.params_class
class IndRNNParams(jaxrnn.Cell):
    """``h_t = tanh(x_t W + b + u ⊙ h_{t-1})``, ``y_t = h_t``."""

    w: jax.Array  # shape=(input_size, hidden_size)
    u: jax.Array  # shape=(hidden_size,)
    b: jax.Array  # shape=(hidden_size,)
    scale: float = jaxrnn.static_field(1.0)  # static: part of the tree's structure

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.w.shape[0],)

    @property
    def output_size(self) -> int:
        return self.u.shape[0]

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.zeros((*batch_shape, self.output_size), dtype)

    def input_projection(self, x: jax.Array) -> jax.Array:
        return self.scale * (x @ self.w) + self.b

    def recurrence(self, h: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jnp.tanh(projected + self.u * h)
        return h, h


def init(key: jax.Array, input_size: int, hidden_size: int, dtype=jnp.float32) -> IndRNNParams:
    kw, ku = jax.random.split(key)
    return IndRNNParams(
        w=jax.random.normal(kw, (input_size, hidden_size), dtype) / np.sqrt(input_size),
        u=jax.random.uniform(ku, (hidden_size,), dtype, -0.9, 0.9),
        b=jnp.full((hidden_size,), 0.1, dtype),
    )


KEYS = jax.random.split(jax.random.key(0), 4)
XS = jax.random.normal(KEYS[2], (7, 3, 2))  # (time, batch, input_size)
LENGTHS = jnp.array([7, 4, 0])


def loop(params: IndRNNParams, xs: np.ndarray, lengths: np.ndarray, reverse: bool):
    """The plain NumPy loop of one IndRNN over each sequence's valid steps."""
    w, u, b = (np.asarray(a, np.float64) for a in (params.w, params.u, params.b))
    hs = np.zeros((*xs.shape[:2], u.shape[0]))
    finals = np.zeros((xs.shape[1], u.shape[0]))
    for n, length in enumerate(lengths):
        h = np.zeros(u.shape[0])
        steps = range(length)
        for t in reversed(steps) if reverse else steps:
            h = np.tanh(xs[t, n] @ w + b + u * h)
            hs[t, n] = h
        finals[n] = h
    return finals, hs


@pytest.mark.parametrize("reverse", [False, True])
def test_unroll_with_lengths_and_reverse_equals_a_loop(reverse):
    params = init(KEYS[0], 2, 5)
    carry, ys = jax.jit(
        lambda p, x, n: jaxrnn.unroll(p, None, x, lengths=n, reverse=reverse, remat=True)
    )(params, XS, LENGTHS)
    finals, hs = loop(params, np.asarray(XS), np.asarray(LENGTHS), reverse)
    np.testing.assert_allclose(carry, finals, atol=1e-5)
    np.testing.assert_allclose(ys, hs, atol=1e-5)


def test_vmap_equals_batched_and_grad_is_bptt(x64):
    params = init(KEYS[0], 2, 5, jnp.float64)
    xs = XS.astype(jnp.float64)
    batched = jaxrnn.unroll(params, None, xs, lengths=LENGTHS)[1]
    per_sequence = jax.vmap(
        lambda x, n: jaxrnn.unroll(params, None, x, lengths=n)[1], in_axes=(1, 0), out_axes=1
    )(xs, LENGTHS)
    np.testing.assert_allclose(batched, per_sequence, rtol=1e-12)

    def loss(p, x):
        return jnp.sum(jaxrnn.unroll(p, None, x, lengths=LENGTHS, method=Sequential(remat=True))[1])

    check_grads(loss, (params, xs), order=1, modes=("rev",))
    grads = jax.grad(loss)(params, xs)
    assert type(grads) is IndRNNParams and grads.scale == 1.0


def test_stack_bidirectional_and_cell_step():
    layers = [init(KEYS[0], 2, 4), init(KEYS[1], 4, 3)]
    deep = jaxrnn.stack(layers)
    carry, ys = jaxrnn.unroll(deep, None, XS, lengths=LENGTHS)
    _, ys0 = jaxrnn.unroll(layers[0], None, XS, lengths=LENGTHS)
    carry1, ys1 = jaxrnn.unroll(layers[1], None, ys0, lengths=LENGTHS)
    np.testing.assert_allclose(ys, ys1, rtol=1e-6)
    np.testing.assert_allclose(carry[1], carry1, rtol=1e-6)

    # cell_step of the stack is the step of each layer in turn: a loop of steps is unroll.
    step_carry, step_ys = None, []
    for t in range(XS.shape[0]):
        step_carry, y = jaxrnn.cell_step(deep, step_carry, XS[t])
        step_ys.append(y)
    full = jaxrnn.unroll(deep, None, XS)[1]
    np.testing.assert_allclose(jnp.stack(step_ys), full, rtol=1e-5)

    pair = jaxrnn.bidirectional(layers[0], init(KEYS[3], 2, 4), merge="sum")
    bi_carry, bi_ys = jaxrnn.unroll(pair, None, XS, lengths=LENGTHS)
    _, ys_f = jaxrnn.unroll(pair.forward, None, XS, lengths=LENGTHS)
    _, ys_b = jaxrnn.unroll(pair.backward, None, XS, lengths=LENGTHS, reverse=True)
    np.testing.assert_allclose(bi_ys, ys_f + ys_b, rtol=1e-6)
    assert isinstance(bi_carry, jaxrnn.BidirectionalState)


def test_methods_run_it_or_say_why():
    params = init(KEYS[0], 2, 5)
    reference = jaxrnn.unroll(params, None, XS, lengths=LENGTHS, method="sequential")[1]
    deer = jaxrnn.unroll(params, None, XS, lengths=LENGTHS, method="deer")[1]
    np.testing.assert_allclose(deer, reference, atol=1e-5)
    match = r"for method='fused'; .*; got IndRNNParams$"  # HandDerivatives() is "fused"
    with pytest.raises(MethodError, match=match):
        jaxrnn.unroll(params, None, XS, method=HandDerivatives())
    with pytest.raises(MethodError, match=r"for method=HandDerivatives\(unroll=2\); "):
        jaxrnn.unroll(params, None, XS, method=HandDerivatives(unroll=2))


def test_an_incomplete_cell_cannot_be_made():
    @jaxrnn.params_class
    class NoSizes(jaxrnn.Cell):
        w: jax.Array

    with pytest.raises(TypeError, match="abstract"):
        NoSizes(w=jnp.ones(2))
