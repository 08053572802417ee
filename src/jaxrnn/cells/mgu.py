"""The minimal gated unit (MGU, Zhou et al. 2016): a GRU with one gate."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, ORTHOGONAL, Initializer, VectorCell, affine, gatewise
from jaxrnn.core.params import params_class


@params_class
class MGUParams(VectorCell):
    """Parameters of a minimal gated unit, blocks in the order f, h̃.

    $$
    \\begin{aligned}
    f_t &= \\sigma(x_t W_{xf} + h_{t-1} W_{hf} + b_f) \\\\
    \\tilde h_t &= \\tanh(x_t W_{xh} + (f_t \\odot h_{t-1}) W_{hh} + b_h) \\\\
    h_t &= (1 - f_t) \\odot h_{t-1} + f_t \\odot \\tilde h_t
    \\end{aligned}
    $$

    and ``y_t = h_t``. The single forget gate plays both GRU roles: it selects what of
    ``h_{t-1}`` the candidate reads, and how much of the state is replaced.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "mgu", 3, 5)
      >>> h, y = jaxrnn.cell_step(params, None, jnp.ones(3))  # one unbatched step
      >>> bool(jnp.all(h == y)), y.shape
      (True, (5,))

    References:
      Zhou, Wu, Zhang, Zhou, "Minimal gated unit for recurrent neural networks",
      International Journal of Automation and Computing, 2016.
    """

    w_x: jax.Array  # shape=(input_size, 2 * hidden_size): [W_xf, W_xh]
    w_h: jax.Array  # shape=(hidden_size, 2 * hidden_size): [W_hf, W_hh]
    b: jax.Array | None  # shape=(2 * hidden_size,): [b_f, b_h], or None without bias

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b)

    def recurrence(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = carry
        size = self.hidden_size
        x_f, x_h = projected[..., :size], projected[..., size:]
        f = jax.nn.sigmoid(x_f + h @ self.w_h[:, :size])
        candidate = jnp.tanh(x_h + (f * h) @ self.w_h[:, size:])
        h = (1.0 - f) * h + f * candidate
        return h, h


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = ORTHOGONAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> MGUParams:
    """MGU params: LeCun-normal ``w_x``, per-block orthogonal ``w_h``, zero bias."""
    kx, kh, kb = jax.random.split(key, 3)
    return MGUParams(
        w_x=kernel_init(kx, (input_size, 2 * hidden_size), dtype),
        w_h=gatewise(recurrent_init, 2)(kh, (hidden_size, 2 * hidden_size), dtype),
        b=bias_init(kb, (2 * hidden_size,), dtype) if bias else None,
    )
