"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks
for Long Sequences")."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells.linear import LinearCell
from jaxrnn.core.checks import fail
from jaxrnn.core.params import params_class


class LRUState(NamedTuple):
    """Carry of an LRU: the complex state ``h = re + i im``, stored as two real arrays."""

    re: jax.Array  # shape=(..., hidden_size)
    im: jax.Array  # shape=(..., hidden_size)


@params_class
class LRUParams(LinearCell):
    """Parameters of an LRU: a complex diagonal linear recurrence with a real readout.

    $$
    \\begin{aligned}
    \\lambda &= \\exp(-\\exp(\\nu) + i \\exp(\\theta)) \\qquad (|\\lambda| < 1) \\\\
    h_t &= \\lambda \\odot h_{t-1} + \\gamma \\odot (x_t B), \\qquad
        \\gamma = \\exp(\\gamma_{\\log}) \\\\
    y_t &= \\mathrm{Re}(h_t C) + D \\odot x_t
    \\end{aligned}
    $$

    with ``B = B_re + i B_im``, ``C = C_re + i C_im``; the state ``h`` (size ``hidden_size``)
    is complex and the carry holds it as [`LRUState`][jaxrnn.LRUState] ``(re, im)``. As in the paper
    the output has the input's size (``D`` is a diagonal skip connection), so ``output_size ==
    input_size``. ``γ`` starts at ``sqrt(1 - |λ|²)``, which keeps ``E|h|²`` independent of ``|λ|``
    for white-noise inputs, and is trained (log-parameterized) like ``ν`` and ``θ``. Complex
    parameters are stored as real arrays so that every optimizer applies.
    """

    nu_log: jax.Array  # shape=(hidden_size,): |λ| = exp(-exp(nu_log))
    theta_log: jax.Array  # shape=(hidden_size,): arg λ = exp(theta_log)
    gamma_log: jax.Array  # shape=(hidden_size,): input normalization γ = exp(gamma_log)
    b_re: jax.Array  # shape=(input_size, hidden_size)
    b_im: jax.Array  # shape=(input_size, hidden_size)
    c_re: jax.Array  # shape=(hidden_size, input_size)
    c_im: jax.Array  # shape=(hidden_size, input_size)
    d: jax.Array  # shape=(input_size,)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.b_re.shape[0],)

    @property
    def hidden_size(self) -> int:
        return self.nu_log.shape[0]

    @property
    def output_size(self) -> int:
        return self.c_re.shape[1]

    def eigenvalues(self) -> jax.Array:
        """The complex diagonal ``λ``, shape ``(hidden_size,)``."""
        return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log), jnp.exp(self.theta_log)))

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> LRUState:
        zeros = jnp.zeros((*batch_shape, self.hidden_size), dtype)
        return LRUState(re=zeros, im=zeros)

    def input_projection(self, x: jax.Array) -> jax.Array:
        """``[x B_re, x B_im, D x]`` concatenated on the last axis."""
        return jnp.concatenate([x @ self.b_re, x @ self.b_im, x * self.d], axis=-1)

    def linear_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = self.hidden_size
        bx = jax.lax.complex(projected[..., :n], projected[..., n : 2 * n])
        a = jnp.broadcast_to(self.eigenvalues(), bx.shape)
        return a, jnp.exp(self.gamma_log) * bx

    def state_from_carry(self, carry: LRUState) -> jax.Array:
        return jax.lax.complex(carry.re, carry.im)

    def carry_from_state(self, state: jax.Array) -> LRUState:
        return LRUState(re=jnp.real(state), im=jnp.imag(state))

    def readout(self, state: jax.Array, projected: jax.Array) -> jax.Array:
        dx = projected[..., 2 * self.hidden_size :]
        return jnp.real(state) @ self.c_re - jnp.imag(state) @ self.c_im + dx


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
    dtype: Any = jnp.float32,
) -> LRUParams:
    """LRU params with the paper's ring initialization.

    ``|λ|`` is drawn so that ``λ`` is uniform on the ring ``r_min <= |λ| <= r_max`` of the
    complex plane, its phase uniform in ``[0, max_phase]``; ``B ~ N(0, 1/(2 input_size))``
    per real and imaginary part, ``C ~ N(0, 1/hidden_size)``, ``D ~ N(0, 1)``.
    """
    if not 0.0 <= r_min < r_max <= 1.0:
        fail("init_params", "r_min, r_max", "satisfy 0 <= r_min < r_max <= 1", f"{r_min}, {r_max}")
    if not max_phase > 0:
        fail("init_params", "max_phase", "be positive", repr(max_phase))
    k_u1, k_u2, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
    # A draw of exactly 0 would give nu_log = theta_log = log(0) = -inf.
    tiny = jnp.finfo(dtype).tiny
    u1 = jax.random.uniform(k_u1, (hidden_size,), dtype, minval=tiny)
    u2 = jax.random.uniform(k_u2, (hidden_size,), dtype, minval=tiny)
    # |λ|² uniform in [r_min², r_max²] is what makes λ uniform over the ring's area.
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
    theta_log = jnp.log(max_phase * u2)
    modulus = jnp.exp(-jnp.exp(nu_log))
    b_scale = 1.0 / math.sqrt(2 * input_size)
    c_scale = 1.0 / math.sqrt(hidden_size)
    return LRUParams(
        nu_log=nu_log,
        theta_log=theta_log,
        gamma_log=jnp.log(jnp.sqrt(1 - modulus**2)),
        b_re=b_scale * jax.random.normal(k_bre, (input_size, hidden_size), dtype),
        b_im=b_scale * jax.random.normal(k_bim, (input_size, hidden_size), dtype),
        c_re=c_scale * jax.random.normal(k_cre, (hidden_size, input_size), dtype),
        c_im=c_scale * jax.random.normal(k_cim, (hidden_size, input_size), dtype),
        d=jax.random.normal(k_d, (input_size,), dtype),
    )
