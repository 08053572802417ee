"""The mLSTM cell of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"):
a matrix memory per head, written with exponential input gates, in three forms that give
the same numbers: the stabilized recurrence (``recurrence``), the quadratic,
attention-like parallel form and the chunkwise form (``parallel_form``)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers

from jaxrnn.cells.base import LECUN_NORMAL, Initializer, affine
from jaxrnn.cells.linear import ParallelFormCell
from jaxrnn.core.checks import check_bool, check_choice, check_int, fail
from jaxrnn.core.params import params_class, static_field

FORGET_GATES = ("sigmoid", "exp")


class MLSTMState(NamedTuple):
    """Carry of an mLSTM: per head, the matrix memory ``C``, the normalizer ``n`` and the
    stabilizer ``m``. ``C`` and ``n`` are stored divided by ``exp(m)``: the paper's
    unstabilized memory is ``C * exp(m)``."""

    C: jax.Array  # shape=(..., num_heads, head_size, head_size): rows index v, columns k
    n: jax.Array  # shape=(..., num_heads, head_size)
    m: jax.Array  # shape=(..., num_heads)


class Heads(NamedTuple):
    """One step's projected input split per head (``MLSTMParams.heads``)."""

    q: jax.Array  # shape=(..., num_heads, head_size)
    k: jax.Array  # shape=(..., num_heads, head_size): already divided by sqrt(head_size)
    v: jax.Array  # shape=(..., num_heads, head_size)
    o: jax.Array  # shape=(..., hidden_size): the output gate's pre-activation õ
    log_i: jax.Array  # shape=(..., num_heads): ĩ = log i
    log_f: jax.Array  # shape=(..., num_heads): log f (log σ(f̃), or f̃ for exp)


@params_class
class MLSTMParams(ParallelFormCell):
    """Parameters of an mLSTM cell (xLSTM's matrix-memory LSTM), blocks q, k, v, o, ĩ, f̃.

    Per head (``num_heads`` heads of ``d = hidden_size / num_heads`` features; ``x_t W``
    below is one head's block of ``x_t W_x + b_x``), Beck et al. (2024), eqs. 19-27:

    $$
    \\begin{aligned}
    q_t &= x_t W_q + b_q, \\quad k_t = \\tfrac{1}{\\sqrt d}(x_t W_k + b_k), \\quad
        v_t = x_t W_v + b_v \\\\
    i_t &= \\exp(\\tilde\\imath_t), \\quad f_t = \\sigma(\\tilde f_t)
        \\ (\\text{or } \\exp(\\tilde f_t)), \\quad o_t = \\sigma(x_t W_o + b_o),
        \\qquad \\tilde\\imath_t, \\tilde f_t \\in \\mathbb{R} \\text{ per head} \\\\
    C_t &= f_t C_{t-1} + i_t\\, v_t k_t^\\top, \\qquad n_t = f_t n_{t-1} + i_t k_t \\\\
    \\tilde h_t &= \\frac{C_t q_t}{\\max(|n_t^\\top q_t|, 1)}, \\qquad
        h_t = o_t \\odot \\tilde h_t
    \\end{aligned}
    $$

    and ``y_t = h_t`` (the heads' ``h̃`` side by side, ``hidden_size`` features). The
    exponential input gate overflows unless stabilized; as in the paper's appendix the
    carry holds ``C_t e^{-m_t}``, ``n_t e^{-m_t}`` and the stabilizer

    $$
    m_t = \\max(\\log f_t + m_{t-1}, \\tilde\\imath_t), \\quad
    f'_t = e^{\\log f_t + m_{t-1} - m_t}, \\quad i'_t = e^{\\tilde\\imath_t - m_t}, \\quad
    \\tilde h_t = \\frac{C'_t q_t}{\\max(|n'^\\top_t q_t|, e^{-m_t})}
    $$

    with ``C'_t = f'_t C'_{t-1} + i'_t v_t k_t^T`` (``n'`` alike). Since ``C' = C e^{-m}``
    and ``n' = n e^{-m}``, the stabilized ``h̃_t`` equals the unstabilized one exactly;
    only the range of the exponentials changes (``i'_t, f'_t <= 1``). The carry is an
    [`MLSTMState`][jaxrnn.cells.MLSTMState] ``(C, n, m)`` starting from zeros.

    Two choices beyond the paper's cell: ``k`` is scaled after its bias, as in the
    authors' code (the paper writes ``W_k x / sqrt(d) + b_k``: the same family, ``b_k``
    rescaled), so the whole input projection is one affine map; and ``output_norm=True``
    adds xLSTM's per-head layer norm ``h̃ ← γ ⊙ LN_head(h̃)`` before the output gate (the
    block's ``GN``; off by default, the paper's cell equations being the core).

    ``unroll(..., method="parallel")`` runs the paper's parallel form: with
    ``F_t = Σ_{s<=t} log f_s``, ``log D_{ts} = F_t - F_s + ĩ_s`` (``s <= t``) and
    ``m_t = max(m_0 + F_t, max_s log D_{ts})``,

    $$
    \\tilde h_t = \\frac{\\sum_s e^{\\log D_{ts} - m_t} (q_t^\\top k_s)\\, v_s
      + e^{m_0 + F_t - m_t}\\, C'_0 q_t}
      {\\max\\big(|\\sum_s e^{\\log D_{ts} - m_t}\\, q_t^\\top k_s
      + e^{m_0 + F_t - m_t}\\, n'^\\top_0 q_t|,\\ e^{-m_t}\\big)}
    $$

    (all ``t`` at once, ``O(T²)``); ``Parallel(strategy="chunked", chunk_size=L)`` runs
    it within chunks of ``L`` steps and the recurrence over chunk ends. ``m_t`` is the
    recurrence's stabilizer unrolled, so all forms return the same carry ``(C, n, m)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "mlstm", 3, 8, num_heads=2)
      >>> xs = jax.random.normal(jax.random.key(1), (16, 3))
      >>> carry, ys = jaxrnn.unroll(params, None, xs)
      >>> carry.C.shape, carry.n.shape, carry.m.shape, ys.shape
      ((2, 4, 4), (2, 4), (2,), (16, 8))
      >>> carry_p, ys_p = jaxrnn.unroll(params, None, xs, method="parallel")
      >>> bool(jnp.allclose(ys_p, ys, atol=1e-5) and jnp.allclose(carry_p.C, carry.C, atol=1e-5))
      True

    References:
      Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter,
      Hochreiter, "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024,
      arXiv:2405.04517 (section 2.3; the appendix's stabilized and parallel forms).
    """

    w_x: jax.Array  # shape=(input_size, 4 * hidden_size + 2 * num_heads): q, k, v, o, ĩ, f̃
    b_x: jax.Array | None  # shape=(4 * hidden_size + 2 * num_heads,), or None without bias
    norm_gain: jax.Array | None  # shape=(hidden_size,): γ of the output norm, or None
    num_heads: int = static_field(1)
    forget_gate: str = static_field("sigmoid")  # "sigmoid" or "exp"
    epsilon: float = static_field(1e-5)  # of the output norm

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.w_x.shape[0],)

    @property
    def hidden_size(self) -> int:
        return (self.w_x.shape[1] - 2 * self.num_heads) // 4

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> MLSTMState:
        heads, d = self.num_heads, self.head_size
        return MLSTMState(
            C=jnp.zeros((*batch_shape, heads, d, d), dtype),
            n=jnp.zeros((*batch_shape, heads, d), dtype),
            m=jnp.zeros((*batch_shape, heads), dtype),
        )

    def input_projection(self, x: jax.Array) -> jax.Array:
        return affine(x, self.w_x, self.b_x)

    def heads(self, projected: jax.Array) -> Heads:
        """``projected`` (``(..., 4 * hidden_size + 2 * num_heads)``) split per head, with
        ``k`` scaled by ``1/sqrt(d)`` and the forget gate as ``log f``."""
        size, heads, d = self.hidden_size, self.num_heads, self.head_size
        q, k, v, o = (projected[..., j * size : (j + 1) * size] for j in range(4))
        log_i = projected[..., 4 * size : 4 * size + heads]
        f_tilde = projected[..., 4 * size + heads :]
        log_f = jax.nn.log_sigmoid(f_tilde) if self.forget_gate == "sigmoid" else f_tilde

        def per_head(a):
            return a.reshape(*a.shape[:-1], heads, d)

        return Heads(per_head(q), per_head(k) / math.sqrt(d), per_head(v), o, log_i, log_f)

    def readout(
        self, numerator: jax.Array, denominator: jax.Array, m: jax.Array, o: jax.Array
    ) -> jax.Array:
        """``h_t = σ(õ) ⊙ C'q / max(|n'·q|, e^{-m})`` (per-head norm first, if any), from
        ``numerator = C'q`` ``(..., num_heads, d)``, ``denominator = n'·q`` and ``m``
        ``(..., num_heads)``."""
        h = numerator / jnp.maximum(jnp.abs(denominator), jnp.exp(-m))[..., None]
        if self.norm_gain is not None:
            mean = jnp.mean(h, axis=-1, keepdims=True)
            var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
            h = (h - mean) * jax.lax.rsqrt(var + self.epsilon)
        h = h.reshape(*h.shape[:-2], self.hidden_size)
        if self.norm_gain is not None:
            h = self.norm_gain * h
        return jax.nn.sigmoid(o) * h

    def recurrence(self, carry: MLSTMState, projected: jax.Array) -> tuple[MLSTMState, jax.Array]:
        p = self.heads(projected)
        m = jnp.maximum(p.log_f + carry.m, p.log_i)
        f = jnp.exp(p.log_f + carry.m - m)[..., None]  # f'_t, (..., heads, 1)
        i = jnp.exp(p.log_i - m)[..., None]  # i'_t
        C = f[..., None] * carry.C + (i * p.v)[..., :, None] * p.k[..., None, :]
        n = f * carry.n + i * p.k
        numerator = jnp.einsum("...ab,...b->...a", C, p.q)
        denominator = jnp.einsum("...a,...a->...", n, p.q)
        return MLSTMState(C=C, n=n, m=m), self.readout(numerator, denominator, m, p.o)

    def parallel_form(
        self,
        carry: MLSTMState,
        projected: jax.Array,
        valid: jax.Array | None,
        chunk_size: int | None,
    ) -> tuple[MLSTMState, jax.Array]:
        """The quadratic form (``chunk_size=None``) or the chunkwise form of the forward
        run; masked steps are identity steps (``log f = 0``, ``i = 0``)."""
        p = self.heads(projected)
        log_f, log_i = p.log_f, p.log_i
        if valid is not None:
            log_f = jnp.where(valid[..., None], log_f, 0.0)
            log_i = jnp.where(valid[..., None], log_i, -jnp.inf)
        # Time next to the features: (time, *batch, heads, d) -> (*batch, heads, time, d).
        q, k, v = (jnp.moveaxis(a, 0, -2) for a in (p.q, p.k, p.v))
        log_f, log_i = jnp.moveaxis(log_f, 0, -1), jnp.moveaxis(log_i, 0, -1)
        num_steps = log_f.shape[-1]
        if chunk_size is None or chunk_size >= num_steps:
            numerator, denominator, m, new_carry = quadratic_form(carry, q, k, v, log_i, log_f)
        else:
            numerator, denominator, m, new_carry = chunkwise_form(
                carry, q, k, v, log_i, log_f, chunk_size
            )
        ys = self.readout(
            jnp.moveaxis(numerator, -2, 0),
            jnp.moveaxis(denominator, -1, 0),
            jnp.moveaxis(m, -1, 0),
            p.o,
        )
        return new_carry, ys


def quadratic_form(
    carry: MLSTMState,
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    log_i: jax.Array,
    log_f: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, MLSTMState]:
    """All steps of the stabilized mLSTM at once from ``carry``: ``(C'q, n'·q, m)`` of
    every step and the final carry. ``q, k, v``: ``(..., time, d)``; ``log_i, log_f``:
    ``(..., time)``; ``carry``'s leaves ``(..., d, d)``, ``(..., d)``, ``(...)``."""
    num_steps = log_f.shape[-1]
    decay = jnp.cumsum(log_f, axis=-1)  # F_t = Σ_{s<=t} log f_s
    causal = jnp.tril(jnp.ones((num_steps, num_steps), bool))
    log_d = decay[..., :, None] - decay[..., None, :] + log_i[..., None, :]  # (..., t, s)
    log_d = jnp.where(causal, log_d, -jnp.inf)
    log_d0 = carry.m[..., None] + decay  # weight of the initial state at each step
    m = jnp.maximum(log_d0, jnp.max(log_d, axis=-1))  # the recurrence's m_t, unrolled
    d = jnp.exp(log_d - m[..., None])
    d0 = jnp.exp(log_d0 - m)
    scores = jnp.einsum("...td,...sd->...ts", q, k) * d
    numerator = scores @ v + d0[..., None] * jnp.einsum("...ab,...tb->...ta", carry.C, q)
    denominator = jnp.sum(scores, axis=-1) + d0 * jnp.einsum("...b,...tb->...t", carry.n, q)
    last = d[..., -1, :]  # weights of each step in the final memory
    C = jnp.einsum("...s,...sa,...sb->...ab", last, v, k) + d0[..., -1, None, None] * carry.C
    n = jnp.einsum("...s,...sb->...b", last, k) + d0[..., -1, None] * carry.n
    return numerator, denominator, m, MLSTMState(C=C, n=n, m=m[..., -1])


def chunkwise_form(
    carry: MLSTMState,
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    log_i: jax.Array,
    log_f: jax.Array,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array, jax.Array, MLSTMState]:
    """``quadratic_form`` within chunks of ``chunk_size`` steps, from the state entering
    each chunk; those states come from the recurrence over chunk ends (a ``lax.scan`` of
    ``time / chunk_size`` steps). Same arguments and results as ``quadratic_form``."""
    num_steps = log_f.shape[-1]
    num_chunks = -(-num_steps // chunk_size)
    pad = num_chunks * chunk_size - num_steps

    def chunks(a, fill, feature_dims):  # (..., time, *f) -> (..., chunk, step, *f)
        widths = [(0, 0)] * (a.ndim - 1 - feature_dims) + [(0, pad)] + [(0, 0)] * feature_dims
        a = jnp.pad(a, widths, constant_values=fill)
        batch, features = a.shape[: a.ndim - 1 - feature_dims], a.shape[a.ndim - feature_dims :]
        return a.reshape(*batch, num_chunks, chunk_size, *features)

    # Padding steps are identity steps (log f = 0, i = 0), like masked ones.
    q, k, v = (chunks(a, 0.0, 1) for a in (q, k, v))
    log_i, log_f = chunks(log_i, -jnp.inf, 0), chunks(log_f, 0.0, 0)

    # Each chunk's own contribution to the memory at its end, stabilized by its own max.
    decay = jnp.cumsum(log_f, axis=-1)
    total = decay[..., -1]  # log of the product of the chunk's forget gates
    log_w = log_i + total[..., None] - decay  # weight of step s in the chunk's end state
    m_local = jnp.max(log_w, axis=-1)  # -inf for a chunk of masked steps only
    w = jnp.exp(log_w - jnp.where(jnp.isfinite(m_local), m_local, 0.0)[..., None])
    C_local = jnp.einsum("...s,...sa,...sb->...ab", w, v, k)
    n_local = jnp.einsum("...s,...sb->...b", w, k)

    def across(state, chunk):
        total, m_local, C_local, n_local = chunk
        m = jnp.maximum(total + state.m, m_local)
        keep, add = jnp.exp(total + state.m - m), jnp.exp(m_local - m)
        C = keep[..., None, None] * state.C + add[..., None, None] * C_local
        n = keep[..., None] * state.n + add[..., None] * n_local
        new = jax.tree.map(lambda a, b: a.astype(b.dtype), MLSTMState(C=C, n=n, m=m), state)
        return new, state

    def chunk_first(a, feature_dims):  # (..., chunk, *f) -> (chunk, ..., *f)
        return jnp.moveaxis(a, a.ndim - 1 - feature_dims, 0)

    per_chunk = (
        chunk_first(total, 0),
        chunk_first(m_local, 0),
        chunk_first(C_local, 2),
        chunk_first(n_local, 1),
    )
    final, entering = jax.lax.scan(across, carry, per_chunk)
    entering = MLSTMState(
        C=jnp.moveaxis(entering.C, 0, -3),
        n=jnp.moveaxis(entering.n, 0, -2),
        m=jnp.moveaxis(entering.m, 0, -1),
    )
    numerator, denominator, m, _ = quadratic_form(entering, q, k, v, log_i, log_f)

    def unchunk(a, feature_dims):  # (..., chunk, step, *f) -> (..., time, *f)
        batch = a.shape[: a.ndim - 2 - feature_dims]
        features = a.shape[a.ndim - feature_dims :]
        a = a.reshape(*batch, num_chunks * chunk_size, *features)
        return jax.lax.slice_in_dim(a, 0, num_steps, axis=a.ndim - 1 - feature_dims)

    return unchunk(numerator, 1), unchunk(denominator, 0), unchunk(m, 0), final


def init(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    num_heads: int = 1,
    forget_gate: str = "sigmoid",
    output_norm: bool = False,
    epsilon: float = 1e-5,
    bias: bool = True,
    kernel_init: Initializer = LECUN_NORMAL,
    bias_init: Initializer = initializers.zeros,
    dtype: Any = jnp.float32,
) -> MLSTMParams:
    """mLSTM params initialized as the authors' code: ``kernel_init`` (LeCun normal) for
    q, k, v, o and ``bias_init`` (zeros) for their biases; zero weights for the gates
    ``ĩ, f̃``, ``b_ĩ ~ N(0, 0.1²)`` and ``b_f̃`` evenly from 3 to 6 over the heads (for
    ``forget_gate="exp"``, ``log σ`` of those, so that ``f`` starts the same); unit
    gains of the output norm when ``output_norm``."""
    num_heads = check_int("init_params", "num_heads", num_heads)
    if hidden_size % num_heads:
        fail("init_params", "num_heads", f"divide hidden_size={hidden_size}", repr(num_heads))
    check_choice("init_params", "forget_gate", forget_gate, FORGET_GATES)
    check_bool("init_params", "output_norm", output_norm)
    kw, kb, ki = jax.random.split(key, 3)
    w_gates = jnp.zeros((input_size, 2 * num_heads), dtype)
    w_x = jnp.concatenate([kernel_init(kw, (input_size, 4 * hidden_size), dtype), w_gates], -1)
    b_x = None
    if bias:
        b_i = 0.1 * jax.random.normal(ki, (num_heads,), dtype)
        b_f = jnp.linspace(3.0, 6.0, num_heads, dtype=dtype)
        if forget_gate == "exp":
            b_f = jax.nn.log_sigmoid(b_f)
        b_x = jnp.concatenate([bias_init(kb, (4 * hidden_size,), dtype), b_i, b_f])
    return MLSTMParams(
        w_x=w_x,
        b_x=b_x,
        norm_gain=jnp.ones((hidden_size,), dtype) if output_norm else None,
        num_heads=num_heads,
        forget_gate=forget_gate,
        epsilon=float(epsilon),
    )
