"""Every class of bad input fails with a message naming the function, the argument, what
was expected and what came; checks on traced inputs fail at trace time, also under ``jit``.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop.torch import carry_from_torch

KEY = jax.random.key(0)
LSTM = jaxrnn.init_params(KEY, "lstm", 3, 4)
GRU = jaxrnn.init_params(KEY, "gru", 3, 4)
DEEP_GRU = jaxrnn.init_params(KEY, "gru", 3, 4, num_layers=2)
XS = jnp.ones((5, 2, 3))


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
