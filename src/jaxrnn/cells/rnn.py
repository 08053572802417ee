"""The Elman RNN cell (PyTorch's ``nn.RNN`` / ``nn.RNNCell``)."""

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
from jaxrnn.core.checks import check_choice
from jaxrnn.core.params import params_class, static_field

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@params_class
class RNNParams(VectorCell):
    """Parameters of an Elman RNN cell.

    $$
    h_t = \\mathrm{act}(x_t W_x + b_x + h_{t-1} W_h + b_h), \\qquad y_t = h_t
    $$

    with ``act`` = ``tanh`` or ``relu``. Two biases, as in PyTorch, so that weights
    round-trip exactly.
    """

    w_x: jax.Array  # shape=(input_size, hidden_size)
    w_h: jax.Array  # shape=(hidden_size, hidden_size)
    b_x: jax.Array | None  # shape=(hidden_size,), or None without bias
    b_h: jax.Array | None  # shape=(hidden_size,), or None without bias
    activation: str = static_field("tanh")

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b_x)

    def recurrence(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = ACTIVATIONS[self.activation](projected + affine(carry, self.w_h, self.b_h))
        return h, h

    def jacobian_diagonal(self, carry: jax.Array, projected: jax.Array) -> jax.Array:
        """The diagonal of ``∂h_t / ∂h_{t-1}`` of ``recurrence(carry, projected)``.

        With ``a = projected + h_{t-1} W_h + b_h``:

        $$
        \\frac{\\partial h_{t,i}}{\\partial h_{t-1,i}} = \\mathrm{act}'(a_i)\\, (W_h)_{ii},
        \\qquad \\tanh' = 1 - \\tanh^2, \\quad \\mathrm{relu}'(a) = [a > 0]
        $$

        ``O(hidden_size)`` beyond the step's own matrix product, where forming the whole
        Jacobian and taking its diagonal costs ``hidden_size`` times the step. Used by
        quasi-DEER (``jaxrnn.parallel.deer_unroll(..., variant="diagonal")``).

        Example:
          >>> import jax, jax.numpy as jnp, jaxrnn
          >>> params = jaxrnn.init_params(jax.random.key(0), "rnn", 2, 3)
          >>> h, p = jnp.ones(3), params.input_projection(jnp.ones(2))
          >>> full = jax.jacfwd(lambda h: params.recurrence(h, p)[0])(h)
          >>> bool(jnp.allclose(params.jacobian_diagonal(h, p), jnp.diagonal(full)))
          True
        """
        pre = projected + affine(carry, self.w_h, self.b_h)
        # relu's derivative at 0 is taken as 0, as jax.nn.relu's is.
        slope = 1 - jnp.tanh(pre) ** 2 if self.activation == "tanh" else (pre > 0).astype(pre.dtype)
        return slope * jnp.diagonal(self.w_h)


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    activation: str = "tanh",
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = ORTHOGONAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> RNNParams:
    """Elman cell params: LeCun-normal ``w_x``, orthogonal ``w_h``, zero biases."""
    check_choice("init_params", "activation", activation, tuple(ACTIVATIONS))
    kx, kh, kb = jax.random.split(key, 3)
    b_x, b_h = init_biases(kb, bias, hidden_size, bias_init, dtype)
    return RNNParams(
        w_x=kernel_init(kx, (input_size, hidden_size), dtype),
        w_h=gatewise(recurrent_init, 1)(kh, (hidden_size, hidden_size), dtype),
        b_x=b_x,
        b_h=b_h,
        activation=activation,
    )
