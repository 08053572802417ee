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

from jaxrnn.seq2seq.decoding import beam_search, greedy_decode, sample_decode
from jaxrnn.seq2seq.model import (
    BRIDGES,
    Seq2SeqParams,
    bridge_carry,
    encode,
    init_seq2seq,
    shift_right,
)
from jaxrnn.seq2seq.training import seq2seq_alignments, seq2seq_logits, seq2seq_loss

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
