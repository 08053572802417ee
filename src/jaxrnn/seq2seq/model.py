"""The encoder-decoder model: its params, ``init_seq2seq``, ``encode``, the bridge from
the encoder's final carry to the decoder's initial one, and ``shift_right``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.attention import (
    ATTENTION_KINDS,
    AttentionCell,
    init_attention_cell,
    with_memory,
)
from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_choice,
    check_int,
    check_key,
    check_rate,
    check_token,
    fail,
    shape_text,
)
from jaxrnn.core.composites import Bidirectional, Stack
from jaxrnn.core.initialization import init_params
from jaxrnn.core.params import params_class, static_field
from jaxrnn.core.unrolling import check_carry, init_carry, unroll
from jaxrnn.heads import ReadoutParams, init_readout, readout

__all__ = [
    "BRIDGES",
    "Seq2SeqParams",
    "bound_decoder",
    "bridge_carry",
    "check_model",
    "check_tokens",
    "decoder_cell",
    "embed_source",
    "embed_target",
    "encode",
    "init_seq2seq",
    "layers_of",
    "shift_right",
    "source_batch_shape",
    "start_decoding",
    "time_first",
]


BRIDGES = ("concat", "sum", "linear")


@params_class
class Seq2SeqParams:
    """Weights of an encoder–decoder. See [`init_seq2seq`][jaxrnn.seq2seq.init_seq2seq] and the
    module docstring."""

    # shape=(source_vocab_size, embed_size); None: one-hot tokens or continuous inputs
    source_embedding: jax.Array | None
    # shape=(target_vocab_size, embed_size); None: the decoder reads one-hot tokens
    target_embedding: jax.Array | None
    encoder: Any  # a cell, a Bidirectional pair, or a Stack of them
    # a cell or a Stack of cells, one layer per encoder layer; with attention, an
    # AttentionCell (without memory) around them
    decoder: Any
    bridge_params: tuple | None  # per layer: a carry-shaped pytree of ReadoutParams
    readout: ReadoutParams  # shape: (decoder output_size, target_vocab_size)
    bridge: str = static_field("concat")  # "concat", "sum" or "linear"


def layers_of(params: Any) -> tuple[Any, ...]:
    return params.layers if isinstance(params, Stack) else (params,)


def decoder_cell(decoder: Any) -> Any:
    """The decoder the bridge feeds: the cell inside an attention decoder."""
    return decoder.cell if isinstance(decoder, AttentionCell) else decoder


def bound_decoder(
    params: Seq2SeqParams, encoder_ys: jax.Array, source_lengths: ArrayLike | None
) -> Any:
    """The decoder, with the encoder's outputs as memory when it attends."""
    if isinstance(params.decoder, AttentionCell):
        return with_memory(params.decoder, encoder_ys, source_lengths)
    return params.decoder


def start_decoding(
    params: Seq2SeqParams,
    source: ArrayLike,
    source_lengths: ArrayLike | None,
    key: jax.Array | None = None,
) -> tuple[Any, Any]:
    """Encode the source (with dropout when ``key`` is given): the decoder (bound to the
    encoder's outputs when it attends) and its initial carry (the bridged encoder carry)."""
    encoder_carry, encoder_ys = encode(params, source, source_lengths, key=key)
    decoder = bound_decoder(params, encoder_ys, source_lengths)
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
    zero = encoder_layer.initial_carry((), dtype)
    merged = jax.eval_shape(lambda: _merge_directions(encoder_layer, zero, "concat"))
    target = jax.eval_shape(lambda: decoder_layer.initial_carry((), dtype))
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
    embed_size: int | None,
    hidden_size: int,
    cell: str = "lstm",
    num_layers: int = 1,
    bidirectional_encoder: bool = False,
    bridge: str = "concat",
    decoder_hidden_size: int | None = None,
    attention: str | None = None,
    dropout: float = 0.0,
    dtype: Any = jnp.float32,
    **cell_options: Any,
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
      embed_size: size of both embeddings; ``None`` for none: the encoder reads one-hot
        source tokens (or continuous source vectors of ``source_vocab_size`` features)
        and the decoder one-hot target tokens, as in Flax's seq2seq example.
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
      **cell_options: options of the encoder's and the decoder's cells, passed to
        [`init_params`][jaxrnn.init_params] (e.g. ``forget_bias``, ``reset_after``).

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
    check_key("init_seq2seq", key, optional=False)
    source_vocab_size = check_int("init_seq2seq", "source_vocab_size", source_vocab_size)
    target_vocab_size = check_int("init_seq2seq", "target_vocab_size", target_vocab_size)
    embed_size = check_int("init_seq2seq", "embed_size", embed_size, optional=True)
    check_bool("init_seq2seq", "bidirectional_encoder", bidirectional_encoder)
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
    source_size = source_vocab_size if embed_size is None else embed_size
    target_size = target_vocab_size if embed_size is None else embed_size
    encoder = init_params(
        k_enc,
        cell,
        source_size,
        hidden_size,
        num_layers=num_layers,
        bidirectional=bidirectional_encoder,
        dropout=dropout,
        dtype=dtype,
        **cell_options,
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
            target_size,
            decoder_size,
            num_layers=num_layers,
            dropout=dropout,
            dtype=dtype,
            **cell_options,
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
            target_size,
            decoder_size,
            memory_size,
            kind=attention,
            num_layers=num_layers,
            dropout=dropout,
            dtype=dtype,
            **cell_options,
        )
    bridge_params = None
    if bridge == "linear":
        layer_keys = jax.random.split(k_bridge, num_layers)
        bridge_params = tuple(
            _init_linear_bridge(k, e, d, dtype)
            for k, e, d in zip(
                layer_keys, layers_of(encoder), layers_of(decoder_cell(decoder)), strict=True
            )
        )

    def embedding(key: jax.Array, vocab_size: int) -> jax.Array | None:
        return (
            None if embed_size is None else jax.random.normal(key, (vocab_size, embed_size), dtype)
        )

    return Seq2SeqParams(
        source_embedding=embedding(k_src, source_vocab_size),
        target_embedding=embedding(k_tgt, target_vocab_size),
        encoder=encoder,
        decoder=decoder,
        bridge_params=bridge_params,
        readout=init_readout(k_out, decoder.output_size, target_vocab_size, dtype=dtype),
        bridge=bridge,
    )


def check_model(where: str, params: Any) -> None:
    """``params`` must be a ``Seq2SeqParams``; other models decode through
    ``jaxrnn.decoding``, which takes any decoder, readout and embedding."""
    if not isinstance(params, Seq2SeqParams):
        fail(
            where,
            "params",
            "be Seq2SeqParams from init_seq2seq (for a model of your own, decode with "
            "jaxrnn.decoding.generate or rollout on its decoder, readout and embedding)",
            type(params).__name__,
            TypeError,
        )


def embed_source(where: str, params: Seq2SeqParams, source: Any) -> jax.Array:
    """The encoder's inputs: ``E_src[source]``; without an embedding, one-hot tokens, or
    the source itself when it is continuous ``(time, ..., source_vocab_size)``."""
    if params.source_embedding is not None:
        return params.source_embedding[check_tokens(where, "source", source)]
    source = check_array(where, "source", source)
    if jnp.issubdtype(source.dtype, jnp.integer):
        return embed_tokens(check_tokens(where, "source", source), None, params.encoder)
    return source  # continuous inputs: unroll checks their shape and dtype


def embed_target(params: Seq2SeqParams, tokens: jax.Array) -> jax.Array:
    """The decoder's input for ``tokens``: ``E_tgt[tokens]``, or their one-hot vectors."""
    return embed_tokens(tokens, params.target_embedding, params.decoder)


def embed_tokens(tokens: jax.Array, table: jax.Array | None, reader: Any) -> jax.Array:
    """``table[tokens]``, or one-hot vectors of ``reader``'s input size and dtype."""
    if table is not None:
        return table[tokens]
    dtype = jax.tree.leaves(reader)[0].dtype
    size = reader.input_shape[-1]
    return jax.nn.one_hot(tokens, size, dtype=dtype)


def source_batch_shape(source: Any) -> tuple[int, ...]:
    """The batch shape of a time-major source: tokens ``(time, *batch)`` or continuous
    inputs ``(time, *batch, features)``."""
    shape = jnp.shape(source)
    return shape[1:] if jnp.issubdtype(jnp.result_type(source), jnp.integer) else shape[1:-1]


def time_first(where: str, name: str, array: Any, time_major: bool) -> Any:
    """``array`` (tokens ``(..., time)`` or continuous ``(..., time, features)`` when
    batch-major) with time first."""
    check_bool(where, "time_major", time_major)
    if time_major:
        return array
    array = check_array(where, name, array)
    tokens = jnp.issubdtype(array.dtype, jnp.integer)
    if array.ndim < (1 if tokens else 2):
        fail(where, name, "have a time axis", shape_text(array.shape))
    return jnp.moveaxis(array, -1 if tokens else -2, 0)


def check_tokens(where: str, name: str, tokens: Any) -> jax.Array:
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
        may hold any valid token. Without embeddings (``embed_size=None``) also
        continuous inputs ``(source_time, *batch, source_vocab_size)``.
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
    check_model("encode", params)
    if key is not None:
        check_key("encode", key)
    embedded = embed_source("encode", params, source)
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
    check_model("bridge_carry", params)
    leaves = jax.tree.leaves(encoder_carry)
    batch_shape = jnp.shape(leaves[0])[:-1] if leaves else ()
    check_carry(
        "bridge_carry",
        params.encoder,
        encoder_carry,
        batch_shape,
        "encoder_carry",
        "params.encoder",
    )
    carries = []
    linear = params.bridge_params or ()
    for i, (layer, carry) in enumerate(
        zip(layers_of(params.encoder), _layer_carries(params.encoder, encoder_carry), strict=True)
    ):
        carry = _merge_directions(layer, carry, params.bridge)
        if params.bridge == "linear":
            carry = jax.tree.map(lambda s, w: readout(w, s, "tanh"), carry, linear[i])
        carries.append(carry)
    cell = decoder_cell(params.decoder)
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
    targets = check_tokens("shift_right", "targets", targets)
    start_token = check_token("shift_right", "start_token", start_token)
    start = jnp.full((1, *targets.shape[1:]), start_token, targets.dtype)
    return jnp.concatenate([start, targets[:-1]], axis=0)
