"""Dropout driven by an explicit key."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.core.checks import check_array, check_floating, check_key, check_rate


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Inverted dropout: zero each element with probability ``rate``, scale the rest.

    $$
    y = x \\odot m / (1 - p), \\qquad m_i \\sim \\mathrm{Bernoulli}(1 - p)
    $$

    Args:
      key: a JAX PRNG key.
      x: array of any shape.
      rate: drop probability ``p`` in ``[0, 1)``.

    Returns:
      An array like ``x`` whose expectation over ``key`` is ``x``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> y = dropout(jax.random.key(0), jnp.ones(1000), 0.5)
      >>> bool(jnp.all((y == 0) | (y == 2)))
      True
    """
    check_key("dropout", key, optional=False)
    x = check_array("dropout", "x", x)
    check_floating("dropout", "x", x)
    if not isinstance(rate, jax.Array):  # a traced rate cannot be checked here
        rate = check_rate("dropout", "rate", rate)
    if rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
