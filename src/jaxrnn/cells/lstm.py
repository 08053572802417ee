"""The LSTM cell (PyTorch's ``nn.LSTM`` / ``nn.LSTMCell``, with optional ``proj_size``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import (
    LECUN_NORMAL,
    ORTHOGONAL,
    Cell,
    Initializer,
    affine,
    gatewise,
    init_biases,
)
from jaxrnn.core.params import params_class


class LSTMState(NamedTuple):
    """Carry of an LSTM: hidden state and cell state."""

    h: jax.Array  # shape=(..., output_size): proj_size if projected, else hidden_size
    c: jax.Array  # shape=(..., hidden_size)


@params_class
class LSTMParams(Cell):
    """Parameters of an LSTM cell, gates in PyTorch's order i, f, g, o.

    $$
    \\begin{aligned}
    {[i, f, g, o]} &= x_t W_x + b_x + h_{t-1} W_h + b_h \\\\
    c_t &= \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g) \\\\
    h_t &= (\\sigma(o) \\odot \\tanh(c_t))\\, W_{proj} \\qquad (W_{proj} = I
    \\text{ when there is no projection})
    \\end{aligned}
    $$

    and ``y_t = h_t``. With a projection (PyTorch's ``proj_size``), ``h`` has size
    ``proj_size`` and ``c`` has size ``hidden_size``.
    """

    w_x: jax.Array  # shape=(input_size, 4 * hidden_size)
    w_h: jax.Array  # shape=(output_size, 4 * hidden_size)
    b_x: jax.Array | None  # shape=(4 * hidden_size,), or None without bias
    b_h: jax.Array | None  # shape=(4 * hidden_size,), or None without bias
    w_proj: jax.Array | None = None  # shape=(hidden_size, proj_size), or None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.w_x.shape[0],)

    @property
    def hidden_size(self) -> int:
        return self.w_x.shape[1] // 4

    @property
    def output_size(self) -> int:
        return self.hidden_size if self.w_proj is None else self.w_proj.shape[1]

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> LSTMState:
        return LSTMState(
            h=jnp.zeros((*batch_shape, self.output_size), dtype),
            c=jnp.zeros((*batch_shape, self.hidden_size), dtype),
        )

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b_x)

    def recurrence(self, carry: LSTMState, projected: jax.Array) -> tuple[LSTMState, jax.Array]:
        _, _, _, o, c = self._gates(carry, projected)
        h = o * jnp.tanh(c)
        if self.w_proj is not None:
            h = h @ self.w_proj
        return LSTMState(h=h, c=c), h

    def _gates(self, carry: LSTMState, projected: jax.Array):
        """The activated gates ``σ(i), σ(f), tanh(g), σ(o)`` of one step and the new ``c``."""
        gates = projected + affine(carry.h, self.w_h, self.b_h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        return i, f, g, o, f * carry.c + i * g

    def jacobian_diagonal(self, carry: LSTMState, projected: jax.Array) -> LSTMState:
        """The diagonal of ``∂(h_t, c_t) / ∂(h_{t-1}, c_{t-1})`` of ``recurrence``, as an
        ``LSTMState`` (``h``: ``∂h_{t,i}/∂h_{t-1,i}``, ``c``: ``∂c_{t,i}/∂c_{t-1,i}``).

        ``c_{t-1}`` reaches ``c_t`` only through the forget gate, so the ``c`` part is
        exactly ``σ(f)``. ``h_{t-1}`` reaches every gate through its block ``W_{hk}`` of
        ``W_h`` (``k`` = i, f, g, o); with ``u = σ(o)(1 - \\tanh^2 c_t)``, ``σ' = σ(1-σ)``
        and the coefficients

        $$
        \\alpha_i = u\\, σ'(i) \\tanh g, \\quad \\alpha_f = u\\, σ'(f)\\, c_{t-1}, \\quad
        \\alpha_g = u\\, σ(i) (1 - \\tanh^2 g), \\quad \\alpha_o = σ'(o) \\tanh c_t,
        $$

        $$
        \\frac{\\partial h_{t,p}}{\\partial h_{t-1,p}}
          = \\sum_k \\sum_j (W_{hk})_{pj}\\, \\alpha_{k,j}\\, (W_{proj})_{jp}
          \\quad \\Big(= \\sum_k (W_{hk})_{pp}\\, \\alpha_{k,p} \\text{ without projection}\\Big).
        $$

        ``O(hidden_size)`` beyond the step's own products without a projection,
        ``O(proj_size · hidden_size)`` (like the step) with one; forming the whole
        Jacobian costs the state size times the step. Used by quasi-DEER
        (``jaxrnn.parallel.deer_unroll(..., variant="diagonal")``), whose flattened state is
        ``ravel_pytree(LSTMState(h, c))``: ``h`` first, then ``c``.

        Example:
          >>> import jax, jax.numpy as jnp, jaxrnn
          >>> from jax.flatten_util import ravel_pytree
          >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 2, 3)
          >>> state, p = jaxrnn.init_carry(params), params.input_projection(jnp.ones(2))
          >>> flat, unravel = ravel_pytree(state)
          >>> step = lambda s: ravel_pytree(params.recurrence(unravel(s), p)[0])[0]
          >>> diagonal = ravel_pytree(params.jacobian_diagonal(state, p))[0]
          >>> bool(jnp.allclose(diagonal, jnp.diagonal(jax.jacfwd(step)(flat))))
          True
        """
        i, f, g, o, c = self._gates(carry, projected)
        tanh_c = jnp.tanh(c)
        u = o * (1 - tanh_c**2)  # ∂h_t / ∂c_t before the projection
        coefficients = [u * i * (1 - i) * g, u * f * (1 - f) * carry.c, u * i * (1 - g**2)]
        alpha = jnp.stack([*coefficients, o * (1 - o) * tanh_c], axis=-2)  # (..., gate, hidden)
        rows = self.w_h.shape[0]
        # w_h[p, k * hidden + j] -> blocks[p, k, j]
        blocks = self.w_h.reshape(rows, 4, self.hidden_size)
        if self.w_proj is None:
            dh = jnp.sum(alpha * jnp.diagonal(blocks, axis1=0, axis2=2), axis=-2)
        else:
            dh = jnp.einsum("...kj,pkj->...p", alpha, blocks * self.w_proj.T[:, None, :])
        return LSTMState(h=dh, c=f)


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    proj_size: int = 0,
    bias: bool = True,
    forget_bias: float = 1.0,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = ORTHOGONAL,
    bias_init: Initializer = initializers.zeros,
    proj_init: Initializer = LECUN_NORMAL,
    dtype: Any = jnp.float32,
) -> LSTMParams:
    """LSTM params: LeCun-normal ``w_x``, per-gate orthogonal ``w_h``, zero biases except
    ``forget_bias`` (default 1, Jozefowicz et al. 2015) added to the forget gate of ``b_x``.
    """
    kx, kh, kb, kp = jax.random.split(key, 4)
    output_size = proj_size or hidden_size
    b_x, b_h = init_biases(kb, bias, 4 * hidden_size, bias_init, dtype)
    if b_x is not None and forget_bias:
        b_x = b_x.at[hidden_size : 2 * hidden_size].add(forget_bias)
    return LSTMParams(
        w_x=kernel_init(kx, (input_size, 4 * hidden_size), dtype),
        w_h=gatewise(recurrent_init, 4)(kh, (output_size, 4 * hidden_size), dtype),
        b_x=b_x,
        b_h=b_h,
        w_proj=proj_init(kp, (hidden_size, proj_size), dtype) if proj_size else None,
    )
