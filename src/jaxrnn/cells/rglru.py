"""The Real-Gated Linear Recurrent Unit of Griffin and Hawk (De et al. 2024, "Griffin:
Mixing Gated Linear Recurrences with Local Attention for Efficient Language Models")."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, Initializer, InputToWidth, init_input_projection
from jaxrnn.cells.linear import LinearCell
from jaxrnn.core.checks import check_int, check_number, fail
from jaxrnn.core.params import params_class

#: The paper's fixed scale of the recurrence gate's exponent: ``a_t = a^(C r_t)``.
C = 8.0
#: The derivative of ``sqrt(1 - a_t²)`` is bounded by this, as in the authors' code
#: (recurrentgemma): ``1 - a_t²`` tends to 0 as ``r_t -> 0`` and its square root's
#: derivative to infinity, which gave NaNs in their bfloat16 training.
MAX_SQRT_GRADIENT = 1000.0


@jax.custom_jvp
def sqrt_bounded_derivative(v: jax.Array) -> jax.Array:
    """``sqrt(v)``, whose derivative ``1 / (2 sqrt(v))`` is at most ``MAX_SQRT_GRADIENT``
    (it is taken at ``max(v, 1 / (4 MAX_SQRT_GRADIENT²))``). A ``custom_jvp``, so forward
    and reverse mode both apply."""
    return jnp.sqrt(v)


@sqrt_bounded_derivative.defjvp
def _sqrt_bounded_derivative_jvp(primals, tangents):
    (v,), (dv,) = primals, tangents
    floor = 1.0 / (4.0 * MAX_SQRT_GRADIENT**2)
    return jnp.sqrt(v), dv / (2.0 * jnp.sqrt(jnp.maximum(v, floor)))


def block_diagonal(u: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """``u @ blockdiag(w[0], ..., w[heads - 1]) + b`` for ``u (..., heads * block)`` and
    ``w (heads, block, block)``: each head's slice of ``u`` meets its own block."""
    heads, block, _ = w.shape
    blocks = u.reshape(*u.shape[:-1], heads, block)
    out = jnp.einsum("...hi,hij->...hj", blocks, w).reshape(*u.shape[:-1], heads * block)
    return out if b is None else out + b


@params_class
class RGLRUParams(InputToWidth, LinearCell):
    """Parameters of an RG-LRU: a diagonal linear recurrence whose decay and input are
    gated by the input (Griffin, section 2.4, eqs. 1-4).

    $$
    \\begin{aligned}
    r_t &= \\sigma(u_t W_r + b_r) && \\text{(1) recurrence gate} \\\\
    i_t &= \\sigma(u_t W_i + b_i) && \\text{(2) input gate} \\\\
    a_t &= a^{c\\, r_t}, \\quad a = \\sigma(\\Lambda), \\quad c = 8 && \\text{(3)} \\\\
    h_t &= a_t \\odot h_{t-1} + \\sqrt{1 - a_t^2} \\odot (i_t \\odot u_t) && \\text{(4)}
    \\end{aligned}
    $$

    and ``y_t = h_t``. The paper's ``W_a, b_a`` are ``w_r, b_r`` here, its ``W_x, b_x``
    ``w_i, b_i``. As in the paper the state has the width of the RG-LRU's input ``u_t``;
    ``u_t = x_t`` when ``input_size == hidden_size``, otherwise ``u_t = x_t W_in + b_in``
    (the linear layer before the RG-LRU in Hawk's recurrent block). ``W_r`` and ``W_i`` are
    block-diagonal with ``num_heads`` blocks (recurrentgemma's ``BlockDiagonalLinear``;
    one block is a dense matrix), stored as ``(num_heads, block, block)``.

    ``log a_t = -c r_t softplus(-Λ)`` is computed in log space and ``1 - a_t² =
    -expm1(2 log a_t)``, so neither rounds to an inexact 0 or 1; the derivative of the
    square root is bounded by ``MAX_SQRT_GRADIENT`` (``1000``) as in the authors' code.
    No gate reads ``h_{t-1}``: the step is ``h_t = a_t h_{t-1} + b_t`` and
    ``unroll(..., method="parallel")`` applies.

    recurrentgemma's ``RGLRU`` treats a position with ``segment_pos == 0`` as the start of
    a document: there ``h_{t-1}`` is dropped *and* the input is not multiplied by
    ``sqrt(1 - a_t²)``. This cell has no such positions: from a zero carry its first step is
    ``sqrt(1 - a_0²) ⊙ i_0 ⊙ u_0``, which is recurrentgemma's output for ``segment_pos``
    that start at 1. Its ``a_param`` is ``-Λ`` (it computes ``softplus(a_param)``).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "rglru", 8, 8, num_heads=2)
      >>> params.w_r.shape, params.w_in is None
      ((2, 4, 4), True)
      >>> xs = jnp.ones((16, 3, 8))  # (time, batch, features)
      >>> h, ys = jaxrnn.unroll(params, None, xs, method="parallel")  # an associative scan
      >>> h.shape, ys.shape
      ((3, 8), (16, 3, 8))

    References:
      De, Smith, Fernando, Botev, Cristian-Muraru, Gu, Haroun, Berrada, Chen, Srinivasan,
      Desjardins, Doucet, Budden, Teh, Pascanu, De Freitas, Gulcehre, "Griffin: Mixing
      Gated Linear Recurrences with Local Attention for Efficient Language Models", 2024.
    """

    w_in: jax.Array | None  # shape=(input_size, hidden_size), or None if the sizes are equal
    b_in: jax.Array | None  # shape=(hidden_size,), or None (no projection, or no bias)
    w_r: jax.Array  # shape=(num_heads, hidden_size // num_heads, hidden_size // num_heads)
    b_r: jax.Array | None  # shape=(hidden_size,), or None without bias
    w_i: jax.Array  # shape=(num_heads, hidden_size // num_heads, hidden_size // num_heads)
    b_i: jax.Array | None  # shape=(hidden_size,), or None without bias
    a_logit: jax.Array  # shape=(hidden_size,): Λ, with a = σ(Λ)

    @property
    def hidden_size(self) -> int:
        return self.a_logit.shape[0]

    @property
    def num_heads(self) -> int:
        return self.w_r.shape[0]

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.zeros((*batch_shape, self.hidden_size), dtype)

    def input_projection(self, x: jax.Array) -> jax.Array:
        """``[u, u W_r + b_r, u W_i + b_i]`` concatenated on the last axis."""
        u = self.to_width(x)
        gate_r = block_diagonal(u, self.w_r, self.b_r)
        gate_i = block_diagonal(u, self.w_i, self.b_i)
        return jnp.concatenate([u, gate_r, gate_i], axis=-1)

    def linear_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(a_t, sqrt(1 - a_t²) ⊙ i_t ⊙ u_t)``."""
        u, gate_r, gate_i = jnp.split(projected, 3, axis=-1)
        log_a = -C * jax.nn.sigmoid(gate_r) * jax.nn.softplus(-self.a_logit)
        normalization = sqrt_bounded_derivative(-jnp.expm1(2 * log_a))
        return jnp.exp(log_a), normalization * (jax.nn.sigmoid(gate_i) * u)


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    num_heads: int = 1,
    min_rad: float = 0.9,
    max_rad: float = 0.999,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    proj_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> RGLRUParams:
    """RG-LRU params with recurrentgemma's initialization.

    ``a = σ(Λ)`` is drawn with ``a²`` uniform in ``[min_rad², max_rad²]`` (``a`` uniform
    over the area of that ring, as recurrentgemma's ``rnn_real_param_init``; the paper
    states the range of ``a^c`` as ``[0.9, 0.999]``). ``kernel_init`` draws the gates'
    ``(num_heads, block, block)`` weights in one call, so LeCun normal has fan-in
    ``hidden_size``, as recurrentgemma's ``BlockDiagonalLinear``; ``proj_init`` draws
    ``w_in`` (only when ``input_size != hidden_size``); biases from ``bias_init``.
    """
    num_heads = check_int("init_params", "num_heads", num_heads)
    if hidden_size % num_heads:
        fail(
            "init_params",
            "num_heads",
            f"divide hidden_size={hidden_size} (one block of the gates per head)",
            repr(num_heads),
        )
    for name, value in (("min_rad", min_rad), ("max_rad", max_rad)):
        check_number("init_params", name, value, "be a number")
    if not 0.0 <= min_rad < max_rad < 1.0:
        expected = "satisfy 0 <= min_rad < max_rad < 1"
        fail("init_params", "min_rad, max_rad", expected, f"{min_rad}, {max_rad}")
    k_in, k_r, k_i, k_b, k_a = jax.random.split(key, 5)
    w_in, b_in = init_input_projection(
        k_in,
        input_size,
        hidden_size,
        bias=bias,
        proj_init=proj_init,
        bias_init=bias_init,
        dtype=dtype,
    )
    block = hidden_size // num_heads
    b_r = b_i = None
    if bias:
        k_br, k_bi = jax.random.split(k_b)
        b_r, b_i = bias_init(k_br, (hidden_size,), dtype), bias_init(k_bi, (hidden_size,), dtype)
    # Drawn in float32 at least: bfloat16 rounds a = 0.999 to 1, and Λ = logit(1) = inf.
    # A draw of exactly 0 with min_rad = 0 would give a = 0 and Λ = -inf.
    draw_dtype = jnp.promote_types(dtype, jnp.float32)
    unit = jax.random.uniform(k_a, (hidden_size,), draw_dtype, minval=jnp.finfo(draw_dtype).tiny)
    a = jnp.sqrt(unit * (max_rad**2 - min_rad**2) + min_rad**2)
    return RGLRUParams(
        w_in=w_in,
        b_in=b_in,
        w_r=kernel_init(k_r, (num_heads, block, block), dtype),
        b_r=b_r,
        w_i=kernel_init(k_i, (num_heads, block, block), dtype),
        b_i=b_i,
        a_logit=(jnp.log(a) - jnp.log1p(-a)).astype(dtype),
    )
