"""The convolutional LSTM (Shi et al. 2015; Flax's ``ConvLSTMCell``, Keras' ``ConvLSTM2D``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, Cell, Initializer
from jaxrnn.cells.lstm import LSTMState
from jaxrnn.core.checks import fail
from jaxrnn.core.params import params_class, static_field

# Letters naming 1, 2 or 3 spatial dims in lax.conv_general_dilated's layout strings.
_SPATIAL_LETTERS = "DHW"


def same_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 ``'SAME'`` convolution of ``x (..., *spatial, in)`` with ``kernel
    (*kernel_size, in, out)``, over any number of leading batch dims (also none)."""
    num_spatial = kernel.ndim - 2
    letters = _SPATIAL_LETTERS[-num_spatial:]
    # lax.conv_general_dilated wants exactly one batch dim: fold the leading dims into it.
    leading = x.shape[: x.ndim - num_spatial - 1]
    folded = x.reshape((-1, *x.shape[x.ndim - num_spatial - 1 :]))
    y = jax.lax.conv_general_dilated(
        folded,
        kernel,
        window_strides=(1,) * num_spatial,
        padding="SAME",
        dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"),
    )
    return y.reshape((*leading, *y.shape[1:]))


@params_class
class ConvLSTMParams(Cell):
    """Parameters of a convolutional LSTM, gates in the order i, f, g, o.

    The LSTM's matrix products become ``'SAME'`` convolutions (``*``) over the spatial
    dims, so input, state and output keep the spatial shape:

    $$
    \\begin{aligned}
    {[i, f, g, o]} &= x_t * W_x + h_{t-1} * W_h + b \\\\
    c_t &= \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g) \\\\
    h_t &= \\sigma(o) \\odot \\tanh(c_t)
    \\end{aligned}
    $$

    and ``y_t = h_t``. Shapes: ``x (..., *spatial_shape, input_channels)``, ``h`` and
    ``c`` (and ``y``) ``(..., *spatial_shape, hidden_channels)``; the carry is an
    [`LSTMState`][jaxrnn.LSTMState]. As in Flax's ``ConvLSTMCell`` and Keras' ``ConvLSTM2D``
    there are no peephole terms (Shi et al.'s ``W_c ⊙ c``). ``output_size`` is the number
    of hidden channels: ``ys`` of [`unroll`][jaxrnn.unroll] has shape
    ``(time, ..., *spatial_shape, hidden_channels)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "convlstm", 1, 8,
      ...                             spatial_shape=(16, 16), kernel_size=3)
      >>> frames = jnp.ones((10, 4, 16, 16, 1))  # (time, batch, height, width, channels)
      >>> carry, ys = jaxrnn.unroll(params, None, frames)
      >>> ys.shape, carry.c.shape
      ((10, 4, 16, 16, 8), (4, 16, 16, 8))

    References:
      Shi, Chen, Wang, Yeung, Wong, Woo, "Convolutional LSTM Network: A Machine Learning
      Approach for Precipitation Nowcasting", NeurIPS 2015.
    """

    w_x: jax.Array  # shape=(*kernel_size, input_channels, 4 * hidden_channels)
    w_h: jax.Array  # shape=(*kernel_size, hidden_channels, 4 * hidden_channels)
    b: jax.Array | None  # shape=(4 * hidden_channels,), or None without bias
    spatial_shape: tuple[int, ...] = static_field()  # e.g. (height, width)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.spatial_shape, self.w_x.shape[-2])

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return tuple(self.w_x.shape[:-2])

    @property
    def hidden_size(self) -> int:
        return self.w_h.shape[-2]

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> LSTMState:
        zeros = jnp.zeros((*batch_shape, *self.spatial_shape, self.hidden_size), dtype)
        return LSTMState(h=zeros, c=zeros)

    def input_projection(self, x: jax.Array) -> jax.Array:
        projected = same_conv(x, self.w_x)
        return projected if self.b is None else projected + self.b

    def recurrence(self, carry: LSTMState, projected: jax.Array) -> tuple[LSTMState, jax.Array]:
        gates = projected + same_conv(carry.h, self.w_h)
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h=h, c=c), h


def _check_shape(argument: str, value: Any, expected: str) -> tuple[int, ...]:
    try:
        shape = tuple(value)
    except TypeError:
        shape = ()
    ok = 1 <= len(shape) <= len(_SPATIAL_LETTERS) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape
    )
    if not ok:
        fail("init_params", argument, expected, repr(value), TypeError)
    return shape


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    spatial_shape: Sequence[int] | None = None,
    kernel_size: int | Sequence[int] = 3,
    bias: bool = True,
    forget_bias: float = 1.0,
    kernel_init: Initializer = LECUN_NORMAL,
    recurrent_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> ConvLSTMParams:
    """ConvLSTM params; ``input_size`` and ``hidden_size`` count channels.

    ``spatial_shape`` (required) is the input's spatial shape, e.g. ``(height, width)``
    (1 to 3 dims); ``kernel_size`` an int (the same for every spatial dim) or one size per
    dim. Both kernels are LeCun-normal (as Flax's ``Conv``), the bias zero except
    ``forget_bias`` (default 1) on the forget gate.
    """
    spatial_shape = _check_shape(
        "spatial_shape",
        spatial_shape,
        "be given for cell 'convlstm': the input's spatial shape, e.g. (height, width)",
    )
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,) * len(spatial_shape)
    kernel_size = _check_shape(
        "kernel_size",
        kernel_size,
        f"be a positive int or {len(spatial_shape)} positive ints (one per spatial dim)",
    )
    if len(kernel_size) != len(spatial_shape):
        fail(
            "init_params",
            "kernel_size",
            f"have one size per spatial dim of spatial_shape={spatial_shape}",
            repr(kernel_size),
        )
    kx, kh, kb = jax.random.split(key, 3)
    b = None
    if bias:
        b = bias_init(kb, (4 * hidden_size,), dtype)
        b = b.at[hidden_size : 2 * hidden_size].add(forget_bias)
    return ConvLSTMParams(
        w_x=kernel_init(kx, (*kernel_size, input_size, 4 * hidden_size), dtype),
        w_h=recurrent_init(kh, (*kernel_size, hidden_size, 4 * hidden_size), dtype),
        b=b,
        spatial_shape=spatial_shape,
    )
