"""The implementations under test, each built the way its fastest users would call it.

Every builder takes ``(cell, T, B, D, H)`` and returns ``(forward, train, args)`` where
``forward(*args)`` returns all hidden states ``(T, B, H)`` and ``train(*args)`` returns the
gradient of ``sum(outputs)`` with respect to the parameters and the inputs. Both are
``jax.jit``-ed; nothing here is timed. Peers are imported lazily so that ``jaxrnn`` alone
runs without the ``bench`` extra.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _inputs(T: int, B: int, D: int) -> jax.Array:
    return jax.random.normal(jax.random.key(1), (T, B, D), jnp.float32)


def _pair(apply: Callable, params, xs) -> tuple[Callable, Callable, tuple]:
    """jit the forward ``apply(params, xs) -> ys`` and the gradient of ``sum(ys)``."""
    forward = jax.jit(apply)
    train = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(p, x)), argnums=(0, 1)))
    return forward, train, (params, xs)


def jaxrnn_builder(method: str | None = None, remat: bool = False, lengths=False) -> Callable:
    """``jaxrnn.unroll`` (its default method unless ``method`` is given); ``lengths=True``
    passes full lengths, so that the ratio to the run without lengths is the cost of
    masking a padded batch."""

    def build(cell, T, B, D, H):
        import jaxrnn

        params = jaxrnn.init_params(jax.random.key(0), cell, D, H)
        full = jnp.full((B,), T) if lengths else None
        options = {} if method is None else {"method": method}
        return _pair(
            lambda p, x: jaxrnn.unroll(p, None, x, lengths=full, remat=remat, **options)[1],
            params,
            _inputs(T, B, D),
        )

    return build


def flax_linen_builder(variant: str, remat: bool = False) -> Callable:
    """``nn.RNN`` over Flax's own cells: ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``."""

    def build(cell, T, B, D, H):
        from flax import linen as nn

        cell_type = {"lstm": getattr(nn, variant), "gru": nn.GRUCell}[cell]
        if remat:
            cell_type = nn.remat(cell_type)
        model = nn.RNN(cell_type(features=H), time_major=True)
        xs = _inputs(T, B, D)
        params = model.init(jax.random.key(0), xs)
        return _pair(model.apply, params, xs)

    return build


def flax_nnx_builder(variant: str) -> Callable:
    """``nnx.RNN``, called through ``nnx.split``/``merge`` inside a plain ``jax.jit`` (about
    0.7 ms per call faster than ``nnx.jit`` here)."""

    def build(cell, T, B, D, H):
        from flax import nnx

        rngs = nnx.Rngs(0)
        cell_type = {"lstm": getattr(nnx, variant), "gru": nnx.GRUCell}[cell]
        model = nnx.RNN(cell_type(D, H, rngs=rngs), time_major=True, rngs=False)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        zeros = jnp.zeros((B, H))
        carry = (zeros, zeros) if cell == "lstm" else zeros  # Flax's zero initial carry

        def apply(params, xs):
            return nnx.merge(graphdef, params, rest)(xs, initial_carry=carry)

        return _pair(apply, params, _inputs(T, B, D))

    return build


def haiku_builder(cell, T, B, D, H):
    """``hk.dynamic_unroll`` of ``hk.LSTM`` / ``hk.GRU`` (time-major)."""
    import haiku as hk

    def unroll(xs):
        core = {"lstm": hk.LSTM, "gru": hk.GRU}[cell](H)
        ys, _ = hk.dynamic_unroll(core, xs, core.initial_state(B))
        return ys

    model = hk.without_apply_rng(hk.transform(unroll))
    xs = _inputs(T, B, D)
    return _pair(model.apply, model.init(jax.random.key(0), xs), xs)


def equinox_builder(checkpoint: bool = False) -> Callable:
    """``eqx.nn.LSTMCell`` / ``GRUCell`` in a ``lax.scan``, ``vmap``-ed over the batch (the
    Equinox idiom). ``checkpoint`` wraps each step in ``jax.checkpoint``."""

    def build(cell, T, B, D, H):
        import equinox as eqx

        cell_type = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell]
        model = cell_type(D, H, key=jax.random.key(0))
        params, static = eqx.partition(model, eqx.is_array)
        zeros = jnp.zeros((B, H))
        init = (zeros, zeros) if cell == "lstm" else zeros

        def apply(params, xs):
            core = eqx.combine(params, static)

            def step(state, x):
                state = jax.vmap(core)(x, state)
                return state, state[0] if cell == "lstm" else state

            if checkpoint:
                step = jax.checkpoint(step)
            return jax.lax.scan(step, init, xs)[1]

        return _pair(apply, params, _inputs(T, B, D))

    return build


#: name -> builder, in table order. PyTorch runs in its own process (``torch_worker.py``).
JAX_IMPLEMENTATIONS: dict[str, Callable] = {
    "jaxrnn": jaxrnn_builder(),
    "jaxrnn method='sequential'": jaxrnn_builder("sequential"),
    "jaxrnn with lengths": jaxrnn_builder(lengths=True),
    "flax linen (LSTMCell, GRUCell)": flax_linen_builder("LSTMCell"),
    "flax linen OptimizedLSTMCell": flax_linen_builder("OptimizedLSTMCell"),
    "flax nnx": flax_nnx_builder("OptimizedLSTMCell"),
    "haiku": haiku_builder,
    "equinox": equinox_builder(),
}

#: Implementations that are the same as another one for GRU (Flax has one GRU cell).
LSTM_ONLY = {"flax linen OptimizedLSTMCell"}

#: The peers (not jaxrnn) whose best time is "the fastest JAX library".
JAX_PEERS = [name for name in JAX_IMPLEMENTATIONS if not name.startswith("jaxrnn")]

#: For the memory measurement: name -> builder of an LSTM training step.
MEMORY_IMPLEMENTATIONS: dict[str, Callable] = {
    "jaxrnn": jaxrnn_builder(),
    "jaxrnn method='sequential'": jaxrnn_builder("sequential"),
    "jaxrnn remat=True": jaxrnn_builder(remat=True),
    "flax linen OptimizedLSTMCell": flax_linen_builder("OptimizedLSTMCell"),
    "flax linen nn.remat(cell)": flax_linen_builder("OptimizedLSTMCell", remat=True),
    "equinox": equinox_builder(),
    "equinox jax.checkpoint(step)": equinox_builder(checkpoint=True),
}
