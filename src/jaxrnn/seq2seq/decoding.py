"""Decoding an encoder-decoder: greedy, sampling and beam search, under ``jit``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_int,
    check_key,
    check_lengths,
    check_token,
    fail,
    shape_text,
)
from jaxrnn.core.unrolling import cell_step
from jaxrnn.decoding import decoded_lengths, generate
from jaxrnn.heads import readout
from jaxrnn.seq2seq.model import (
    Seq2SeqParams,
    bound_decoder,
    bridge_carry,
    check_model,
    check_tokens,
    embed_target,
    encode,
    source_batch_shape,
    start_decoding,
    time_first,
)

__all__ = [
    "beam_search",
    "greedy_decode",
    "sample_decode",
]


def _check_decoding_options(
    where: str, params: Seq2SeqParams, max_length, start_token, end_token, pad_token
) -> None:
    """Static options of the decoders: the tokens are ids of the target vocabulary."""
    check_int(where, "max_length", max_length)
    vocab_size = params.readout.output_size
    tokens = {"start_token": start_token, "end_token": end_token, "pad_token": pad_token}
    for name, token in tokens.items():
        check_token(where, name, token, vocab_size)


def _decode(
    where: str,
    params,
    source,
    source_lengths,
    *,
    max_length,
    start_token,
    end_token,
    pad_token,
    choose,
    key,
    temperature,
    time_major,
) -> tuple[jax.Array, jax.Array]:
    check_model(where, params)
    _check_decoding_options(where, params, max_length, start_token, end_token, pad_token)
    source = time_first(where, "source", source, time_major)
    decoder, carry = start_decoding(params, source, source_lengths)
    batch_shape = source_batch_shape(source)
    first_input = embed_target(params, jnp.full(batch_shape, start_token))
    _, tokens = generate(
        decoder,
        carry,
        first_input,
        max_length,
        readout=lambda y: readout(params.readout, y),
        choose=choose,
        embed=lambda token: embed_target(params, token),
        key=key,
        temperature=temperature,
        end_token=end_token,
        pad_token=pad_token,
    )
    lengths = decoded_lengths(tokens, end_token)
    return (tokens if time_major else jnp.moveaxis(tokens, 0, -1)), lengths


def greedy_decode(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None = None,
    *,
    max_length: int,
    start_token: int,
    end_token: int,
    pad_token: int = 0,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Decode by taking the most likely token at every step, fed back as the next input.

    $$
    \\hat y_t = \\arg\\max_k z_{t,k}, \\qquad
    (s_{t}, h_{t}) = \\mathrm{decoder}(s_{t-1}, E_{tgt}[\\hat y_{t-1}])
    $$

    A fixed-length ``lax.scan`` (see [`generate`][jaxrnn.decoding.generate]): after a sequence emits
    ``end_token`` it emits only ``pad_token``. Jit it with the keyword arguments bound
    (``functools.partial``).

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      source: integer ``(source_time, *batch)``.
      source_lengths: integer ``batch``, or ``None``.
      max_length: number of decoding steps.
      start_token: first decoder input.
      end_token: token that ends a sequence.
      pad_token: emitted after the end.

      time_major: ``False`` for a batch-major ``source`` (``(*batch, time)``); the
        tokens then come back ``(*batch, max_length)``.

    Returns:
      ``(tokens, lengths)``: ``(max_length, *batch)`` tokens and the ``batch``-shaped
      number of tokens up to and including the end token (``max_length`` if none).

    Example:
      >>> import functools, jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16)
      >>> decode = jax.jit(functools.partial(jaxrnn.seq2seq.greedy_decode, max_length=6,
      ...                                    start_token=2, end_token=1))
      >>> tokens, lengths = decode(params, jnp.zeros((7, 3), int), jnp.array([7, 2, 5]))
      >>> tokens.shape, lengths.shape
      ((6, 3), (3,))
    """
    return _decode(
        "greedy_decode",
        params,
        source,
        source_lengths,
        max_length=max_length,
        start_token=start_token,
        end_token=end_token,
        pad_token=pad_token,
        choose="argmax",
        key=None,
        temperature=1.0,
        time_major=time_major,
    )


def sample_decode(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None = None,
    *,
    key: jax.Array,
    max_length: int,
    start_token: int,
    end_token: int,
    pad_token: int = 0,
    temperature: float = 1.0,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Decode by sampling each token from ``softmax(z_t / temperature)``.

    $$
    \\hat y_t \\sim \\mathrm{Categorical}(\\mathrm{softmax}(z_t / \\tau))
    $$

    As [`greedy_decode`][jaxrnn.seq2seq.greedy_decode] otherwise; ``temperature -> 0`` approaches
    greedy decoding.

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      source: integer ``(source_time, *batch)``.
      source_lengths: integer ``batch``, or ``None``.
      max_length: number of decoding steps.
      start_token: first decoder input.
      end_token: token that ends a sequence.
      pad_token: emitted after the end.
      key: PRNG key (split once per step).
      temperature: ``tau > 0``.

      time_major: ``False`` for a batch-major ``source`` (``(*batch, time)``); the
        tokens then come back ``(*batch, max_length)``.

    Returns:
      ``(tokens, lengths)`` as in [`greedy_decode`][jaxrnn.seq2seq.greedy_decode].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16)
      >>> tokens, lengths = jaxrnn.seq2seq.sample_decode(
      ...     params, jnp.zeros((7, 3), int), key=jax.random.key(1), max_length=6,
      ...     start_token=2, end_token=1, temperature=0.5)
      >>> tokens.shape
      (6, 3)
    """
    check_key("sample_decode", key)
    return _decode(
        "sample_decode",
        params,
        source,
        source_lengths,
        max_length=max_length,
        start_token=start_token,
        end_token=end_token,
        pad_token=pad_token,
        choose="sample",
        key=key,
        temperature=temperature,
        time_major=time_major,
    )


def beam_search(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None = None,
    *,
    beam_size: int,
    max_length: int,
    start_token: int,
    end_token: int,
    pad_token: int = 0,
    time_major: bool = True,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Keep the ``beam_size`` most likely partial outputs at every step; return the best.

    Each hypothesis ``y_{1..t}`` has score ``sum_t log p(y_t | y_<t, source)``. At every
    step every live hypothesis is extended by every token, and the ``beam_size`` best of
    the ``beam_size * vocab`` candidates are kept; a finished hypothesis (it emitted
    ``end_token``) is extended only by ``pad_token`` at no cost, so it keeps its score.
    Scores are not length-normalized.

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      source: integer ``(source_time, batch)``: exactly one batch axis.
      source_lengths: integer ``(batch,)``, or ``None``.
      max_length: number of decoding steps.
      start_token: first decoder input.
      end_token: token that ends a sequence.
      pad_token: emitted after the end.
      beam_size: hypotheses kept per sequence (``1`` is greedy decoding). It may exceed
        the vocabulary: while fewer distinct hypotheses exist (``vocab ** step``), the
        extra beams hold score ``-inf``.
      time_major: ``False`` for a batch-major ``source`` ``(batch, source_time)``; the
        tokens then come back ``(batch, max_length)``.

    Returns:
      ``(tokens, lengths, scores)``: the best hypothesis of each sequence, tokens
      ``(max_length, batch)``, lengths ``(batch,)`` and log-probabilities ``(batch,)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16)
      >>> tokens, lengths, scores = jaxrnn.seq2seq.beam_search(
      ...     params, jnp.zeros((7, 3), int), beam_size=4, max_length=6, start_token=2,
      ...     end_token=1)
      >>> tokens.shape, scores.shape
      ((6, 3), (3,))
    """
    where = "beam_search"
    check_model(where, params)
    source = check_tokens(where, "source", time_first(where, "source", source, time_major))
    if source.ndim != 2:
        fail(where, "source", "have shape (time, batch)", shape_text(source.shape))
    check_int(where, "beam_size", beam_size)
    _check_decoding_options(where, params, max_length, start_token, end_token, pad_token)
    batch = source.shape[1]
    if source_lengths is not None:
        check_lengths(where, source_lengths, (batch,), source.shape[0])
    encoder_carry, encoder_ys = encode(params, source, source_lengths)
    # Every hypothesis becomes a row of a (batch * beam) batch: beam k of sequence b is row
    # b * beam + k. Only beam 0 is alive at first, so the first step does not pick the same
    # token from beam_size identical copies.
    carry = jax.tree.map(
        lambda a: jnp.repeat(a, beam_size, axis=0), bridge_carry(params, encoder_carry)
    )
    # An attention decoder's memory gets the same rows: each hypothesis reads its source.
    decoder = bound_decoder(
        params,
        jnp.repeat(encoder_ys, beam_size, axis=1),
        None if source_lengths is None else jnp.repeat(jnp.asarray(source_lengths), beam_size),
    )
    vocab = params.readout.output_size
    scores = jnp.where(jnp.arange(beam_size) == 0, 0.0, -jnp.inf)
    scores = jnp.tile(scores, (batch, 1))  # (batch, beam)
    tokens = jnp.full((batch, beam_size), start_token)
    finished = jnp.zeros((batch, beam_size), bool)
    history = jnp.full((max_length, batch, beam_size), pad_token)
    pad_only = jnp.where(jnp.arange(vocab) == pad_token, 0.0, -jnp.inf)

    def body(state, t):
        carry, tokens, scores, finished, history = state
        x = embed_target(params, tokens.reshape(-1))
        new_carry, y = cell_step(decoder, carry, x)
        log_probs = jax.nn.log_softmax(readout(params.readout, y), -1)
        log_probs = log_probs.reshape(batch, beam_size, vocab)
        log_probs = jnp.where(finished[..., None], pad_only, log_probs)
        candidates = (scores[..., None] + log_probs).reshape(batch, beam_size * vocab)
        scores, flat = jax.lax.top_k(candidates, beam_size)  # (batch, beam)
        parent, tokens = flat // vocab, flat % vocab
        rows = (jnp.arange(batch)[:, None] * beam_size + parent).reshape(-1)
        carry = jax.tree.map(lambda a: a[rows], new_carry)
        history = jnp.take_along_axis(history, parent[None], axis=2).at[t].set(tokens)
        finished = jnp.take_along_axis(finished, parent, axis=1) | (tokens == end_token)
        return (carry, tokens, scores, finished, history), None

    state = (carry, tokens, scores, finished, history)
    (_, _, scores, _, history), _ = jax.lax.scan(body, state, jnp.arange(max_length))
    best = jnp.argmax(scores, axis=1)  # top_k sorts, but argmax says what is meant
    best_tokens = jnp.take_along_axis(history, best[None, :, None], axis=2)[..., 0]
    best_scores = jnp.take_along_axis(scores, best[:, None], axis=1)[:, 0]
    lengths = decoded_lengths(best_tokens, end_token)
    return (best_tokens if time_major else best_tokens.T), lengths, best_scores
