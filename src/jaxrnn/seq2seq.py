"""Encoder–decoder (sequence to sequence) RNNs, as in Sutskever et al. (2014).

The model, for a source ``x_1..x_S`` and a target ``y_1..y_T`` that ends with an end
token::

    enc_carry, _ = unroll(encoder, None, E_src[source], lengths=source_lengths)
    carry = bridge(enc_carry)                               # encoder state -> decoder state
    ys = unroll(decoder, carry, E_tgt[[start, y_1, ..., y_{T-1}]])   # teacher forcing
    logits = ys W_y + b_y                                   # predicts y_1, ..., y_T

Training minimises the masked cross-entropy of ``logits`` against the targets
([`seq2seq_loss`][jaxrnn.seq2seq.seq2seq_loss]). At test time the targets are unknown, so the
decoder feeds its own choices back ([`greedy_decode`][jaxrnn.seq2seq.greedy_decode],
[`sample_decode`][jaxrnn.seq2seq.sample_decode], [`beam_search`][jaxrnn.seq2seq.beam_search]),
stopping each sequence at its end token.

The bridge maps each encoder layer's final carry to the matching decoder layer's initial
carry (the encoder and decoder have the same number of layers and the same cell):
``"concat"`` joins a bidirectional layer's two directions (the decoder is twice as wide),
``"sum"`` adds them, ``"linear"`` applies a learned ``tanh(s W + b)`` to each carry part
(e.g. an LSTM's ``h`` and ``c``) after concatenating directions. A unidirectional encoder
with ``"concat"`` or ``"sum"`` hands its carry over unchanged.

With ``attention`` (see [`jaxrnn.attention`][jaxrnn.attention]) the decoder is an
[`AttentionCell`][jaxrnn.attention.AttentionCell]: the encoder's outputs at every source step become
its memory, masked by ``source_lengths``, and the decoder reads them at every target step::

    decoder = with_memory(decoder, enc_ys, source_lengths)   # (Bahdanau et al. 2015)
    ys = unroll(decoder, AttentionState(bridge(enc_carry), 0), E_tgt[...])

The bridge still starts the decoder's inner cell from the encoder's final carry.

Dropout is for training only, and follows the ``key`` of
[`seq2seq_loss`][jaxrnn.seq2seq.seq2seq_loss] and [`seq2seq_logits`][jaxrnn.seq2seq.seq2seq_logits],
as ``unroll``'s everywhere: ``init_seq2seq(..., dropout=p)`` drops between the stacked layers
of the encoder and of the decoder (PyTorch's ``nn.LSTM(dropout=p)``), and cells wrapped by
[`regularize`][jaxrnn.regularization.regularize] add their variational dropout and zoneout. The key
is split in two, one for each half::

    k_enc, k_dec = jax.random.split(key)
    enc_carry, enc_ys = unroll(encoder, None, E_src[source], lengths=..., key=k_enc)
    ys = unroll(decoder, bridge(enc_carry), E_tgt[...], lengths=..., key=k_dec)

Without a key (evaluation), and always in the decoders (greedy, sampled, beam), nothing is
dropped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.attention import (
    ATTENTION_KINDS,
    AttentionCell,
    init_attention_cell,
    unroll_with_alignments,
    with_memory,
)
from jaxrnn.core.checks import (
    check_array,
    check_choice,
    check_key,
    check_lengths,
    check_rate,
    fail,
    shape_text,
)
from jaxrnn.core.composites import Bidirectional, Stack
from jaxrnn.core.initialization import init_params
from jaxrnn.core.params import params_class, static_field
from jaxrnn.core.unrolling import cell_step, init_carry, unroll
from jaxrnn.decoding import decoded_lengths, generate
from jaxrnn.heads import ReadoutParams, init_readout, readout
from jaxrnn.losses import sequence_softmax_cross_entropy

__all__ = [
    "BRIDGES",
    "Seq2SeqParams",
    "beam_search",
    "bridge_carry",
    "encode",
    "greedy_decode",
    "init_seq2seq",
    "sample_decode",
    "seq2seq_alignments",
    "seq2seq_logits",
    "seq2seq_loss",
    "shift_right",
]

BRIDGES = ("concat", "sum", "linear")


@params_class
class Seq2SeqParams:
    """Weights of an encoder–decoder. See [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq] and the
    module docstring."""

    source_embedding: jax.Array  # shape=(source_vocab_size, embed_size)
    target_embedding: jax.Array  # shape=(target_vocab_size, embed_size)
    encoder: Any  # a cell, a Bidirectional pair, or a Stack of them
    # a cell or a Stack of cells, one layer per encoder layer; with attention, an
    # AttentionCell (without memory) around them
    decoder: Any
    bridge_params: tuple | None  # per layer: a carry-shaped pytree of ReadoutParams
    readout: ReadoutParams  # shape: (decoder output_size, target_vocab_size)
    bridge: str = static_field("concat")  # "concat", "sum" or "linear"


def _layers(params: Any) -> tuple[Any, ...]:
    return params.layers if isinstance(params, Stack) else (params,)


def _decoder_cell(decoder: Any) -> Any:
    """The decoder the bridge feeds: the cell inside an attention decoder."""
    return decoder.cell if isinstance(decoder, AttentionCell) else decoder


def _bound_decoder(
    params: Seq2SeqParams, encoder_ys: jax.Array, source_lengths: ArrayLike | None
) -> Any:
    """The decoder, with the encoder's outputs as memory when it attends."""
    if isinstance(params.decoder, AttentionCell):
        return with_memory(params.decoder, encoder_ys, source_lengths)
    return params.decoder


def _start_decoding(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None,
    key: jax.Array | None = None,
) -> tuple[Any, Any]:
    """Encode the source (with dropout when ``key`` is given): the decoder (bound to the
    encoder's outputs when it attends) and its initial carry (the bridged encoder carry)."""
    encoder_carry, encoder_ys = encode(params, source, source_lengths, key=key)
    decoder = _bound_decoder(params, encoder_ys, source_lengths)
    return decoder, bridge_carry(params, encoder_carry)


def _layer_carries(params: Any, carry: Any) -> tuple[Any, ...]:
    return tuple(carry) if isinstance(params, Stack) else (carry,)


def _merge_directions(layer: Any, carry: Any, bridge: str) -> Any:
    if not isinstance(layer, Bidirectional):
        return carry
    if bridge == "sum":
        return jax.tree.map(jnp.add, carry.forward, carry.backward)
    return jax.tree.map(lambda f, b: jnp.concatenate([f, b], -1), carry.forward, carry.backward)


def _init_linear_bridge(key: jax.Array, encoder_layer: Any, decoder_layer: Any, dtype: Any):
    """One readout per part of the decoder layer's carry (e.g. ``LSTMState(h=..., c=...)``)
    from the matching part of the encoder layer's carry, directions concatenated."""
    zero = encoder_layer.zero_carry((), dtype)
    merged = jax.eval_shape(lambda: _merge_directions(encoder_layer, zero, "concat"))
    target = jax.eval_shape(lambda: decoder_layer.zero_carry((), dtype))
    merged_leaves, structure = jax.tree.flatten(merged)
    target_leaves = jax.tree.leaves(target)  # same cell, so the same structure
    keys = jax.random.split(key, len(merged_leaves))
    parts = [
        init_readout(k, m.shape[-1], t.shape[-1], dtype=dtype)
        for k, m, t in zip(keys, merged_leaves, target_leaves, strict=True)
    ]
    return jax.tree.unflatten(structure, parts)


def init_seq2seq(
    key: jax.Array,
    source_vocab_size: int,
    target_vocab_size: int,
    *,
    embed_size: int,
    hidden_size: int,
    cell: str = "lstm",
    num_layers: int = 1,
    bidirectional_encoder: bool = False,
    bridge: str = "concat",
    decoder_hidden_size: int | None = None,
    attention: str | None = None,
    dropout: float = 0.0,
    dtype: Any = jnp.float32,
) -> Seq2SeqParams:
    """Initialize an encoder–decoder: embeddings, encoder, bridge, decoder, readout.

    Sizes, with ``H = hidden_size`` and ``L = num_layers``: the encoder has ``L`` layers
    of width ``H`` (each a bidirectional pair if ``bidirectional_encoder``); the decoder
    has ``L`` unidirectional layers of width ``2H`` (bidirectional, ``"concat"``), ``H``
    (``"sum"`` or unidirectional), or ``decoder_hidden_size`` (``"linear"``, default
    ``H``). Embeddings are ``N(0, 1)``; the readout maps the decoder's output to
    ``target_vocab_size`` logits.

    With ``attention``, the decoder is an [`AttentionCell`][jaxrnn.attention.AttentionCell] (see
    [`init_attention_cell`][jaxrnn.attention.init_attention_cell]) over the encoder's outputs, of
    size ``M = 2H`` (bidirectional) or ``H``: ``"bahdanau"`` (additive score, the context fed
    with the input, output ``[h_t; c_t]``), ``"luong_dot"`` (needs the decoder width to
    equal ``M``) or ``"luong_general"`` (output ``tanh([c_t; h_t] W_c + b_c)``, fed back
    with the next input).

    Args:
      key: a PRNG key.
      source_vocab_size: number of source tokens.
      target_vocab_size: number of target tokens (including start, end and padding).
      embed_size: size of both embeddings.
      hidden_size: width of each encoder layer (and direction).
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"``, for encoder and decoder.
      num_layers: layers of the encoder and of the decoder.
      bidirectional_encoder: make each encoder layer a bidirectional pair.
      bridge: ``"concat"``, ``"sum"`` or ``"linear"``.
      decoder_hidden_size: decoder width for ``bridge="linear"`` (``None``: ``H``).
      attention: ``None``, ``"bahdanau"``, ``"luong_dot"`` or ``"luong_general"``.
      dropout: rate of dropout on the outputs of every encoder and decoder layer but the
        last (both directions of a bidirectional layer; with attention, between the
        decoder's inner layers), a fresh mask at every step as PyTorch's
        ``nn.LSTM(dropout=...)``; applied only when [`seq2seq_loss`][jaxrnn.seq2seq.seq2seq_loss]
        gets a ``key``. Needs ``num_layers > 1``.
      dtype: dtype of every weight.

    Returns:
      [`Seq2SeqParams`][jaxrnn.seq2seq.Seq2SeqParams].

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16, bidirectional_encoder=True)
      >>> params.decoder.hidden_size, params.readout.w_y.shape
      (32, (32, 10))
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...     hidden_size=16, bidirectional_encoder=True, attention="luong_dot")
      >>> type(params.decoder).__name__, params.decoder.attention.memory_size
      ('AttentionCell', 32)
    """
    check_choice("init_seq2seq", "bridge", bridge, BRIDGES)
    dropout = check_rate("init_seq2seq", "dropout", dropout)
    if dropout and num_layers == 1:
        fail(
            "init_seq2seq",
            "dropout",
            "be 0 with num_layers=1 (it acts between the stacked layers of the encoder and "
            "of the decoder)",
            repr(dropout),
        )
    if decoder_hidden_size is not None and bridge != "linear":
        fail(
            "init_seq2seq",
            "decoder_hidden_size",
            "be None unless bridge='linear'",
            repr(decoder_hidden_size),
        )
    k_src, k_tgt, k_enc, k_dec, k_bridge, k_out = jax.random.split(key, 6)
    encoder = init_params(
        k_enc,
        cell,
        embed_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional_encoder,
        dropout=dropout,
        dtype=dtype,
    )
    if bridge == "linear":
        decoder_size = decoder_hidden_size or hidden_size
    elif bidirectional_encoder and bridge == "concat":
        decoder_size = 2 * hidden_size
    else:
        decoder_size = hidden_size
    if attention is None:
        decoder = init_params(
            k_dec,
            cell,
            embed_size,
            decoder_size,
            num_layers=num_layers,
            dropout=dropout,
            dtype=dtype,
        )
    else:
        check_choice("init_seq2seq", "attention", attention, (None, *ATTENTION_KINDS))
        memory_size = encoder.output_size
        if attention == "luong_dot" and memory_size != decoder_size:
            fail(
                "init_seq2seq",
                "attention",
                f"not be 'luong_dot' when the decoder width ({decoder_size}) differs from "
                f"the encoder's output size ({memory_size}); use 'luong_general' or "
                "'bahdanau'",
                repr(attention),
            )
        decoder = init_attention_cell(
            k_dec,
            cell,
            embed_size,
            decoder_size,
            memory_size,
            kind=attention,
            num_layers=num_layers,
            dropout=dropout,
            dtype=dtype,
        )
    bridge_params = None
    if bridge == "linear":
        layer_keys = jax.random.split(k_bridge, num_layers)
        bridge_params = tuple(
            _init_linear_bridge(k, e, d, dtype)
            for k, e, d in zip(
                layer_keys, _layers(encoder), _layers(_decoder_cell(decoder)), strict=True
            )
        )
    return Seq2SeqParams(
        source_embedding=jax.random.normal(k_src, (source_vocab_size, embed_size), dtype),
        target_embedding=jax.random.normal(k_tgt, (target_vocab_size, embed_size), dtype),
        encoder=encoder,
        decoder=decoder,
        bridge_params=bridge_params,
        readout=init_readout(k_out, decoder.output_size, target_vocab_size, dtype=dtype),
        bridge=bridge,
    )


def _check_tokens(where: str, name: str, tokens: Any) -> jax.Array:
    tokens = check_array(where, name, tokens)
    if tokens.ndim < 1 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        fail(
            where,
            name,
            "be integer tokens of shape (time, ...)",
            f"{tokens.dtype}{shape_text(tokens.shape)}",
        )
    return tokens


def encode(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None = None,
    *,
    key: jax.Array | None = None,
) -> tuple[Any, jax.Array]:
    """Embed and encode a padded batch of source token sequences.

    $$
    (\\mathrm{carry}, ys) = \\mathrm{unroll}(\\mathrm{encoder}, 0,
    E_{src}[\\mathrm{source}], \\mathrm{lengths})
    $$

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      source: integer tokens ``(source_time, *batch)``; padding beyond ``source_lengths``
        may hold any valid token.
      source_lengths: integer ``batch`` shape, or ``None`` when no sequence is padded.
      key: PRNG key for the encoder's dropout (passed to [`unroll`][jaxrnn.unroll]);
        ``None`` (evaluation): none.

    Returns:
      ``(carry, ys)``: the encoder's final carry (after each sequence's last valid step,
      in both directions) and its outputs ``(source_time, *batch, encoder output_size)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...                                      hidden_size=16, cell="gru")
      >>> carry, ys = jaxrnn.seq2seq.encode(params, jnp.zeros((7, 3), int), jnp.array([7, 2, 5]))
      >>> carry.shape, ys.shape
      ((3, 16), (7, 3, 16))
    """
    source = _check_tokens("encode", "source", source)
    if key is not None:
        check_key("encode", key)
    embedded = params.source_embedding[source]
    return unroll(params.encoder, None, embedded, lengths=source_lengths, key=key)


def bridge_carry(params: Seq2SeqParams, encoder_carry: Any) -> Any:
    """Turn the encoder's final carry into the decoder's initial carry, layer by layer.

    For encoder layer ``l`` with final carry ``s_l`` (``(s_l^{fwd}, s_l^{bwd})`` if
    bidirectional), applied to each part of the carry (``h``, and ``c`` for an LSTM):

    $$
    \\text{concat: } [s^{fwd}_l; s^{bwd}_l] \\qquad
    \\text{sum: } s^{fwd}_l + s^{bwd}_l \\qquad
    \\text{linear: } \\tanh([s^{fwd}_l; s^{bwd}_l] W_l + b_l)
    $$

    Args:
      params: from [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq].
      encoder_carry: the carry returned by [`encode`][jaxrnn.seq2seq.encode].

    With attention, the bridged carry starts the inner cell, and ``h~_0 = 0``:
    ``AttentionState(cell=bridged, attentional=0)``.

    Returns:
      A carry for ``params.decoder`` with the batch shape of the encoder's carry.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.seq2seq.init_seq2seq(jax.random.key(0), 12, 10, embed_size=8,
      ...     hidden_size=16, num_layers=2, bidirectional_encoder=True, bridge="sum")
      >>> carry, _ = jaxrnn.seq2seq.encode(params, jnp.zeros((7, 3), int))
      >>> [state.c.shape for state in jaxrnn.seq2seq.bridge_carry(params, carry)]
      [(3, 16), (3, 16)]
    """
    carries = []
    linear = params.bridge_params or ()
    for i, (layer, carry) in enumerate(
        zip(_layers(params.encoder), _layer_carries(params.encoder, encoder_carry), strict=True)
    ):
        carry = _merge_directions(layer, carry, params.bridge)
        if params.bridge == "linear":
            carry = jax.tree.map(lambda s, w: readout(w, s, "tanh"), carry, linear[i])
        carries.append(carry)
    cell = _decoder_cell(params.decoder)
    bridged = tuple(carries) if isinstance(cell, Stack) else carries[0]
    if isinstance(params.decoder, AttentionCell):
        batch_shape = jax.tree.leaves(bridged)[0].shape[:-1]
        return init_carry(params.decoder, batch_shape)._replace(cell=bridged)
    return bridged


def shift_right(targets: ArrayLike, start_token: int) -> jax.Array:
    """Decoder inputs for teacher forcing: the targets delayed by one step.

    $$
    \\mathrm{inputs}_0 = \\mathrm{start}, \\qquad
    \\mathrm{inputs}_t = \\mathrm{targets}_{t-1} \\quad (t \\ge 1)
    $$

    Args:
      targets: integer tokens ``(time, *batch)``.
      start_token: the token that starts every decoder input.

    Returns:
      Integer tokens ``(time, *batch)``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> jaxrnn.seq2seq.shift_right(jnp.array([[5], [6], [1]]), start_token=2)[:, 0]
      Array([2, 5, 6], dtype=int32)
    """
    targets = _check_tokens("shift_right", "targets", targets)
    start = jnp.full((1, *targets.shape[1:]), start_token, targets.dtype)
    return jnp.concatenate([start, targets[:-1]], axis=0)


def seq2seq_logits(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None,
    targets: ArrayLike,
    target_lengths: ArrayLike | None = None,
    *,
    start_token: int,
    key: jax.Array | None = None,
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
    encoder_key, decoder_key = _split_key("seq2seq_logits", key)
    decoder, carry = _start_decoding(params, source, source_lengths, encoder_key)
    inputs = params.target_embedding[shift_right(targets, start_token)]
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
    if key is not None:
        check_key("seq2seq_loss", key)
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
    if not isinstance(params.decoder, AttentionCell):
        fail(
            "seq2seq_alignments",
            "params",
            "have an attention decoder (init_seq2seq(..., attention=...))",
            f"a {type(params.decoder).__name__} decoder",
        )
    decoder, carry = _start_decoding(params, source, source_lengths)
    inputs = params.target_embedding[shift_right(targets, start_token)]
    _, _, alignments = unroll_with_alignments(decoder, carry, inputs, lengths=target_lengths)
    return alignments


def _decode(
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
) -> tuple[jax.Array, jax.Array]:
    decoder, carry = _start_decoding(params, source, source_lengths)
    batch_shape = jnp.shape(source)[1:]
    first_input = params.target_embedding[jnp.full(batch_shape, start_token)]
    _, tokens = generate(
        decoder,
        carry,
        first_input,
        max_length,
        readout=lambda y: readout(params.readout, y),
        choose=choose,
        embed=lambda token: params.target_embedding[token],
        key=key,
        temperature=temperature,
        end_token=end_token,
        pad_token=pad_token,
    )
    return tokens, decoded_lengths(tokens, end_token)


def greedy_decode(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None = None,
    *,
    max_length: int,
    start_token: int,
    end_token: int,
    pad_token: int = 0,
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
      beam_size: hypotheses kept per sequence (``1`` is greedy decoding).

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
    source = _check_tokens(where, "source", source)
    if source.ndim != 2:
        fail(where, "source", "have shape (time, batch)", shape_text(source.shape))
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        fail(where, "beam_size", "be a positive int", repr(beam_size), TypeError)
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
    decoder = _bound_decoder(
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
        x = params.target_embedding[tokens.reshape(-1)]
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
    return best_tokens, decoded_lengths(best_tokens, end_token), best_scores
