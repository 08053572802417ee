"""The output layer of an RNN: ``y_t = activation(h_t W_y + b_y)``.

A readout is applied to each step's hidden state independently, so the same function
serves a single step ``h`` of shape ``(..., hidden_size)`` and a whole output sequence
``ys`` of shape ``(time, ..., hidden_size)``: the matrix product acts on the last axis only.
The activation is chosen at the call, not stored in the params, so that one set of
weights can give logits for a loss (``"identity"``) and probabilities for a reader
(``"softmax"``) without two copies of the same option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.nn import initializers
from jax.typing import ArrayLike

from jaxrnn.cells.base import LECUN_NORMAL, Initializer, affine
from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_choice,
    check_features,
    check_floating,
    check_floating_dtype,
    check_int,
    check_key,
    fail,
)
from jaxrnn.core.params import params_class

__all__ = ["ACTIVATIONS", "ReadoutParams", "init_readout", "readout"]

#: Activation name -> function applied to the last axis of ``h W_y + b_y``.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "identity": lambda z: z,
    "sigmoid": jax.nn.sigmoid,
    "softmax": lambda z: jax.nn.softmax(z, axis=-1),
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}


@params_class
class ReadoutParams:
    """Weights of a readout ``y = activation(h W_y + b_y)``. See
    [`readout`][jaxrnn.heads.readout]."""

    w_y: jax.Array  # shape=(input_size, output_size)
    b_y: jax.Array | None  # shape=(output_size,), or None without bias

    @property
    def input_size(self) -> int:
        return self.w_y.shape[0]

    @property
    def output_size(self) -> int:
        return self.w_y.shape[1]


def init_readout(
    key: jax.Array,
    input_size: int,
    output_size: int,
    *,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> ReadoutParams:
    """Initialize a readout: LeCun-normal ``W_y`` and zero ``b_y`` by default.

    $$
    W_y \\in \\mathbb{R}^{\\text{input\\_size} \\times \\text{output\\_size}},
    \\qquad b_y \\in \\mathbb{R}^{\\text{output\\_size}}
    $$

    Args:
      key: a PRNG key.
      input_size: size of the hidden state fed to the readout (the RNN's ``output_size``).
      output_size: number of outputs (classes, or regression targets).
      bias: include ``b_y``.
      kernel_init: initializer of ``W_y`` (any ``jax.nn.initializers`` function).
      bias_init: initializer of ``b_y``.
      dtype: dtype of the weights.

    Returns:
      [`ReadoutParams`][jaxrnn.heads.ReadoutParams] with ``w_y`` of shape ``(input_size,
      output_size)``.

    Example:
      >>> import jax, jaxrnn
      >>> print(jaxrnn.heads.init_readout(jax.random.key(0), 8, 3))
      ReadoutParams(w_y=float32[8,3], b_y=float32[3])
    """
    where = "init_readout"
    check_key(where, key, optional=False)
    input_size = check_int(where, "input_size", input_size)
    output_size = check_int(where, "output_size", output_size)
    check_bool(where, "bias", bias)
    dtype = check_floating_dtype(where, "dtype", dtype)
    kw, kb = jax.random.split(key)
    return ReadoutParams(
        w_y=kernel_init(kw, (input_size, output_size), dtype),
        b_y=bias_init(kb, (output_size,), dtype) if bias else None,
    )


def readout(params: ReadoutParams, h: ArrayLike, activation: str = "identity") -> jax.Array:
    """Apply the output layer to one step's state or to a whole sequence of outputs.

    $$
    y = \\mathrm{activation}(h W_y + b_y)
    $$

    with ``activation`` one of ``"identity"`` (logits, what the losses in
    ``jaxrnn.losses`` expect), ``"sigmoid"``, ``"softmax"`` (over the last axis),
    ``"tanh"``, ``"relu"``.

    Args:
      params: from [`init_readout`][jaxrnn.heads.init_readout].
      h: states ``(..., input_size)``: e.g. ``(batch, hidden)`` for one step or
        ``(time, batch, hidden)`` for the ``ys`` of [`unroll`][jaxrnn.unroll].
      activation: name of the activation.

    Returns:
      ``(..., output_size)``, with the leading dims of ``h``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.heads.init_readout(jax.random.key(0), 4, 3)
      >>> probs = jaxrnn.heads.readout(params, jnp.ones((5, 2, 4)), activation="softmax")
      >>> probs.shape, bool(jnp.allclose(probs.sum(-1), 1.0))
      ((5, 2, 3), True)
    """
    if not isinstance(params, ReadoutParams):
        fail("readout", "params", "be ReadoutParams", type(params).__name__, TypeError)
    check_choice("readout", "activation", activation, tuple(ACTIVATIONS))
    h = check_array("readout", "h", h)
    check_floating("readout", "h", h)
    check_features("readout", "h", h, (params.input_size,), (), ("input_size",))
    return ACTIVATIONS[activation](affine(h, params.w_y, params.b_y))
