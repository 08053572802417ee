"""``init_readout`` / ``readout``: every activation against NumPy, shapes, jit/vmap, grads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


NUMPY_ACTIVATIONS = {
    "identity": lambda z: z,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "softmax": np_softmax,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
}


@pytest.mark.parametrize("activation", sorted(NUMPY_ACTIVATIONS))
@pytest.mark.parametrize("leading", [(), (3,), (5, 3)], ids=["step", "batch", "sequence"])
def test_matches_numpy(activation, leading):
    params = jaxrnn.heads.init_readout(
        jax.random.key(0), 4, 6, bias_init=jax.nn.initializers.normal()
    )
    h = jax.random.normal(jax.random.key(1), (*leading, 4))
    y = jaxrnn.heads.readout(params, h, activation=activation)
    z = np.asarray(h) @ np.asarray(params.w_y) + np.asarray(params.b_y)
    assert y.shape == (*leading, 6)
    np.testing.assert_allclose(y, NUMPY_ACTIVATIONS[activation](z), rtol=1e-5, atol=1e-6)


def test_without_bias_and_dtype():
    params = jaxrnn.heads.init_readout(jax.random.key(0), 4, 2, bias=False, dtype=jnp.float16)
    assert params.b_y is None and params.w_y.dtype == jnp.float16
    y = jaxrnn.heads.readout(params, jnp.ones((3, 4), jnp.float16))
    np.testing.assert_allclose(y, jnp.ones((3, 4), jnp.float16) @ params.w_y)


def test_per_step_equals_whole_sequence_and_vmap():
    params = jaxrnn.heads.init_readout(jax.random.key(0), 4, 3)
    ys = jax.random.normal(jax.random.key(1), (5, 2, 4))
    whole = jax.jit(jaxrnn.heads.readout, static_argnames="activation")(params, ys, "softmax")
    per_step = jax.vmap(lambda h: jaxrnn.heads.readout(params, h, "softmax"))(ys)
    np.testing.assert_allclose(whole, per_step, rtol=1e-6)


def test_grads(x64):
    params = jaxrnn.heads.init_readout(jax.random.key(0), 3, 2, dtype=jnp.float64)
    h = jax.random.normal(jax.random.key(1), (4, 3), jnp.float64)
    check_grads(lambda p, h: jaxrnn.heads.readout(p, h, "tanh"), (params, h), order=1)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda p: jaxrnn.heads.readout(p, jnp.ones((2, 5))),
            ValueError,
            r"readout: h must have shape \(\.\.\., input_size=4\); got \(2, 5\)",
        ),
        (
            lambda p: jaxrnn.heads.readout(p, jnp.ones(4), "gelu"),
            ValueError,
            "readout: activation must be one of 'identity'.*; got 'gelu'",
        ),
        (
            lambda p: jaxrnn.heads.readout({"w": 1}, jnp.ones(4)),
            TypeError,
            "readout: params must be ReadoutParams; got dict",
        ),
        (
            lambda p: jaxrnn.heads.init_readout(jax.random.key(0), 0, 3),
            ValueError,
            "init_readout: input_size must be a positive int; got 0",
        ),
    ],
)
def test_errors(call, error, match):
    params = jaxrnn.heads.init_readout(jax.random.key(0), 4, 3)
    with pytest.raises(error, match=match):
        call(params)
