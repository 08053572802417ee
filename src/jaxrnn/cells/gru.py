"""The GRU cell (PyTorch's ``nn.GRU`` / ``nn.GRUCell``, or Cho et al.'s original form)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import (
    LECUN_NORMAL,
    ORTHOGONAL,
    Initializer,
    VectorCell,
    affine,
    gatewise,
    init_biases,
)
from jaxrnn.core.params import params_class, static_field


@params_class
class GRUParams(VectorCell):
    """Parameters of a GRU cell, gates in PyTorch's order r, z, n.

    With ``reset_after=True`` (PyTorch and cuDNN, the default):

    $$
    \\begin{aligned}
    r &= \\sigma(x_t W_{xr} + b_{xr} + h_{t-1} W_{hr} + b_{hr}) \\\\
    z &= \\sigma(x_t W_{xz} + b_{xz} + h_{t-1} W_{hz} + b_{hz}) \\\\
    n &= \\tanh(x_t W_{xn} + b_{xn} + r \\odot (h_{t-1} W_{hn} + b_{hn})) \\\\
    h_t &= (1 - z) \\odot n + z \\odot h_{t-1}
    \\end{aligned}
    $$

    With ``reset_after=False`` (Cho et al. 2014) the reset gate acts before the matmul:
    ``n = tanh(x_t W_xn + b_xn + (r * h_{t-1}) W_hn + b_hn)``. Output ``y_t = h_t``.
    """

    w_x: jax.Array  # shape=(input_size, 3 * hidden_size)
    w_h: jax.Array  # shape=(hidden_size, 3 * hidden_size)
    b_x: jax.Array | None  # shape=(3 * hidden_size,), or None without bias
    b_h: jax.Array | None  # shape=(3 * hidden_size,), or None without bias
    reset_after: bool = static_field(True)

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b_x)

    def recurrence(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = carry
        _, z, n, _ = self._gates(h, projected)
        h = n + z * (h - n)  # = (1 - z) * n + z * h, one multiply fewer
        return h, h

    def _gates(self, h: jax.Array, projected: jax.Array):
        """``(r, z, n, h W_hn + b_hn)`` of one step; the last is ``None`` without
        ``reset_after`` (there ``W_hn`` multiplies ``r * h``)."""
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        if self.reset_after:
            h_r, h_z, h_n = jnp.split(affine(h, self.w_h, self.b_h), 3, axis=-1)
            r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
            return r, z, jnp.tanh(x_n + r * h_n), h_n
        size = self.hidden_size
        b_rz, b_n = (
            (None, None) if self.b_h is None else (self.b_h[: 2 * size], self.b_h[2 * size :])
        )
        h_r, h_z = jnp.split(affine(h, self.w_h[:, : 2 * size], b_rz), 2, axis=-1)
        r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
        return r, z, jnp.tanh(x_n + affine(r * h, self.w_h[:, 2 * size :], b_n)), None

    def jacobian_diagonal(self, carry: jax.Array, projected: jax.Array) -> jax.Array:
        """The diagonal of ``∂h_t / ∂h_{t-1}`` of ``recurrence(carry, projected)``.

        With ``d_k = (W_{hk})_{ii}`` the diagonal of gate ``k``'s recurrent block
        (``w_h[i, k * hidden_size + i]``) and ``σ' = σ (1 - σ)``:

        $$
        \\begin{aligned}
        \\partial r_i &= r_i (1 - r_i)\\, d_{r,i}, \\qquad
        \\partial z_i = z_i (1 - z_i)\\, d_{z,i} \\\\
        \\partial n_i &= (1 - n_i^2)\\,\\big(\\partial r_i\\, (h_{t-1} W_{hn} + b_{hn})_i
          + r_i\\, d_{n,i}\\big) \\qquad (\\texttt{reset\\_after}) \\\\
        \\partial n_i &= (1 - n_i^2)\\,\\big(r_i\\, d_{n,i}
          + \\textstyle\\sum_j (W_{hr})_{ij} (W_{hn})_{ji}\\, h_j r_j (1 - r_j)\\big)
          \\qquad (\\text{not } \\texttt{reset\\_after}) \\\\
        \\frac{\\partial h_{t,i}}{\\partial h_{t-1,i}} &= (1 - z_i)\\, \\partial n_i + z_i
          + (h_{t-1,i} - n_i)\\, \\partial z_i
        \\end{aligned}
        $$

        ``O(hidden_size)`` beyond the step's own products with ``reset_after=True``; one
        more vector-matrix product (every ``r_j`` reaches ``n_i`` through ``W_hn``)
        without. Forming the whole Jacobian costs ``hidden_size`` times the step. Used by
        quasi-DEER (``jaxrnn.parallel.deer_unroll(..., variant="diagonal")``).

        Example:
          >>> import jax, jax.numpy as jnp, jaxrnn
          >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 2, 3)
          >>> h, p = jnp.ones(3), params.input_projection(jnp.ones(2))
          >>> full = jax.jacfwd(lambda h: params.recurrence(h, p)[0])(h)
          >>> bool(jnp.allclose(params.jacobian_diagonal(h, p), jnp.diagonal(full)))
          True
        """
        h, size = carry, self.hidden_size
        r, z, n, h_n = self._gates(h, projected)
        # w_h[i, k * size + j] -> blocks[i, k, j]; gate k's diagonal is blocks[i, k, i].
        d_r, d_z, d_n = jnp.diagonal(self.w_h.reshape(size, 3, size), axis1=0, axis2=2)
        if h_n is not None:  # reset_after
            dn = (1 - n**2) * (r * (1 - r) * d_r * h_n + r * d_n)
        else:
            w_hr, w_hn = self.w_h[:, :size], self.w_h[:, 2 * size :]
            # ∂(r h)_j / ∂h_i = δ_ij r_j + h_j r_j (1 - r_j) (W_hr)_ij, then through W_hn.
            through_r = (h * r * (1 - r)) @ (w_hr.T * w_hn)
            dn = (1 - n**2) * (r * d_n + through_r)
        dz = z * (1 - z) * d_z
        return (1 - z) * dn + z + (h - n) * dz


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    reset_after: bool = True,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = ORTHOGONAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> GRUParams:
    """GRU params: LeCun-normal ``w_x``, per-gate orthogonal ``w_h``, zero biases."""
    kx, kh, kb = jax.random.split(key, 3)
    b_x, b_h = init_biases(kb, bias, 3 * hidden_size, bias_init, dtype)
    return GRUParams(
        w_x=kernel_init(kx, (input_size, 3 * hidden_size), dtype),
        w_h=gatewise(recurrent_init, 3)(kh, (hidden_size, 3 * hidden_size), dtype),
        b_x=b_x,
        b_h=b_h,
        reset_after=bool(reset_after),
    )
