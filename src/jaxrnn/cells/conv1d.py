"""The short causal temporal convolution of Hawk's and Griffin's recurrent block (De et al.
2024), as a cell: its carry holds the last inputs, so it stacks with recurrent cells."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, Initializer, InputToWidth, init_input_projection
from jaxrnn.core.checks import check_int
from jaxrnn.core.params import params_class

#: recurrentgemma's ``Conv1D`` kernel initialization: normal, variance 0.01 / width.
CONV_INIT = initializers.variance_scaling(0.01, "fan_in", "normal")


@params_class
class Conv1DParams(InputToWidth):
    """Parameters of a causal depthwise temporal convolution of width ``w``.

    $$
    y_t = b + \\sum_{k=0}^{w-1} W_k \\odot u_{t-w+1+k}
    $$

    where ``W`` has shape ``(w, hidden_size)`` (``W_{w-1}`` weighs the current input) and
    ``u_t = x_t``, or ``u_t = x_t W_in + b_in`` when ``input_size != hidden_size`` (Hawk's
    linear layer before the convolution). The carry is the window of the ``w - 1``
    previous inputs ``u_{t-w+1}, ..., u_{t-1}``, oldest first, shape ``(..., w - 1,
    hidden_size)``; zeros start a sequence, as recurrentgemma's ``Conv1D`` pads. With
    ``reverse=True`` the window holds the later steps (the convolution is causal in the
    order of the run). ``jaxrnn.stack([conv, rglru])`` is Hawk's recurrent branch, and it
    generates step by step with ``cell_step``. ``unroll(..., method="parallel")`` does
    not take it: its carry is shifted, not scaled elementwise.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> hawk = jaxrnn.stack([jaxrnn.init_params(k1, "conv1d", 3, 8, temporal_width=4),
      ...                      jaxrnn.init_params(k2, "rglru", 8, 8)])
      >>> carry, ys = jaxrnn.unroll(hawk, None, jnp.ones((10, 2, 3)))
      >>> carry[0].shape, ys.shape  # the conv's window of 3 inputs, then the RG-LRU's h
      ((2, 3, 8), (10, 2, 8))
    """

    w_in: jax.Array | None  # shape=(input_size, hidden_size), or None if the sizes are equal
    b_in: jax.Array | None  # shape=(hidden_size,), or None (no projection, or no bias)
    w: jax.Array  # shape=(temporal_width, hidden_size): w[-1] weighs the current input
    b: jax.Array | None  # shape=(hidden_size,), or None without bias

    @property
    def hidden_size(self) -> int:
        return self.w.shape[1]

    @property
    def temporal_width(self) -> int:
        return self.w.shape[0]

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> jax.Array:
        return jnp.zeros((*batch_shape, self.temporal_width - 1, self.hidden_size), dtype)

    def input_projection(self, x: jax.Array) -> jax.Array:
        """``u``: ``x``, or ``x W_in + b_in``."""
        return self.to_width(x)

    def recurrence(self, carry: jax.Array, projected: jax.Array) -> tuple[jax.Array, jax.Array]:
        window = jnp.concatenate([carry, projected[..., None, :]], axis=-2)
        y = jnp.sum(window * self.w, axis=-2)
        if self.b is not None:
            y = y + self.b
        return window[..., 1:, :], y


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    temporal_width: int = 4,
    bias: bool = True,
    kernel_init: Initializer = CONV_INIT,
    proj_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> Conv1DParams:
    """Temporal convolution params: ``temporal_width`` (default 4, Griffin's) steps, the
    kernel ``(temporal_width, hidden_size)`` from ``kernel_init`` (default normal with
    variance ``0.01 / temporal_width``, recurrentgemma's), ``w_in`` from ``proj_init``
    (only when ``input_size != hidden_size``), biases from ``bias_init``."""
    temporal_width = check_int("init_params", "temporal_width", temporal_width)
    k_in, k_w, k_b = jax.random.split(key, 3)
    w_in, b_in = init_input_projection(
        k_in,
        input_size,
        hidden_size,
        bias=bias,
        proj_init=proj_init,
        bias_init=bias_init,
        dtype=dtype,
    )
    return Conv1DParams(
        w_in=w_in,
        b_in=b_in,
        w=kernel_init(k_w, (temporal_width, hidden_size), dtype),
        b=bias_init(k_b, (hidden_size,), dtype) if bias else None,
    )
