"""Every class of bad input fails with a message naming the function, the argument, what
was expected and what came; checks on traced inputs fail at trace time, also under ``jit``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn import (
    attention,
    decoding,
    heads,
    long_sequences,
    losses,
    parallel,
    pooling,
    precision,
    regularization,
    seq2seq,
    sharding,
    train,
)
from jaxrnn.interop.torch import carry_from_torch, carry_to_torch

KEY = jax.random.key(0)
LSTM = jaxrnn.init_params(KEY, "lstm", 3, 4)
GRU = jaxrnn.init_params(KEY, "gru", 3, 4)
DEEP_GRU = jaxrnn.init_params(KEY, "gru", 3, 4, num_layers=2)
XS = jnp.ones((5, 2, 3))
# The toolkit's models, once and tiny: a readout, an attention score, a regularized cell,
# a seq2seq model (target vocabulary 6) and its source tokens, a train step.
HEAD = heads.init_readout(KEY, 4, 3)
ATTENTION = attention.init_attention(KEY, 4, 6)
REGULARIZED = regularization.regularize(GRU, recurrent_dropout=0.25)
S2S = seq2seq.init_seq2seq(KEY, 7, 6, embed_size=3, hidden_size=4, cell="gru")
SOURCE = jnp.array([[1, 2], [3, 4], [5, 6]])  # (time, batch)
TRAIN = train.make_train_step(lambda params, xs: jnp.sum(params.w_h), optax.sgd(0.1), jit=False)
MESH = jax.make_mesh((1,), ("data",))


def greedy(**options):
    return lambda: seq2seq.greedy_decode(
        S2S, SOURCE, **{"max_length": 2, "start_token": 0, "end_token": 1, **options}
    )


def unroll_xs(params, **options):
    return lambda xs: jaxrnn.unroll(params, None, xs, **options)


def unroll_carry(params):
    return lambda carry: jaxrnn.unroll(params, carry, XS)


def unroll_lengths(lengths):
    return lambda: jaxrnn.unroll(GRU, None, XS, lengths=lengths)


#: ``(id, function, array arguments, error, message regex)``. Array arguments are what
#: ``jax.jit`` traces in the jitted variant of each case.
TRACED_CASES = [
    (
        "wrong-feature-size",
        unroll_xs(LSTM),
        [jnp.ones((5, 2, 7))],
        ValueError,
        r"^unroll: xs must have shape \(time, \.\.\., input_size=3\); got \(5, 2, 7\)$",
    ),
    (
        "xs-without-time-axis",
        unroll_xs(LSTM),
        [jnp.ones((3,))],
        ValueError,
        r"^unroll: xs must have shape \(time, \.\.\., input_size=3\); got \(3,\)$",
    ),
    (
        "batch-major-wrong-feature-size",
        lambda xs: jaxrnn.unroll(LSTM, None, xs, time_major=False),
        [jnp.ones((2, 5, 7))],
        ValueError,
        r"^unroll: xs must have shape \(\.\.\., time, input_size=3\); got \(2, 5, 7\)$",
    ),
    (
        "xs-not-floating",
        unroll_xs(GRU),
        [jnp.ones((5, 2, 3), jnp.int32)],
        TypeError,
        r"^unroll: xs must have a floating dtype; got int32$",
    ),
    (
        "cell-step-wrong-feature-size",
        lambda x: jaxrnn.cell_step(GRU, None, x),
        [jnp.ones((2, 7))],
        ValueError,
        r"^cell_step: x must have shape \(\.\.\., input_size=3\); got \(2, 7\)$",
    ),
    (
        "cell-step-carry-batch-mismatch",
        lambda carry, x: jaxrnn.cell_step(GRU, carry, x),
        [jnp.zeros((1, 4)), jnp.ones((2, 3))],
        ValueError,
        r"^cell_step: carry must match init_carry\(params, batch_shape=\(2,\)\): "
        r"float32\[2,4\]; got float32\[1,4\]$",
    ),
    (
        "carry-array-for-lstm",
        unroll_carry(LSTM),
        [jnp.zeros((2, 4))],
        ValueError,
        r"^unroll: carry must match init_carry\(params, batch_shape=\(2,\)\): "
        r"LSTMState\(h=float32\[2,4\], c=float32\[2,4\]\); got float32\[2,4\]$",
    ),
    (
        "carry-wrong-state-size",
        unroll_carry(LSTM),
        [jaxrnn.LSTMState(h=jnp.zeros((2, 4)), c=jnp.zeros((2, 5)))],
        ValueError,
        r"^unroll: carry must match .*; got LSTMState\(h=float32\[2,4\], c=float32\[2,5\]\)$",
    ),
    (
        "carry-broadcastable-batch",
        unroll_carry(GRU),
        [jnp.zeros((1, 4))],
        ValueError,
        r"^unroll: carry must match .*float32\[2,4\]; got float32\[1,4\]$",
    ),
    (
        "carry-missing-a-layer",
        unroll_carry(DEEP_GRU),
        [(jnp.zeros((2, 4)),)],
        ValueError,
        r"^unroll: carry must match .*\(float32\[2,4\], float32\[2,4\]\); "
        r"got \(float32\[2,4\],\)$",
    ),
    (
        "lengths-wrong-batch-shape",
        lambda lengths: jaxrnn.unroll(GRU, None, XS, lengths=lengths),
        [jnp.array([1, 2, 3])],
        ValueError,
        r"^unroll: lengths must have the batch shape of xs \(2,\); got \(3,\)$",
    ),
    (
        "lengths-broadcastable",
        lambda lengths: jaxrnn.unroll(GRU, None, XS, lengths=lengths),
        [jnp.array([[1], [2]])],
        ValueError,
        r"^unroll: lengths must have the batch shape of xs \(2,\); got \(2, 1\)$",
    ),
    (
        "lengths-scalar-for-a-batch",
        lambda lengths: jaxrnn.unroll(GRU, None, XS, lengths=lengths),
        [jnp.array(3)],
        ValueError,
        r"^unroll: lengths must have the batch shape of xs \(2,\); got \(\)$",
    ),
    (
        "lengths-float",
        lambda lengths: jaxrnn.unroll(GRU, None, XS, lengths=lengths),
        [jnp.array([1.0, 2.0])],
        TypeError,
        r"^unroll: lengths must have an integer dtype; got float32$",
    ),
    (
        "lengths-bool",
        lambda lengths: jaxrnn.unroll(GRU, None, XS, lengths=lengths),
        [jnp.array([True, False])],
        TypeError,
        r"^unroll: lengths must have an integer dtype; got bool$",
    ),
    (
        "key-not-a-key",
        lambda key: jaxrnn.unroll(DEEP_GRU, None, XS, key=key),
        [jnp.uint32(7)],
        TypeError,
        r"^unroll: key must be a single PRNG key \(jax.random.key\(seed\)\) or None; "
        r"got uint32\[\]$",
    ),
    (
        "key-batch-of-keys",
        lambda key: jaxrnn.unroll(DEEP_GRU, None, XS, key=key),
        [jax.random.split(KEY)],
        TypeError,
        r"^unroll: key must be a single PRNG key .*; got key<\w+>\[2\]$",
    ),
    (
        "softmax-cross-entropy-int-logits",
        lambda logits: losses.sequence_softmax_cross_entropy(logits, jnp.zeros((5, 2), int)),
        [jnp.zeros((5, 2, 4), jnp.int32)],
        TypeError,
        r"^sequence_softmax_cross_entropy: logits must have a floating dtype; got int32$",
    ),
    (
        "mean-squared-error-bool-predictions",
        lambda predictions: losses.sequence_mean_squared_error(predictions, jnp.zeros((5, 2))),
        [jnp.zeros((5, 2), bool)],
        TypeError,
        r"^sequence_mean_squared_error: predictions must have a floating dtype; got bool$",
    ),
    (
        "pool-max-of-a-mask",
        pooling.pool_max,
        [jnp.ones((5, 2, 4), bool)],
        TypeError,
        r"^pool_max: ys must have a numeric dtype \(not bool\); got bool$",
    ),
    (
        "readout-int-h",
        lambda h: heads.readout(HEAD, h),
        [jnp.ones((2, 4), jnp.int32)],
        TypeError,
        r"^readout: h must have a floating dtype; got int32$",
    ),
    (
        "attend-int-query",
        lambda query: attention.attend(ATTENTION, query, jnp.ones((5, 2, 6))),
        [jnp.ones((2, 4), jnp.int32)],
        TypeError,
        r"^attend: query must have a floating dtype; got int32$",
    ),
    (
        "decoded-lengths-float-tokens",
        lambda tokens: decoding.decoded_lengths(tokens, 1),
        [jnp.ones((3, 2))],
        TypeError,
        r"^decoded_lengths: tokens must have an integer dtype; got float32$",
    ),
    (
        "bridge-carry-of-another-size",
        lambda carry: seq2seq.bridge_carry(S2S, carry),
        [jnp.zeros((2, 5))],
        ValueError,
        r"^bridge_carry: encoder_carry must match init_carry\(params.encoder, "
        r"batch_shape=\(2,\)\): float32\[2,4\]; got float32\[2,5\]$",
    ),
    (
        "draw-masks-wrong-feature-size",
        lambda xs: regularization.draw_masks(REGULARIZED, xs, KEY),
        [jnp.ones((5, 2, 7))],
        ValueError,
        r"^draw_masks: xs must have shape \(time, \.\.\., input_size=3\); got \(5, 2, 7\)$",
    ),
    (
        "linear-scan-int-inputs",
        lambda b: parallel.linear_scan(jnp.ones((5, 2)), b),
        [jnp.ones((5, 2), jnp.int32)],
        TypeError,
        r"^linear_scan: b must have a floating or complex dtype; got int32$",
    ),
    (
        "linear-scan-h0-of-another-batch",
        lambda h0: parallel.linear_scan(jnp.ones((5, 2)), jnp.ones((5, 2)), h0),
        [jnp.ones(3)],
        ValueError,
        r"^linear_scan: h0 must have the shape of one step of b \(2,\) or be None; got \(3,\)$",
    ),
    (
        "dropout-int-x",
        lambda x: jaxrnn.dropout(KEY, x, 0.5),
        [jnp.ones(3, jnp.int32)],
        TypeError,
        r"^dropout: x must have a floating dtype; got int32$",
    ),
]

#: Cases whose bad input is not an array (so there is nothing for ``jit`` to trace).
STATIC_CASES = [
    (
        "xs-a-list",
        lambda: jaxrnn.unroll(GRU, None, [[1.0, 2.0, 3.0]]),
        TypeError,
        r"^unroll: xs must be an array; got list$",
    ),
    (
        "key-an-int",
        lambda: jaxrnn.unroll(DEEP_GRU, None, XS, key=0),
        TypeError,
        r"^unroll: key must be a single PRNG key .*; got int$",
    ),
    (
        "unknown-method",
        lambda: jaxrnn.unroll(GRU, None, XS, method="nonsense"),
        ValueError,
        r"^unroll: method must be one of 'sequential'.*; got 'nonsense'$",
    ),
    (
        "time-major-not-bool",
        lambda: jaxrnn.unroll(GRU, None, XS, time_major="no"),
        TypeError,
        r"^unroll: time_major must be a bool; got 'no'$",
    ),
    (
        "params-not-params",
        lambda: jaxrnn.unroll({"w_x": XS}, None, XS),
        TypeError,
        r"^unroll: params must be jaxrnn params .*; got dict$",
    ),
    (
        "init-carry-batch-shape",
        lambda: jaxrnn.init_carry(GRU, 3),
        TypeError,
        r"^init_carry: batch_shape must be a tuple of ints; got 3$",
    ),
    (
        "unknown-cell",
        lambda: jaxrnn.init_params(KEY, "lstn", 3, 4),
        ValueError,
        r"^init_params: cell must be one of 'rnn', 'lstm', 'gru'.*; got 'lstn'$",
    ),
    (
        "option-of-another-cell",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, proj_size=2),
        TypeError,
        r"^init_params: cell_options must be options of cell 'gru' \(reset_after, .*\); "
        r"got proj_size$",
    ),
    (
        "misspelled-option",
        lambda: jaxrnn.init_params(KEY, "rnn", 3, 4, activaton="relu"),
        TypeError,
        r"^init_params: cell_options must be options of cell 'rnn' .*; got activaton$",
    ),
    (
        "unknown-activation",
        lambda: jaxrnn.init_params(KEY, "rnn", 3, 4, activation="sigmoid"),
        ValueError,
        r"^init_params: activation must be one of 'tanh', 'relu'; got 'sigmoid'$",
    ),
    (
        "size-zero",
        lambda: jaxrnn.init_params(KEY, "gru", 0, 4),
        ValueError,  # a wrong value; a wrong type is a TypeError (issue 13)
        r"^init_params: input_size must be a positive int; got 0$",
    ),
    (
        "size-float",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4.0),
        TypeError,
        r"^init_params: hidden_size must be a positive int; got 4.0$",
    ),
    (
        "num-layers-bool",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, num_layers=True),
        TypeError,
        r"^init_params: num_layers must be a positive int; got True$",
    ),
    (
        "dropout-with-one-layer",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, dropout=0.5),
        ValueError,
        r"^init_params: dropout must be 0 with num_layers=1 .*; got 0.5$",
    ),
    (
        "unknown-merge",
        lambda: jaxrnn.bidirectional(GRU, GRU, merge="max"),
        ValueError,
        r"^bidirectional: merge must be one of 'concat', 'sum', 'mean'; got 'max'$",
    ),
    (
        "merge-sum-of-different-sizes",
        lambda: jaxrnn.bidirectional(GRU, jaxrnn.init_params(KEY, "gru", 3, 5), merge="sum"),
        ValueError,
        r"^bidirectional: backward must have forward's output_size=4 for merge='sum'; got 5$",
    ),
    (
        "bidirectional-input-mismatch",
        lambda: jaxrnn.bidirectional(GRU, jaxrnn.init_params(KEY, "gru", 2, 4)),
        ValueError,
        r"^bidirectional: backward must take the same input shape as forward \(3,\); got \(2,\)$",
    ),
    (
        "bidirectional-not-params",
        lambda: jaxrnn.bidirectional(GRU, "gru"),
        TypeError,
        r"^bidirectional: backward must be jaxrnn params; got str$",
    ),
    (
        "stack-layer-size-mismatch",
        lambda: jaxrnn.stack([jaxrnn.init_params(KEY, "lstm", 3, 4, proj_size=2), GRU]),
        ValueError,
        r"^stack: layers\[1\] must take input_size=2 \(layers\[0\].output_size\); "
        r"got input_shape=\(3,\)$",
    ),
    (
        "stack-empty",
        lambda: jaxrnn.stack([]),
        ValueError,
        r"^stack: layers must be a non-empty sequence of params; got an empty sequence$",
    ),
    (
        "stack-not-params",
        lambda: jaxrnn.stack([GRU, XS]),
        TypeError,
        r"^stack: layers\[1\] must be jaxrnn params; got ArrayImpl$",
    ),
    (
        "stack-dropout-out-of-range",
        lambda: jaxrnn.stack([GRU], dropout=1.0),
        ValueError,
        r"^stack: dropout must be a number in \[0, 1\); got 1.0$",
    ),
    (
        "to-torch-not-params",
        lambda: jaxrnn.to_torch({"w": XS}),
        TypeError,
        r"^to_torch: params must be a cell, a Stack or a Bidirectional; got dict$",
    ),
    (
        "to-torch-gru-reset-before",
        lambda: jaxrnn.to_torch(jaxrnn.init_params(KEY, "gru", 3, 4, reset_after=False)),
        ValueError,
        r"^to_torch: params must be a GRU with reset_after=True .*; got reset_after=False$",
    ),
    (
        "to-torch-bare-projected-lstm",
        lambda: jaxrnn.to_torch(jaxrnn.init_params(KEY, "lstm", 3, 4, proj_size=2)),
        ValueError,
        r"^to_torch: params must be a cell without projection .*; got proj_size > 0$",
    ),
    (
        "from-torch-not-a-module",
        lambda: jaxrnn.from_torch(GRU),
        TypeError,
        r"^from_torch: module must be a torch nn.RNN, .*; got GRUParams$",
    ),
    (
        "carry-from-torch-wrong-layer-count",
        lambda: carry_from_torch(DEEP_GRU, jnp.zeros((3, 2, 4))),
        ValueError,
        r"^carry_from_torch: h0 must have 2 entries on axis 0 .*; got \(3, 2, 4\)$",
    ),
    (
        "carry-from-torch-lstm-without-c0",
        lambda: carry_from_torch(LSTM, jnp.zeros((1, 2, 4))),
        ValueError,
        r"^carry_from_torch: c0 must be given for an LSTM; got None$",
    ),
    (
        "carry-from-torch-c0-of-fewer-layers",
        lambda: carry_from_torch(
            jaxrnn.init_params(KEY, "lstm", 3, 4, num_layers=2),
            jnp.zeros((2, 5, 4)),
            jnp.zeros((1, 5, 4)),
        ),
        ValueError,
        r"^carry_from_torch: c0 must have shape \(2, 5\) \+ \(hidden_size,\), as h0 but its last "
        r"axis; got \(1, 5, 4\)$",
    ),
    (
        "carry-from-torch-c0-of-the-wrong-size",
        lambda: carry_from_torch(LSTM, jnp.zeros((1, 2, 4)), jnp.zeros((1, 2, 3))),
        ValueError,
        r"^carry_from_torch: \(h0, c0\) must match init_carry\(params, batch_shape=\(2,\)\): "
        r"LSTMState\(h=float32\[2,4\], c=float32\[2,4\]\); got LSTMState\(h=float32\[2,4\], "
        r"c=float32\[2,3\]\)$",
    ),
    (
        "carry-from-torch-c0-for-a-gru",
        lambda: carry_from_torch(DEEP_GRU, jnp.zeros((2, 5, 4)), jnp.zeros((2, 5, 4))),
        ValueError,
        r"^carry_from_torch: c0 must be None: only an LSTM has a cell state; got an array$",
    ),
    (
        "carry-to-torch-a-layer-missing",
        lambda: carry_to_torch(DEEP_GRU, (jnp.zeros((5, 4)),)),
        ValueError,
        r"^carry_to_torch: carry must match init_carry\(params, batch_shape=\(5,\)\): "
        r"\(float32\[5,4\], float32\[5,4\]\); got \(float32\[5,4\],\)$",
    ),
    (
        "carry-to-torch-not-a-torch-cell",
        lambda: carry_to_torch(jaxrnn.init_params(KEY, "mingru", 3, 4), jnp.zeros((5, 4))),
        ValueError,
        r"^carry_to_torch: params must hold cells of one PyTorch kind \(RNN, LSTM or GRU\); "
        r"got MinGRUParams$",
    ),
    (
        "hand-built-stack-does-not-fit",
        lambda: jaxrnn.unroll(jaxrnn.Stack(layers=(GRU, LSTM)), None, XS),
        ValueError,
        r"^unroll: params.layers\[1\] must take input_size=4 \(params.layers\[0\].output_size\); "
        r"got input_shape=\(3,\)$",
    ),
    (
        "hand-built-pair-does-not-fit",
        lambda: jaxrnn.init_carry(
            jaxrnn.Bidirectional(forward=GRU, backward=DEEP_GRU.layers[1]), (2,)
        ),
        ValueError,
        r"^init_carry: params.backward must take the same input shape as params.forward "
        r"\(3,\); got \(4,\)$",
    ),
    (
        "final-hidden-of-carry-and-ys",
        lambda: jaxrnn.pooling.final_hidden(jaxrnn.unroll(GRU, None, XS)),
        ValueError,
        r"^final_hidden: carry must be the carry of unroll .*; "
        r"got arrays of shapes \(2, 4\), \(5, 2, 4\)$",
    ),
    (
        "generate-zero-steps",
        lambda: decoding.generate(GRU, None, jnp.ones((2, 3)), 0),
        ValueError,  # a wrong value; a float count is a TypeError
        r"^generate: num_steps must be a positive int; got 0$",
    ),
    (
        "generate-temperature-a-string",
        lambda: decoding.generate(
            GRU, None, jnp.ones((2, 3)), 2, choose="sample", key=KEY, temperature="1"
        ),
        TypeError,
        r"^generate: temperature must be > 0; got '1'$",
    ),
    (
        "generate-float-end-token",
        lambda: decoding.generate(GRU, None, jnp.ones((2, 3)), 2, end_token=1.5),
        TypeError,
        r"^generate: end_token must be a token id, an int >= 0; got 1.5$",
    ),
    (
        "generate-readout-not-a-function",
        lambda: decoding.generate(GRU, None, jnp.ones((2, 3)), 2, readout="head"),
        TypeError,
        r"^generate: readout must be a function or None; got str$",
    ),
    (
        "decoded-lengths-without-end-token",
        lambda: decoding.decoded_lengths(jnp.ones((3, 2), int), None),
        TypeError,
        r"^decoded_lengths: end_token must be a token id, an int >= 0; got None$",
    ),
    (
        "init-seq2seq-empty-vocabulary",
        lambda: seq2seq.init_seq2seq(KEY, 0, 6, embed_size=3, hidden_size=4),
        ValueError,
        r"^init_seq2seq: source_vocab_size must be a positive int; got 0$",
    ),
    (
        "init-seq2seq-bidirectional-not-bool",
        lambda: seq2seq.init_seq2seq(
            KEY, 7, 6, embed_size=3, hidden_size=4, bidirectional_encoder="yes"
        ),
        TypeError,
        r"^init_seq2seq: bidirectional_encoder must be a bool; got 'yes'$",
    ),
    (
        "decode-token-outside-vocabulary",
        greedy(start_token=99),
        ValueError,
        r"^greedy_decode: start_token must be a token id, an int in \[0, vocab_size=6\); "
        r"got 99$",
    ),
    (
        "decode-negative-pad-token",
        greedy(pad_token=-1),
        ValueError,
        r"^greedy_decode: pad_token must be a token id, an int in \[0, vocab_size=6\); got -1$",
    ),
    (
        "decode-zero-length",
        greedy(max_length=0),
        ValueError,
        r"^greedy_decode: max_length must be a positive int; got 0$",
    ),
    (
        "beam-search-zero-length",
        lambda: seq2seq.beam_search(
            S2S, SOURCE, beam_size=2, max_length=0, start_token=0, end_token=1
        ),
        ValueError,
        r"^beam_search: max_length must be a positive int; got 0$",
    ),
    (
        "seq2seq-logits-time-major-not-bool",
        lambda: seq2seq.seq2seq_logits(S2S, SOURCE, None, SOURCE, start_token=0, time_major="no"),
        TypeError,
        r"^seq2seq_logits: time_major must be a bool; got 'no'$",
    ),
    (
        "shift-right-float-start",
        lambda: seq2seq.shift_right(SOURCE, 0.5),
        TypeError,
        r"^shift_right: start_token must be a token id, an int >= 0; got 0.5$",
    ),
    (
        "init-readout-seed-for-key",
        lambda: heads.init_readout(0, 4, 3),
        TypeError,
        r"^init_readout: key must be a single PRNG key \(jax.random.key\(seed\)\); got int$",
    ),
    (
        "init-readout-int-dtype",
        lambda: heads.init_readout(KEY, 4, 3, dtype=jnp.int32),
        TypeError,
        r"^init_readout: dtype must be a floating dtype; got int32$",
    ),
    (
        "init-attention-cell-input-feeding-not-bool",
        lambda: attention.init_attention_cell(KEY, "gru", 3, 4, 6, input_feeding="no"),
        TypeError,
        r"^init_attention_cell: input_feeding must be a bool; got 'no'$",
    ),
    (
        "draw-masks-of-plain-params",
        lambda: regularization.draw_masks(GRU, XS, KEY),
        TypeError,
        r"^draw_masks: params must be Regularized \(from regularize\); got GRUParams$",
    ),
    (
        "chunk-lengths-zero-chunks",
        lambda: long_sequences.chunk_lengths(jnp.array([3, 5]), 0, 3),
        ValueError,
        r"^chunk_lengths: num_chunks must be a positive int; got 0$",
    ),
    (
        "truncated-bptt-chunks-not-arrays",
        lambda: long_sequences.truncated_bptt(lambda p, c, x: (0.0, c), GRU, None, "abc"),
        TypeError,
        r"^truncated_bptt: chunks must be a pytree of arrays with one leading num_chunks axis "
        r"\(see split_chunks\); got 'abc'$",
    ),
    (
        "make-train-step-optimizer-a-name",
        lambda: train.make_train_step(lambda params: 0.0, "adam"),
        TypeError,
        r"^make_train_step: optimizer must be an optax optimizer .*; got str$",
    ),
    (
        "make-train-step-has-aux-not-bool",
        lambda: train.make_train_step(lambda params: 0.0, optax.sgd(0.1), has_aux="yes"),
        TypeError,
        r"^make_train_step: has_aux must be a bool; got 'yes'$",
    ),
    (
        "fit-log-every-zero",
        lambda: train.fit(TRAIN, TRAIN.init(GRU), [(XS,)], log_every=0, progress=False),
        ValueError,
        r"^fit: log_every must be a positive int; got 0$",
    ),
    (
        "fit-not-a-train-step",
        lambda: train.fit(TRAIN.step, TRAIN.init(GRU), [(XS,)], progress=False),
        TypeError,
        r"^fit: train must be a TrainStep \(from make_train_step\); got function$",
    ),
    (
        "cast-params-dtype-none",
        lambda: precision.cast_params(GRU, None),
        TypeError,
        r"^cast_params: dtype must be a floating dtype; got None$",
    ),
    (
        "full-precision-not-params",
        lambda: precision.full_precision("gru"),
        TypeError,
        r"^full_precision: params must be jaxrnn params; got str$",
    ),
    (
        "linear-scan-zero-chunk-size",
        lambda: parallel.linear_scan(jnp.ones(4), jnp.ones(4), strategy="chunked", chunk_size=0),
        ValueError,
        r"^linear_scan: chunk_size must be a positive int or None; got 0$",
    ),
    (
        "deer-damping-none",
        lambda: parallel.DEER(damping=None),
        TypeError,
        r"^DEER: damping must be >= 0; got None$",
    ),
    (
        "deer-unroll-reverse-not-bool",
        lambda: parallel.deer_unroll(GRU, None, XS, reverse="yes"),
        TypeError,
        r"^deer_unroll: reverse must be a bool; got 'yes'$",
    ),
    (
        "batch-sharding-negative-dim",
        lambda: sharding.batch_sharding(MESH, "data", -1),
        ValueError,
        r"^batch_sharding: batch_dim must be a non-negative int; got -1$",
    ),
    (
        "replicated-without-mesh",
        lambda: sharding.replicated(None),
        TypeError,
        r"^replicated: mesh must be a jax.sharding.Mesh \(jax.make_mesh\(...\)\); got NoneType$",
    ),
    (
        "init-params-dtype-none",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, dtype=None),
        TypeError,
        r"^init_params: dtype must be a floating dtype; got None$",
    ),
    (
        "init-params-bidirectional-not-bool",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, bidirectional="yes"),
        TypeError,
        r"^init_params: bidirectional must be a bool; got 'yes'$",
    ),
    (
        "init-carry-float-batch",
        lambda: jaxrnn.init_carry(GRU, (2.0,)),
        TypeError,
        r"^init_carry: batch_shape must be a tuple of ints; got \(2.0,\)$",
    ),
    (
        "stack-of-none",
        lambda: jaxrnn.stack(None),
        TypeError,
        r"^stack: layers must be a non-empty sequence of params; got NoneType$",
    ),
    (
        "dropout-seed-for-key",
        lambda: jaxrnn.dropout(0, jnp.ones(3), 0.5),
        TypeError,
        r"^dropout: key must be a single PRNG key .*; got int$",
    ),
    (
        "dropout-rate-none",
        lambda: jaxrnn.dropout(KEY, jnp.ones(3), None),
        ValueError,
        r"^dropout: rate must be a number in \[0, 1\); got None$",
    ),
    (
        "learned-init-integer-carry0",
        lambda: jaxrnn.carries.learned_init(GRU, jnp.zeros(4, jnp.int32)),
        TypeError,
        r"^learned_init: carry0 must have real floating leaves like "
        r"init_carry\(params, batch_shape=\(\)\); got int32$",
    ),
    (
        "carry-to-flax-not-a-carry",
        lambda: jaxrnn.interop.flax.carry_to_flax("abc"),
        TypeError,
        r"^carry_to_flax: carry must be a jaxrnn LSTM or GRU carry \(LSTMState or array\); "
        r"got 'abc'$",
    ),
    (
        "carry-from-flax-three-tuple",
        lambda: jaxrnn.interop.flax.carry_from_flax((XS, XS, XS)),
        TypeError,
        r"^carry_from_flax: carry must be a Flax carry \(\(c, h\) tuple or array\); got \(",
    ),
    (
        "initializer-not-a-function",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, kernel_init="lecun_normal"),
        TypeError,
        r"^init_params: kernel_init must be a function; got str$",
    ),
    (
        "forget-bias-not-a-number",
        lambda: jaxrnn.init_params(KEY, "lstm", 3, 4, forget_bias=None),
        TypeError,
        r"^init_params: forget_bias must be a number; got None$",
    ),
    (
        "layer-norm-epsilon-negative",
        lambda: jaxrnn.init_params(KEY, "lstm_ln", 3, 4, epsilon=-1e-5),
        ValueError,
        r"^init_params: epsilon must be > 0; got -1e-05$",
    ),
    (
        "lru-radius-not-a-number",
        lambda: jaxrnn.init_params(KEY, "lru", 3, 4, r_min="0.5"),
        TypeError,
        r"^init_params: r_min must be a number; got '0.5'$",
    ),
    (
        "reset-after-not-bool",
        lambda: jaxrnn.init_params(KEY, "gru", 3, 4, reset_after="no"),
        TypeError,
        r"^init_params: reset_after must be a bool; got 'no'$",
    ),
    (
        "optimizer-sharding-not-an-optimizer",
        lambda: jaxrnn.sharding.optimizer_sharding(
            "adam",
            GRU,
            jaxrnn.sharding.replicated(jax.make_mesh((1,), ("data",))),
            jax.make_mesh((1,), ("data",)),
        ),
        TypeError,
        r"^optimizer_sharding: optimizer must be an optax optimizer "
        r"\(optax.adam\(1e-3\), \.\.\.\); got str$",
    ),
    (
        "fit-desc-not-a-str",
        lambda: train.fit(TRAIN, TRAIN.init(GRU), [(XS,)], desc=3, progress=False),
        TypeError,
        r"^fit: desc must be a str; got 3$",
    ),
    (
        "save-checkpoint-path-not-a-path",
        lambda: train.save_checkpoint(3, GRU),
        TypeError,
        r"^save_checkpoint: path must be a file path \(str or os.PathLike\); got int$",
    ),
    (
        "restore-checkpoint-path-not-a-path",
        lambda: train.restore_checkpoint(None, GRU),
        TypeError,
        r"^restore_checkpoint: path must be a file path \(str or os.PathLike\); got NoneType$",
    ),
    (
        "cudnn-unroll-zero",
        lambda: jaxrnn.methods.CuDNN(unroll=0),
        ValueError,
        r"^CuDNN: unroll must be a positive int or a bool; got 0$",
    ),
    (
        "cudnn-remat-not-bool",
        lambda: jaxrnn.methods.CuDNN(remat="yes"),
        TypeError,
        r"^CuDNN: remat must be a bool; got 'yes'$",
    ),
]


@pytest.mark.parametrize(
    "function, args, error, match",
    [case[1:] for case in TRACED_CASES],
    ids=[case[0] for case in TRACED_CASES],
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_bad_traced_input(function, args, error, match, jit):
    if jit:
        function = jax.jit(function)
    # Multiline: under jit, JAX appends a note on traceback filtering after our line.
    with pytest.raises(error, match=re.compile(match, re.MULTILINE)):
        function(*args)


@pytest.mark.parametrize(
    "function, error, match",
    [case[1:] for case in STATIC_CASES],
    ids=[case[0] for case in STATIC_CASES],
)
def test_bad_static_input(function, error, match):
    with pytest.raises(error, match=match):
        function()


def test_errors_are_raised_while_tracing_not_running():
    """No error waits for run time: ``jax.eval_shape`` (abstract only) sees them all."""
    for _, function, args, error, match in TRACED_CASES:
        with pytest.raises(error, match=re.compile(match, re.MULTILINE)):
            jax.eval_shape(function, *args)


#: Inputs that were accepted silently or ended in a raw NumPy/JAX error (issue 13).
SILENT_BEFORE = [
    (
        "bias-string",
        dict(bias="False"),
        TypeError,
        r"^init_params: bias must be a bool; got 'False'$",
    ),
    ("bias-int", dict(bias=1), TypeError, r"^init_params: bias must be a bool; got 1$"),
    (
        "proj-size-negative",
        dict(proj_size=-1),
        ValueError,
        r"^init_params: proj_size must be in \[0, hidden_size=4\) .*; got -1$",
    ),
    (
        "proj-size-not-smaller",
        dict(proj_size=4),
        ValueError,
        r"^init_params: proj_size must be in \[0, hidden_size=4\) .*; got 4$",
    ),
    ("dtype-int", dict(dtype=jnp.int32), TypeError, r"^init_params: dtype must be a floating"),
    (
        "dropout-above-one",
        dict(num_layers=2, dropout=1.5),
        ValueError,
        r"^init_params: dropout must be a number in \[0, 1\); got 1.5$",
    ),
    ("negative-size", dict(hidden_size=-4), ValueError, r"^init_params: hidden_size must be a"),
]


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [case[1:] for case in SILENT_BEFORE],
    ids=[case[0] for case in SILENT_BEFORE],
)
def test_init_params_answers_every_bad_option(options, error, match):
    options = {"hidden_size": 4, **options}
    hidden_size = options.pop("hidden_size")
    with pytest.raises(error, match=match):
        jaxrnn.init_params(KEY, "lstm", 3, hidden_size, **options)


def test_numpy_integers_are_sizes():
    params = jaxrnn.init_params(KEY, "lstm", np.int64(3), np.int32(4), num_layers=np.int64(2))
    assert params.layers[0].w_h.shape == (4, 16)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: jaxrnn.init_params(0, "gru", 3, 4),
            TypeError,
            r"^init_params: key must be a single PRNG key \(jax.random.key\(seed\)\); got int$",
        ),
        (
            lambda: jaxrnn.init_carry(GRU, (-1,)),
            ValueError,
            r"^init_carry: batch_shape must be a tuple of ints >= 0; got \(-1,\)$",
        ),
        (
            lambda: jaxrnn.dropout(KEY, jnp.ones(3), -0.5),
            ValueError,
            r"^dropout: rate must be a number in \[0, 1\); got -0.5$",
        ),
        (
            lambda: jaxrnn.dropout(KEY, jnp.ones(3), 2.0),
            ValueError,
            r"^dropout: rate must be a number in \[0, 1\); got 2.0$",
        ),
    ],
    ids=["int-key", "negative-batch", "dropout-negative", "dropout-above-one"],
)
def test_more_bad_inputs_are_answered(call, error, match):
    with pytest.raises(error, match=match):
        call()
