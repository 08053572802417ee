"""The minLSTM cell (Feng et al. 2024, "Were RNNs All We Needed?"), log-space version."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, Initializer
from jaxrnn.cells.linear import LogSpaceCell, init_log_space, log_g
from jaxrnn.core.params import params_class


@params_class
class MinLSTMParams(LogSpaceCell):
    """Parameters of a minLSTM cell: input-only forget and input gates, normalized; blocks f, i, h̃.

    $$
    \\begin{aligned}
    f_t &= \\sigma(x_t W_{xf} + b_{xf}), \\qquad i_t = \\sigma(x_t W_{xi} + b_{xi}) \\\\
    f'_t &= \\frac{f_t}{f_t + i_t}, \\qquad i'_t = \\frac{i_t}{f_t + i_t} \\\\
    \\tilde h_t &= g(x_t W_{xh} + b_{xh}) \\qquad (g \\text{ as in minGRU}) \\\\
    h_t &= f'_t \\odot h_{t-1} + i'_t \\odot \\tilde h_t
    \\end{aligned}
    $$

    and ``y_t = h_t``. Normalizing makes ``f' + i' = 1``, so the state is a convex mix and
    stays on the scale of ``h̃`` (time-independent, as in the paper). In log space
    (``log_coefficients``) with ``d = softplus(-k_f) - softplus(-k_i)``:
    ``log f' = -softplus(d)`` and ``log i' = -softplus(-d)``.
    """

    w_x: jax.Array  # shape=(input_size, 3 * hidden_size), blocks f, i, h̃
    b_x: jax.Array | None  # shape=(3 * hidden_size,), or None without bias

    num_blocks = 3

    def log_coefficients(self, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(log a, log b) = (log f', log i' + log h̃)``."""
        k_f, k_i, v = jnp.split(projected, 3, axis=-1)
        d = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_g(v)


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> MinLSTMParams:
    """minLSTM params: LeCun-normal ``w_x``, zero biases (no recurrent weights exist)."""
    return init_log_space(
        MinLSTMParams,
        key,
        input_size,
        hidden_size,
        bias=bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
    )
