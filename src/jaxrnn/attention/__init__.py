"""Attention: a decoder that reads all the encoder's outputs at every step.

An encoder–decoder without attention squeezes the source into the encoder's final carry.
With attention the decoder keeps the encoder's outputs ``m_1..m_S`` (the *memory*) and, at
every step, scores each position against a *query* from its own state, normalizes the
scores over the valid positions, and reads their weighted mean, the *context*::

    e_s = score(q, m_s)                          # s = 1..S
    a = softmax(e) over s < memory_length        # a_s = 0 exactly on padding
    context = sum_s a_s m_s

Three scores, after the two classic papers:

- ``"bahdanau"`` (additive; Bahdanau, Cho & Bengio 2015):
  ``score(q, m) = v^T tanh(q W_q + m W_m + b)``;
- ``"luong_dot"`` (Luong, Pham & Manning 2015): ``score(q, m) = q^T m``;
- ``"luong_general"`` (Luong et al. 2015): ``score(q, m) = q^T W_a m`` (stored as
  ``W_q = W_a``, so ``score = (q W_q) . m``).

[`attend`][jaxrnn.attention.attend] is that computation, on its own. An attention decoder is a cell
closed over its memory: an [`AttentionCell`][jaxrnn.attention.AttentionCell] holds an ordinary
decoder cell (or a [`stack`][jaxrnn.stack] of them), the attention weights and, once
[`with_memory`][jaxrnn.attention.with_memory] has bound them, the memory and its lengths. It has the
cell interface, so [`unroll`][jaxrnn.unroll] (teacher forcing), [`cell_step`][jaxrnn.cell_step]
and [`generate`][jaxrnn.decoding.generate] run it unchanged. Its step, with inner cell ``f`` and
input ``x_t`` (e.g. the embedding of the previous target token):

- ``"bahdanau"``: the context is read with the previous state and fed with the input,
  ``c_t = attend(s_{t-1})``, ``(s_t, h_t) = f(s_{t-1}, [x_t; c_t])``, output
  ``y_t = [h_t; c_t]`` (the readout sees the state and the context, as in Bahdanau's
  deep output);
- ``"luong_*"``: the context is read with the new state, ``(s_t, h_t) = f(s_{t-1},
  [x_t; h~_{t-1}])``, ``c_t = attend(h_t)``, and the output is the *attentional hidden
  state* ``y_t = h~_t = tanh([c_t; h_t] W_c + b_c)``. With ``input_feeding`` (Luong's
  default) ``h~_{t-1}`` is fed with the input, so the decoder knows what it attended to;
  without it the inner cell reads ``x_t`` alone.

Here ``h_t`` is the inner cell's output (its top layer's ``h``) and ``s_{t-1}``'s query
is the top layer's ``h`` in the carry.

Dropout inside the decoder follows [`unroll`][jaxrnn.unroll]'s ``key``, as everywhere in
jaxrnn: with a key, the inner layers draw exactly the masks that
``unroll(params.cell, ..., key=key)`` would draw, i.e. dropout between stacked layers
(``init_attention_cell(..., dropout=p)``, a fresh mask at every step as PyTorch's
``nn.LSTM(dropout=p)``) and, for layers wrapped by [`regularize`][jaxrnn.regularization.regularize],
variational dropout and zoneout. Without a key (and in [`cell_step`][jaxrnn.cell_step],
[`generate`][jaxrnn.decoding.generate], the decoders) the step is deterministic.

References:
  Bahdanau, Cho & Bengio, *Neural Machine Translation by Jointly Learning to Align and
  Translate*, ICLR 2015. Luong, Pham & Manning, *Effective Approaches to Attention-based
  Neural Machine Translation*, EMNLP 2015.
"""

from jaxrnn.attention.decoder import (
    AttentionCell,
    AttentionState,
    DecoderInputs,
    LayerNoise,
    init_attention_cell,
    unroll_with_alignments,
    with_memory,
)
from jaxrnn.attention.scores import ATTENTION_KINDS, AttentionParams, attend, init_attention

__all__ = [
    "ATTENTION_KINDS",
    "AttentionCell",
    "AttentionParams",
    "AttentionState",
    "DecoderInputs",
    "LayerNoise",
    "attend",
    "init_attention",
    "init_attention_cell",
    "unroll_with_alignments",
    "with_memory",
]
