"""The layer-normalized LSTM (Ba, Kiros and Hinton 2016)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, ORTHOGONAL, Initializer, VectorCell, gatewise
from jaxrnn.cells.lstm import LSTMState
from jaxrnn.core.params import params_class, static_field


def layer_norm(a: jax.Array, gain: jax.Array, epsilon: float) -> jax.Array:
    """``gain * (a - mean(a)) / sqrt(var(a) + epsilon)`` over the last axis."""
    mean = jnp.mean(a, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(a - mean), axis=-1, keepdims=True)
    return gain * (a - mean) * jax.lax.rsqrt(var + epsilon)


@params_class
class LayerNormLSTMParams(VectorCell):
    """Parameters of a layer-normalized LSTM, gates in the order i, f, g, o.

    $$
    \\begin{aligned}
    {[i, f, g, o]} &= \\mathrm{LN}(x_t W_x; \\gamma_x) + \\mathrm{LN}(h_{t-1} W_h;
    \\gamma_h) + b \\\\
    c_t &= \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g) \\\\
    h_t &= \\sigma(o) \\odot \\tanh(\\mathrm{LN}(c_t; \\gamma_c) + \\beta_c)
    \\end{aligned}
    $$

    where ``LN(a; γ) = γ ⊙ (a - mean(a)) / sqrt(var(a) + ε)`` normalizes over the features
    (over all ``4 * hidden_size`` gate pre-activations together, as in the paper), and
    ``y_t = h_t``. The carry is an [`LSTMState`][jaxrnn.LSTMState]; ``c_t`` itself is kept
    unnormalized. The two normalizations of the gates would each have a shift; they add
    up with ``b``, so ``b`` is their single learnable shift.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm_ln", 3, 5)
      >>> xs = 100.0 * jnp.ones((4, 2, 3))  # normalization makes the scale irrelevant
      >>> _, ys = jaxrnn.unroll(params, None, xs)
      >>> bool(jnp.allclose(ys, jaxrnn.unroll(params, None, xs / 100.0)[1], atol=1e-4))
      True

    References:
      Ba, Kiros, Hinton, "Layer Normalization", arXiv:1607.06450, 2016 (section 3.1 and
      the supplementary LSTM equations).
    """

    w_x: jax.Array  # shape=(input_size, 4 * hidden_size)
    w_h: jax.Array  # shape=(hidden_size, 4 * hidden_size)
    b: jax.Array | None  # shape=(4 * hidden_size,), or None without bias
    gain_x: jax.Array  # shape=(4 * hidden_size,): γ_x
    gain_h: jax.Array  # shape=(4 * hidden_size,): γ_h
    gain_c: jax.Array  # shape=(hidden_size,): γ_c
    bias_c: jax.Array | None  # shape=(hidden_size,): β_c, or None without bias
    epsilon: float = static_field(1e-5)

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> LSTMState:
        zeros = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return LSTMState(h=zeros, c=zeros)

    def input_projection(self, x: jax.Array) -> jax.Array:
        projected = layer_norm(x @ self.w_x, self.gain_x, self.epsilon)
        return projected if self.b is None else projected + self.b

    def recurrence(self, carry: LSTMState, projected: jax.Array) -> tuple[LSTMState, jax.Array]:
        gates = projected + layer_norm(carry.h @ self.w_h, self.gain_h, self.epsilon)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        c_normalized = layer_norm(c, self.gain_c, self.epsilon)
        if self.bias_c is not None:
            c_normalized = c_normalized + self.bias_c
        h = jax.nn.sigmoid(o) * jnp.tanh(c_normalized)
        return LSTMState(h=h, c=c), h


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool = True,
    forget_bias: float = 1.0,
    epsilon: float = 1e-5,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = ORTHOGONAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> LayerNormLSTMParams:
    """Layer-normalized LSTM params: LeCun-normal ``w_x``, per-gate orthogonal ``w_h``,
    unit gains, zero shifts except ``forget_bias`` (default 1) on the forget gate of ``b``.
    """
    kx, kh, kb, kc = jax.random.split(key, 4)
    b = bias_c = None
    if bias:
        b = bias_init(kb, (4 * hidden_size,), dtype)
        b = b.at[hidden_size : 2 * hidden_size].add(forget_bias)
        bias_c = bias_init(kc, (hidden_size,), dtype)
    return LayerNormLSTMParams(
        w_x=kernel_init(kx, (input_size, 4 * hidden_size), dtype),
        w_h=gatewise(recurrent_init, 4)(kh, (hidden_size, 4 * hidden_size), dtype),
        b=b,
        gain_x=jnp.ones((4 * hidden_size,), dtype),
        gain_h=jnp.ones((4 * hidden_size,), dtype),
        gain_c=jnp.ones((hidden_size,), dtype),
        bias_c=bias_c,
        epsilon=float(epsilon),
    )
