"""The minGRU cell (Feng et al. 2024, "Were RNNs All We Needed?"), log-space version."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, Initializer
from jaxrnn.cells.linear import LogSpaceCell, init_log_space, log_g
from jaxrnn.core.params import params_class


@params_class
class MinGRUParams(LogSpaceCell):
    """Parameters of a minGRU cell: a GRU whose gates see the input only, blocks z, h̃.

    $$
    \\begin{aligned}
    z_t &= \\sigma(x_t W_{xz} + b_{xz}) \\\\
    \\tilde h_t &= g(x_t W_{xh} + b_{xh}), \\qquad
        g(v) = \\begin{cases} v + 0.5 & v \\ge 0 \\\\ \\sigma(v) & v < 0 \\end{cases} \\\\
    h_t &= (1 - z_t) \\odot h_{t-1} + z_t \\odot \\tilde h_t
    \\end{aligned}
    $$

    and ``y_t = h_t``. This is the paper's log-space version: ``g`` keeps ``h̃`` positive
    and the coefficients are computed as ``log(1 - z) = -softplus(k)``,
    ``log z = -softplus(-k)``, ``log h̃ = log g(v)`` (``log_coefficients``), so that
    neither saturates to an inexact 0 or 1. Because no gate reads ``h_{t-1}``, the step is
    ``h_t = a_t * h_{t-1} + b_t`` and ``unroll(..., method="parallel")`` applies.
    """

    w_x: jax.Array  # shape=(input_size, 2 * hidden_size), blocks z, h̃
    b_x: jax.Array | None  # shape=(2 * hidden_size,), or None without bias

    num_blocks = 2

    def log_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log a, log b) = (log(1 - z), log z + log h̃)``."""
        k, v = jnp.split(projected, 2, axis=-1)
        return -jax.nn.softplus(k), -jax.nn.softplus(-k) + log_g(v)


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> MinGRUParams:
    """minGRU params: LeCun-normal ``w_x``, zero biases (no recurrent weights exist)."""
    return init_log_space(
        MinGRUParams,
        key,
        input_size,
        hidden_size,
        bias=bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
    )
