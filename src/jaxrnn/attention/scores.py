"""Attention scores over a memory: ``init_attention`` and ``attend`` (Bahdanau's additive
score, Luong's dot and general scores), masked over each sequence's valid positions."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.cells.base import LECUN_NORMAL
from jaxrnn.core.checks import (
    check_array,
    check_choice,
    check_features,
    check_floating,
    check_floating_dtype,
    check_int,
    check_key,
    check_lengths,
    fail,
    shape_text,
)
from jaxrnn.core.params import params_class, static_field

__all__ = [
    "ATTENTION_KINDS",
    "AttentionParams",
    "attend",
    "attend_prepared",
    "check_memory",
    "init_attention",
    "prepare_memory",
]


ATTENTION_KINDS = ("bahdanau", "luong_dot", "luong_general")


@params_class
class AttentionParams:
    """Weights of an attention score; see [`init_attention`][jaxrnn.attention.init_attention] and
    the module docstring. Weights a score does not use are ``None``."""

    # "bahdanau": (query_size, attention_size); "luong_general": (query_size, memory_size)
    w_query: jax.Array | None
    w_memory: jax.Array | None  # "bahdanau": shape=(memory_size, attention_size)
    b: jax.Array | None  # "bahdanau": shape=(attention_size,)
    v: jax.Array | None  # "bahdanau": shape=(attention_size,)
    query_size: int = static_field()
    memory_size: int = static_field()
    kind: str = static_field("bahdanau")


def init_attention(
    key: jax.Array,
    query_size: int,
    memory_size: int,
    *,
    kind: str = "bahdanau",
    attention_size: int | None = None,
    dtype: Any = jnp.float32,
) -> AttentionParams:
    """Initialize the weights of an attention score.

    $$
    \\text{bahdanau: } e_s = v^\\top \\tanh(q W_q + m_s W_m + b) \\qquad
    \\text{luong\\_dot: } e_s = q^\\top m_s \\qquad
    \\text{luong\\_general: } e_s = (q W_q)^\\top m_s
    $$

    ``W_q``, ``W_m`` are LeCun-normal, ``v`` is ``N(0, 1/attention_size)``, ``b`` is zero.

    Args:
      key: a PRNG key.
      query_size: size of the query ``q`` (the decoder's hidden size).
      memory_size: size of each memory vector ``m_s`` (the encoder's output size); must
        equal ``query_size`` for ``"luong_dot"``.
      kind: ``"bahdanau"``, ``"luong_dot"`` or ``"luong_general"``.
      attention_size: width of the additive score's hidden layer (``"bahdanau"`` only;
        ``None``: ``query_size``).
      dtype: dtype of the weights.

    Returns:
      [`AttentionParams`][jaxrnn.attention.AttentionParams].

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.attention.init_attention(jax.random.key(0), 8, 6, attention_size=5)
      >>> params.w_query.shape, params.w_memory.shape, params.v.shape
      ((8, 5), (6, 5), (5,))
    """
    where = "init_attention"
    check_key(where, key, optional=False)
    check_choice(where, "kind", kind, ATTENTION_KINDS)
    query_size = check_int(where, "query_size", query_size)
    memory_size = check_int(where, "memory_size", memory_size)
    dtype = check_floating_dtype(where, "dtype", dtype)
    if attention_size is not None and kind != "bahdanau":
        fail(where, "attention_size", "be None unless kind='bahdanau'", repr(attention_size))
    if kind == "luong_dot" and memory_size != query_size:
        fail(
            where,
            "memory_size",
            f"equal query_size={query_size} for kind='luong_dot'",
            repr(memory_size),
        )
    kq, km, kv = jax.random.split(key, 3)
    weights: dict[str, jax.Array | None] = dict(w_query=None, w_memory=None, b=None, v=None)
    if kind == "bahdanau":
        size = query_size if attention_size is None else attention_size
        check_int(where, "attention_size", size)
        weights.update(
            w_query=LECUN_NORMAL(kq, (query_size, size), dtype),
            w_memory=LECUN_NORMAL(km, (memory_size, size), dtype),
            b=jnp.zeros((size,), dtype),
            v=jax.random.normal(kv, (size,), dtype) / jnp.sqrt(size).astype(dtype),
        )
    elif kind == "luong_general":
        weights.update(w_query=LECUN_NORMAL(kq, (query_size, memory_size), dtype))
    return AttentionParams(**weights, query_size=query_size, memory_size=memory_size, kind=kind)


def check_memory(
    where: str, params: AttentionParams, memory: Any, memory_lengths: Any
) -> tuple[jax.Array, jax.Array | None]:
    """Validate time-major ``memory`` and its lengths; lengths clipped to ``[0, source_time]``."""
    memory = check_array(where, "memory", memory)
    check_floating(where, "memory", memory)
    check_features(
        where, "memory", memory, (params.memory_size,), ("source_time",), ("memory_size",)
    )
    if memory_lengths is None:
        return memory, None
    lengths = check_lengths(
        where,
        memory_lengths,
        memory.shape[1:-1],
        memory.shape[0],
        argument="memory_lengths",
        of="memory",
    )
    return memory, lengths


def _valid(lengths: jax.Array, source_time: int) -> jax.Array:
    return jnp.arange(source_time) < lengths[..., None]  # (*batch, source_time)


def prepare_memory(
    params: AttentionParams, memory: jax.Array, lengths: jax.Array | None
) -> tuple[jax.Array, jax.Array | None]:
    """Batch-leading memory with padding zeroed, and the additive score's keys ``m W_m``.

    Zeroing first keeps padding out of gradients too: a NaN at a padded position would
    otherwise reach them as ``0 * NaN`` through the unselected branch of a mask.
    """
    values = jnp.moveaxis(memory, 0, -2)  # (*batch, source_time, memory_size)
    if lengths is not None:
        values = jnp.where(_valid(lengths, values.shape[-2])[..., None], values, 0)
    if params.kind != "bahdanau":
        return values, None
    _, w_memory, _, _ = _additive(params)
    # Computed once per source, not once per step (Bahdanau et al. 2015, appendix A.1.2).
    return values, values @ w_memory


def _additive(params: AttentionParams) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(W_q, W_m, b, v)`` of a ``"bahdanau"`` score, which has all four."""
    assert params.w_query is not None and params.w_memory is not None
    assert params.b is not None and params.v is not None
    return params.w_query, params.w_memory, params.b, params.v


def attend_prepared(
    params: AttentionParams,
    query: jax.Array,
    values: jax.Array,
    keys: jax.Array | None,
    lengths: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """``(context, weights)`` for batch-leading ``values`` ``(*batch, source_time, size)``."""
    if params.kind == "bahdanau":
        w_query, _, b, v = _additive(params)
        assert keys is not None
        scores = jnp.tanh(keys + (query @ w_query + b)[..., None, :]) @ v
    else:
        if params.w_query is not None:  # "luong_general"
            query = query @ params.w_query
        scores = jnp.einsum("...m,...sm->...s", query, values)
    if lengths is None:
        weights = jax.nn.softmax(scores, axis=-1)
    else:
        valid = _valid(lengths, values.shape[-2])
        # The lowest finite score, not -inf: a sequence with no valid position gets a
        # uniform softmax (then zeroed) instead of NaN.
        scores = jnp.where(valid, scores, jnp.finfo(scores.dtype).min)
        weights = jnp.where(valid, jax.nn.softmax(scores, axis=-1), 0)
    context = jnp.einsum("...s,...sm->...m", weights, values)
    return context, weights


def attend(
    params: AttentionParams,
    query: ArrayLike,
    memory: ArrayLike,
    memory_lengths: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Weights over the valid memory positions for a query, and the weighted mean.

    $$
    e_s = \\mathrm{score}(q, m_s), \\qquad
    a_s = \\frac{[s < L] \\exp e_s}{\\sum_{s' < L} \\exp e_{s'}}, \\qquad
    c = \\sum_s a_s m_s
    $$

    with ``L`` the memory length and ``score`` from ``params.kind`` (see
    [`init_attention`][jaxrnn.attention.init_attention]). Padding positions ``s >= L`` get weight
    exactly 0, and their content (even NaN) reaches neither the result nor gradients. A sequence
    with ``L = 0`` gets all-zero weights and a zero context.

    Args:
      params: from [`init_attention`][jaxrnn.attention.init_attention].
      query: ``(*batch, query_size)``, e.g. the decoder's hidden state.
      memory: ``(source_time, *batch, memory_size)``, time-major like the ``ys`` of
        [`unroll`][jaxrnn.unroll] (e.g. the encoder's outputs).
      memory_lengths: integer ``batch``-shaped valid lengths, or ``None`` (all valid).

    Returns:
      ``(context, weights)``: ``(*batch, memory_size)`` and ``(*batch, source_time)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.attention.init_attention(jax.random.key(0), 4, 4, kind="luong_dot")
      >>> memory = jax.random.normal(jax.random.key(1), (5, 2, 4))  # (source_time, batch, 4)
      >>> context, weights = jaxrnn.attention.attend(params, jnp.ones((2, 4)), memory,
      ...                                            jnp.array([5, 3]))
      >>> context.shape, weights.shape, bool(jnp.allclose(weights.sum(-1), 1.0))
      ((2, 4), (2, 5), True)
      >>> bool(jnp.all(weights[1, 3:] == 0))
      True
    """
    where = "attend"
    if not isinstance(params, AttentionParams):
        fail(where, "params", "be AttentionParams", type(params).__name__, TypeError)
    memory, lengths = check_memory(where, params, memory, memory_lengths)
    query = check_array(where, "query", query)
    check_floating(where, "query", query)
    batch_shape = check_features(where, "query", query, (params.query_size,), (), ("query_size",))
    if batch_shape != memory.shape[1:-1]:
        fail(
            where,
            "query",
            f"have the batch shape of memory {shape_text(memory.shape[1:-1])}",
            shape_text(batch_shape),
        )
    values, keys = prepare_memory(params, memory, lengths)
    return attend_prepared(params, query, values, keys, lengths)
