"""The sLSTM cell of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"):
exponential input gates, a normalizer state, a log-scale stabilizer, and heads."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, ORTHOGONAL, Cell, Initializer, affine, gatewise
from jaxrnn.core.checks import check_choice, check_int, fail
from jaxrnn.core.params import params_class, static_field

#: The values of ``forget_gate``: ``log f_t`` is ``log σ(f̃_t)`` or ``f̃_t``.
FORGET_GATES = ("sigmoid", "exp")


class SLSTMState(NamedTuple):
    """Carry of an sLSTM: hidden state, and the cell state, normalizer and stabilizer.

    ``c`` and ``n`` are kept divided by ``exp(m)`` (the paper's stabilized states, eqs.
    15-17), so that ``exp`` of the input gate never overflows; ``h = o c / n`` does not
    depend on ``m``. The initial carry is all zeros, as in xLSTM: ``n = 0`` marks a state
    that holds nothing, and the step from it sets ``m_t = ĩ_t``.
    """

    h: jax.Array  # shape=(..., hidden_size)
    c: jax.Array  # shape=(..., hidden_size): c_t exp(-m_t)
    n: jax.Array  # shape=(..., hidden_size): n_t exp(-m_t)
    m: jax.Array  # shape=(..., hidden_size): the log-scale stabilizer m_t


@params_class
class SLSTMParams(Cell):
    """Parameters of an sLSTM cell, gates in xLSTM's order i, f, z, o.

    $$
    \\begin{aligned}
    {[\\tilde\\imath, \\tilde f, \\tilde z, \\tilde o]} &= x_t W_x + h_{t-1} R + b \\\\
    \\log f_t &= \\log\\sigma(\\tilde f) \\ \\text{(or } \\tilde f
        \\text{ with } \\texttt{forget\\_gate="exp"}) \\\\
    m_t &= \\max(\\log f_t + m_{t-1},\\ \\tilde\\imath) \\qquad
        (m_t = \\tilde\\imath \\text{ where } n_{t-1} = 0) \\\\
    i'_t &= \\exp(\\tilde\\imath - m_t), \\qquad
        f'_t = \\exp(\\log f_t + m_{t-1} - m_t) \\\\
    c_t &= f'_t \\odot c_{t-1} + i'_t \\odot \\tanh(\\tilde z) \\\\
    n_t &= f'_t \\odot n_{t-1} + i'_t \\\\
    h_t &= \\sigma(\\tilde o) \\odot c_t / n_t
    \\end{aligned}
    $$

    and ``y_t = h_t`` (paper section 2.2, eqs. 8-17, with the stabilizer of eqs. 15-17:
    the unstabilized ``c_t e^{m_t}``, ``n_t e^{m_t}`` follow eqs. 8-9 with the
    exponential input gate ``i_t = exp(ĩ)``, and ``h_t`` is the same). ``R`` is
    block-diagonal with ``num_heads`` heads: ``hidden_size`` is split into heads of
    ``head_size`` units, and each head's recurrence reads only its own units of
    ``h_{t-1}``. ``f'_t`` is clipped at 1, which changes nothing except the step from
    ``n_{t-1} = 0``, where it multiplies a zero state (as xLSTM's kernels do).

    Layouts: the gate axis of ``w_x`` and ``b`` is ``(gate, head, unit)`` (xLSTM's
    ``"SBGNH"``); ``r[k, j, g, l]`` is the weight from unit ``j`` of head ``k`` to unit
    ``l`` of gate ``g`` of the same head (the layout of xLSTM's
    ``sLSTMCell.recurrent_kernel``; its ``bias`` is ``b`` reshaped to ``(head, gate,
    unit)``). xLSTM's cell takes ``x_t W_x`` as its input: its layer computes it with
    head-wise (block-diagonal) projections, a special case of the dense ``w_x`` here.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "slstm", 3, 6, num_heads=2)
      >>> print(params)
      SLSTMParams(w_x=float32[3,24], r=float32[2,3,4,3], b=float32[24],
                  forget_gate='sigmoid')
      >>> carry, ys = jaxrnn.unroll(params, None, 100.0 * jnp.ones((5, 3)))  # exp(100) overflows
      >>> ys.shape, carry.m.shape, bool(jnp.all(jnp.isfinite(ys)))
      ((5, 6), (6,), True)

    References:
      Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter,
      Hochreiter, "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024,
      arXiv:2405.04517 (section 2.2; the sLSTM in detail in the appendix).
    """

    w_x: jax.Array  # shape=(input_size, 4 * hidden_size), blocks i, f, z, o of (head, unit)
    r: jax.Array  # shape=(num_heads, head_size, 4, head_size): R, one block per head
    b: jax.Array | None  # shape=(4 * hidden_size,), or None without bias
    forget_gate: str = static_field("sigmoid")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.w_x.shape[0],)

    @property
    def num_heads(self) -> int:
        return self.r.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.r.shape[0] * self.r.shape[1]

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> SLSTMState:
        zeros = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return SLSTMState(h=zeros, c=zeros, n=zeros, m=zeros)

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b)

    def recurrent_projection(self, h: jax.Array) -> jax.Array:
        """``h R``: each head's units times its block of ``R``, as ``(..., 4 * hidden_size)``
        in the ``(gate, head, unit)`` layout of ``w_x``."""
        heads = h.reshape(*h.shape[:-1], self.num_heads, -1)  # (..., head, unit)
        gates = jnp.einsum("...kj,kjgl->...gkl", heads, self.r)
        return gates.reshape(*h.shape[:-1], 4 * self.hidden_size)

    def recurrence(self, carry: SLSTMState, projected: jax.Array) -> tuple[SLSTMState, jax.Array]:
        pre = projected + self.recurrent_projection(carry.h)
        i, f, z, o = jnp.split(pre, 4, axis=-1)
        if self.forget_gate == "sigmoid":
            log_f = jax.nn.log_sigmoid(f)
        elif self.forget_gate == "exp":
            log_f = f
        else:
            fail("SLSTMParams", "forget_gate", "be 'sigmoid' or 'exp'", repr(self.forget_gate))
        log_f_m = log_f + carry.m
        # A state with n = 0 holds nothing to keep: the stabilizer restarts at ĩ.
        m = jnp.where(carry.n == 0, i, jnp.maximum(log_f_m, i))
        input_gate = jnp.exp(i - m)
        forget_gate = jnp.exp(jnp.minimum(log_f_m - m, 0))
        c = forget_gate * carry.c + input_gate * jnp.tanh(z)
        n = forget_gate * carry.n + input_gate
        h = jax.nn.sigmoid(o) * c / n
        return SLSTMState(h=h, c=c, n=n, m=m), h


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    num_heads: int = 1,
    forget_gate: str = "sigmoid",
    bias: bool = True,
    forget_bias: float = 1.0,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = ORTHOGONAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> SLSTMParams:
    """sLSTM params: LeCun-normal ``w_x``, ``R`` drawn by ``recurrent_init`` (orthogonal)
    per head and gate, zero biases except ``forget_bias`` (default 1) on the forget gate.

    ``num_heads`` (default 1: a dense ``R``; xLSTM's default is 4) must divide
    ``hidden_size``. xLSTM initializes ``R`` to zeros and spreads the forget biases over
    a range instead; pass ``recurrent_init=jax.nn.initializers.zeros`` for the former.
    """
    num_heads = check_int("init_params", "num_heads", num_heads)
    if hidden_size % num_heads:
        fail("init_params", "num_heads", f"divide hidden_size={hidden_size}", repr(num_heads))
    check_choice("init_params", "forget_gate", forget_gate, FORGET_GATES)
    kx, kr, kb = jax.random.split(key, 3)
    size = hidden_size // num_heads
    # Per head, a (size, 4 * size) matrix of per-gate blocks, as an LSTM's w_h is drawn.
    per_head = [
        gatewise(recurrent_init, 4)(k, (size, 4 * size), dtype)
        for k in jax.random.split(kr, num_heads)
    ]
    r = jnp.stack(per_head).reshape(num_heads, size, 4, size)
    b = None
    if bias:
        b = bias_init(kb, (4 * hidden_size,), dtype)
        b = b.at[hidden_size : 2 * hidden_size].add(forget_bias)
    return SLSTMParams(
        w_x=kernel_init(kx, (input_size, 4 * hidden_size), dtype),
        r=r,
        b=b,
        forget_gate=forget_gate,
    )
