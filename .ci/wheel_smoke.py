"""Smoke test of an installed jaxrnn wheel: import, a small unroll, a BPTT gradient."""

import jax
import jax.numpy as jnp

import jaxrnn

params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 8, num_layers=2, bidirectional=True)
xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
lengths = jnp.array([6, 4])


def loss(params):
    _, ys = jaxrnn.unroll(params, None, xs, lengths=lengths)
    return jnp.sum(ys**2)


value, grads = jax.jit(jax.value_and_grad(loss))(params)
assert jax.eval_shape(lambda: jaxrnn.unroll(params, None, xs)[1]).shape == (6, 2, 16)
assert type(grads) is type(params), type(grads)
assert bool(jnp.isfinite(value)) and float(value) > 0
print(f"jaxrnn {jaxrnn.__version__} wheel smoke test passed: loss {float(value):.4f}")
