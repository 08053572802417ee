"""Training an encoder-decoder with teacher forcing: ``seq2seq_logits``,
``seq2seq_loss``, ``seq2seq_alignments``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.attention import (
    AttentionCell,
    unroll_with_alignments,
)
from jaxrnn.core.checks import (
    check_bool,
    check_key,
    check_token,
    fail,
)
from jaxrnn.core.unrolling import unroll
from jaxrnn.heads import readout
from jaxrnn.losses import sequence_softmax_cross_entropy
from jaxrnn.seq2seq.model import (
    Seq2SeqParams,
    check_model,
    embed_target,
    shift_right,
    start_decoding,
    time_first,
)

__all__ = [
    "seq2seq_alignments",
    "seq2seq_logits",
    "seq2seq_loss",
]


def seq2seq_logits(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None,
    targets: ArrayLike,
    target_lengths: ArrayLike | None = None,
    *,
    start_token: int,
    key: jax.Array | None = None,
    time_major: bool = True,
) -> jax.Array:
    """Teacher-forced decoder logits: the decoder reads the true previous target tokens.

    $$
    s_0 = \\mathrm{bridge}(\\mathrm{encode}(\\mathrm{source})), \\quad
    (s_t, h_t) = \\mathrm{decoder}(s_{t-1}, E_{tgt}[y_{t-1}]), \\quad
    z_t = h_t W_y + b_y
    $$

    with ``y_{-1}`` = ``start_token``; ``z_t`` scores the target ``y_t``.

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      source: integer ``(source_time, *batch)``.
      source_lengths: integer ``batch``, or ``None``.
      targets: integer ``(target_time, *batch)``, each sequence ending with the end token
        and padded after it.
      target_lengths: integer ``batch`` (including the end token), or ``None``.
      start_token: the decoder's first input token.
      key: PRNG key for dropout (training): ``k_enc, k_dec = jax.random.split(key)`` run
        the encoder as ``encode(..., key=k_enc)`` and the decoder as ``unroll(...,
        key=k_dec)``, each drawing its own masks (``init_seq2seq``'s ``dropout``,
        [`regularize`][jaxrnn.regularization.regularize]d cells). ``None`` (evaluation): no dropout.

      time_major: ``False`` for batch-major ``source`` and ``targets``
        (``(*batch, time)``, or ``(*batch, time, features)`` for continuous sources),
        as Flax's seq2seq example and PyTorch's ``batch_first`` hold them; logits come
        back ``(*batch, time, vocab)``.

    Returns:
      Logits ``(target_time, *batch, target_vocab_size)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16)
      >>> logits = jaxrnn.seq2seq.seq2seq_logits(params, jnp.zeros((7, 3), int), None,
      ...                                        jnp.zeros((4, 3), int), start_token=2)
      >>> logits.shape
      (4, 3, 10)
    """
    check_model("seq2seq_logits", params)
    check_bool("seq2seq_logits", "time_major", time_major)
    check_token("seq2seq_logits", "start_token", start_token, params.readout.output_size)
    if not time_major:
        source = time_first("seq2seq_logits", "source", source, time_major)
        targets = time_first("seq2seq_logits", "targets", targets, time_major)
        logits = seq2seq_logits(
            params,
            source,
            source_lengths,
            targets,
            target_lengths,
            start_token=start_token,
            key=key,
        )
        return jnp.moveaxis(logits, 0, -2)
    encoder_key, decoder_key = _split_key("seq2seq_logits", key)
    decoder, carry = start_decoding(params, source, source_lengths, encoder_key)
    inputs = embed_target(params, shift_right(targets, start_token))
    _, ys = unroll(decoder, carry, inputs, lengths=target_lengths, key=decoder_key)
    return readout(params.readout, ys)


def _split_key(where: str, key: jax.Array | None) -> tuple[Any, Any]:
    """The encoder's and the decoder's keys: ``split(key)``, or ``None`` for both."""
    if key is None:
        return None, None
    check_key(where, key)
    encoder_key, decoder_key = jax.random.split(key)
    return encoder_key, decoder_key


def seq2seq_loss(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None,
    targets: ArrayLike,
    target_lengths: ArrayLike | None = None,
    *,
    start_token: int,
    key: jax.Array | None = None,
    time_major: bool = True,
) -> jax.Array:
    """Mean teacher-forced cross-entropy per valid target token.

    $$
    L = \\frac{1}{\\sum_b \\mathrm{lengths}_b} \\sum_b
    \\sum_{t < \\mathrm{lengths}_b} -\\log \\mathrm{softmax}(z_{t,b})_{y_{t,b}}
    $$

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      source: integer ``(source_time, *batch)``.
      source_lengths: integer ``batch``, or ``None``.
      targets: integer ``(target_time, *batch)``, each sequence ending with the end token.
      target_lengths: integer ``batch`` (including the end token), or ``None``.
      start_token: the decoder's first input token.
      key: PRNG key for dropout in training, split between encoder and decoder as in
        [`seq2seq_logits`][jaxrnn.seq2seq.seq2seq_logits]; ``None`` (evaluation): no dropout.

      time_major: ``False`` for batch-major ``source`` and ``targets``
        (``(*batch, time)``, or ``(*batch, time, features)`` for continuous sources),
        as Flax's seq2seq example and PyTorch's ``batch_first`` hold them; logits come
        back ``(*batch, time, vocab)``.

    Returns:
      A scalar.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16)
      >>> loss = jaxrnn.seq2seq.seq2seq_loss(params, jnp.zeros((7, 3), int), None,
      ...                                    jnp.ones((4, 3), int), jnp.array([4, 1, 2]),
      ...                                    start_token=2)
      >>> loss.shape, bool(loss > 0)
      ((), True)
      >>> deep = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                    hidden_size=16, num_layers=2, dropout=0.3)
      >>> batch = (jnp.ones((7, 3), int), None, jnp.ones((4, 3), int))
      >>> train_loss = jaxrnn.seq2seq.seq2seq_loss(deep, *batch, start_token=2,
      ...                                          key=jax.random.key(1))
      >>> eval_loss = jaxrnn.seq2seq.seq2seq_loss(deep, *batch, start_token=2)  # no key: no dropout
      >>> bool(train_loss != eval_loss)
      True
    """
    check_model("seq2seq_loss", params)
    check_token("seq2seq_loss", "start_token", start_token, params.readout.output_size)
    if key is not None:
        check_key("seq2seq_loss", key)
    source = time_first("seq2seq_loss", "source", source, time_major)
    targets = time_first("seq2seq_loss", "targets", targets, time_major)
    logits = seq2seq_logits(
        params,
        source,
        source_lengths,
        targets,
        target_lengths,
        start_token=start_token,
        key=key,
    )
    return sequence_softmax_cross_entropy(
        logits, jnp.asarray(targets), lengths=target_lengths, reduction="mean"
    )


def seq2seq_alignments(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None,
    targets: ArrayLike,
    target_lengths: ArrayLike | None = None,
    *,
    start_token: int,
) -> jax.Array:
    """Teacher-forced attention weights: how much each target step reads each source step.

    $$
    \\mathrm{alignments}_{t,b,s} = a_{t,b,s}, \\qquad \\sum_{s < L_b} a_{t,b,s} = 1
    $$

    the weights of the decoder's attention at step ``t`` as in
    [`seq2seq_logits`][jaxrnn.seq2seq.seq2seq_logits]. To see the alignments of a decoded output,
    pass the decoder's own tokens and lengths as ``targets``: teacher forcing on them replays the
    decoding. ``alignments[:, b, :source_lengths[b]]`` is the matrix to plot (target
    steps down, source steps across).

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq] with ``attention``.
      source: integer ``(source_time, *batch)``.
      source_lengths: integer ``batch``, or ``None``.
      targets: integer ``(target_time, *batch)``.
      target_lengths: integer ``batch``, or ``None``; later steps hold zeros.
      start_token: the decoder's first input token.

    Returns:
      ``(target_time, *batch, source_time)`` weights, zero on source padding.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16, attention="bahdanau")
      >>> alignments = jaxrnn.seq2seq.seq2seq_alignments(params, jnp.ones((7, 3), int),
      ...     jnp.array([7, 2, 5]), jnp.ones((4, 3), int), start_token=2)
      >>> alignments.shape, bool(jnp.all(alignments[:, 1, 2:] == 0))
      ((4, 3, 7), True)
    """
    check_model("seq2seq_alignments", params)
    check_token("seq2seq_alignments", "start_token", start_token, params.readout.output_size)
    if not isinstance(params.decoder, AttentionCell):
        fail(
            "seq2seq_alignments",
            "params",
            "have an attention decoder (init_seq2seq(..., attention=...))",
            f"a {type(params.decoder).__name__} decoder",
        )
    decoder, carry = start_decoding(params, source, source_lengths)
    inputs = embed_target(params, shift_right(targets, start_token))
    _, _, alignments = unroll_with_alignments(decoder, carry, inputs, lengths=target_lengths)
    return alignments
