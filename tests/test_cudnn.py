"""``unroll(..., method="cudnn")`` and the cuDNN weight layout.

Everything but the cuDNN kernel runs on CPU: the weight packing is checked against
``jax.experimental.rnn.lstm_ref`` (JAX's plain-JAX oracle of the kernel, reading weights
with JAX's own ``unpack_lstm_weights``), and the dispatch (layouts, lengths, reverse,
merges, carries, gradients, fallbacks) runs with ``lstm_ref`` in place of the kernel and
is compared with ``method="sequential"``. The tests marked ``gpu`` run the real kernel;
they are skipped unless JAX's default backend is a GPU (``benchmarks/gpu_check.py`` runs
them and times the kernel).
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.experimental.rnn as jax_rnn
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import cudnn

KEY = jax.random.key(0)
I, H, T = 3, 4, 5  # input_size, hidden_size, time

on_gpu = pytest.mark.skipif(
    jax.default_backend() != "gpu", reason="needs a GPU backend (cuDNN kernel)"
)


def _lstm(key, input_size=I, hidden_size=H, **options):
    return jaxrnn.init_params(key, "lstm", input_size, hidden_size, **options)


def _bi(key, input_size=I, merge="concat"):
    kf, kb = jax.random.split(key)
    return jaxrnn.bidirectional(_lstm(kf, input_size), _lstm(kb, input_size), merge=merge)


#: name -> (params factory, kernel calls it takes, whether a cell falls back with a warning)
STRUCTURES = {
    "lstm": (lambda k: _lstm(k), 1, False),
    "lstm-no-bias": (lambda k: _lstm(k, bias=False), 1, False),
    "stack": (lambda k: _lstm(k, num_layers=2), 1, False),
    "bidirectional": (lambda k: _lstm(k, bidirectional=True), 1, False),
    "bidirectional-stack": (lambda k: _lstm(k, num_layers=2, bidirectional=True), 1, False),
    "sum-merge-on-top": (
        lambda k: jaxrnn.stack([_bi(k), _bi(jax.random.fold_in(k, 1), 2 * H, "mean")]),
        1,
        False,
    ),
    # Not one call: each part on its own.
    "two-hidden-sizes": (lambda k: jaxrnn.stack([_lstm(k), _lstm(k, H, H + 1)]), 2, False),
    "bidirectional-of-stacks": (
        lambda k: jaxrnn.bidirectional(_lstm(k, num_layers=2), _lstm(k, num_layers=2)),
        2,
        False,
    ),
    "gru-under-lstm": (
        lambda k: jaxrnn.stack([jaxrnn.init_params(k, "gru", I, H), _lstm(k, H)]),
        1,
        True,
    ),
    "projected-lstm": (lambda k: _lstm(k, proj_size=2), 0, True),
}

#: (batch_shape, lengths, reverse)
CASES = {
    "batch-lengths": ((3,), [5, 0, 2], False),
    "2d-batch-lengths-reverse": ((2, 2), [[5, 1], [0, 3]], True),
    "unbatched-reverse": ((), None, True),
}


def reference_lstm(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, num_layers,
                   dropout, bidirectional, precision):  # fmt: skip
    """``jax.experimental.rnn.lstm``'s signature, computed by ``lstm_ref``."""
    del precision
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    return jax_rnn.lstm_ref(x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size,
                            hidden_size, num_layers, dropout, bidirectional)  # fmt: skip


@pytest.fixture
def kernel_calls(monkeypatch):
    """Put ``lstm_ref`` in place of the cuDNN kernel; the list records each call's
    ``(num_layers, bidirectional)``."""
    calls = []

    def kernel(*args):
        calls.append((args[7], args[9]))
        return reference_lstm(*args)

    monkeypatch.setattr(cudnn, "_KERNEL", kernel)
    # The kernel is chosen when tracing: no jitted trace may cross the swap, either way.
    _run.clear_cache()
    yield calls
    _run.clear_cache()


def _inputs(params, case, random_state):
    batch_shape, lengths, reverse = CASES[case]
    kx, kc = jax.random.split(jax.random.fold_in(KEY, 7))
    xs = jax.random.normal(kx, (T, *batch_shape, I))
    carry = random_state(params, batch_shape, kc)
    lengths = None if lengths is None else jnp.asarray(lengths)
    return carry, xs, dict(lengths=lengths, reverse=reverse)


@functools.partial(jax.jit, static_argnames=("method", "reverse", "grads"))
def _run(params, carry, xs, method, lengths=None, reverse=False, key=None, grads=True):
    """Outputs, final carry and (with ``grads``) the gradients of a scalar of both w.r.t.
    params, carry and inputs. Jitted: one compilation is cheaper than eager scans."""

    def loss(params, carry, xs):
        new_carry, ys = jaxrnn.unroll(
            params, carry, xs, lengths=lengths, reverse=reverse, key=key, method=method
        )
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        carry_term = sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(new_carry))
        return jnp.sum(ys * weights) + carry_term, (new_carry, ys)

    if not grads:
        return loss(params, carry, xs)[1]
    (_, outputs), gradients = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, carry, xs
    )
    return outputs, gradients


def _assert_trees_close(actual, expected, atol):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=atol)


def _compare_with_sequential(params, carry, xs, atol, **options):
    cudnn_result = _run(params, carry, xs, "cudnn", **options)
    _assert_trees_close(cudnn_result, _run(params, carry, xs, "sequential", **options), atol)


# --------------------------------------------------------------------------------------
# The weight layout, against JAX's own oracle
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_layers, bidirectional", [(2, True)])
def test_weights_match_lstm_ref(num_layers, bidirectional, random_state):
    """unroll(sequential) == lstm_ref(to_cudnn_weights(params)) on batch-major inputs."""
    params = _lstm(KEY, num_layers=num_layers, bidirectional=bidirectional)
    lengths = jnp.array([5, 1, 3])  # lstm_ref takes lengths >= 1
    xs = jax.random.normal(jax.random.key(1), (T, 3, I))
    carry = random_state(params, (3,), jax.random.key(2))
    new_carry, ys = _run(params, carry, xs, "sequential", lengths=lengths, grads=False)

    leaves = jax.tree.leaves(carry)  # cuDNN order: layer by layer, forward before backward
    h_0, c_0 = jnp.stack(leaves[0::2]), jnp.stack(leaves[1::2])
    weights = jaxrnn.cudnn.to_cudnn_weights(params)
    ys_ref, h_n, c_n = reference_lstm(xs.swapaxes(0, 1), h_0, c_0, weights,
                                      lengths.astype(jnp.int32),
                                      I, H, num_layers, 0.0, bidirectional, None)  # fmt: skip
    np.testing.assert_allclose(ys, ys_ref.swapaxes(0, 1), atol=1e-5)
    final = jax.tree.leaves(new_carry)
    np.testing.assert_allclose(jnp.stack(final[0::2]), h_n, atol=1e-5)
    np.testing.assert_allclose(jnp.stack(final[1::2]), c_n, atol=1e-5)


@pytest.mark.parametrize("num_layers, bidirectional", [(1, False), (3, True)])
def test_weights_round_trip(num_layers, bidirectional):
    weights = jax_rnn.init_lstm_weight(KEY, I, H, num_layers, bidirectional)
    params = jaxrnn.cudnn.from_cudnn_weights(
        weights, input_size=I, hidden_size=H, num_layers=num_layers, bidirectional=bidirectional
    )
    assert isinstance(params, jaxrnn.Stack) and len(params.layers) == num_layers
    assert params.output_size == H * (2 if bidirectional else 1)
    np.testing.assert_array_equal(jaxrnn.cudnn.to_cudnn_weights(params), weights)
    again = jaxrnn.cudnn.from_cudnn_weights(
        jaxrnn.cudnn.to_cudnn_weights(params),
        input_size=I,
        hidden_size=H,
        num_layers=num_layers,
        bidirectional=bidirectional,
    )
    _assert_trees_close(again, params, atol=0)


def test_weights_without_bias_are_zero_biases():
    params = _lstm(KEY, bias=False)
    restored = jaxrnn.cudnn.from_cudnn_weights(
        jaxrnn.cudnn.to_cudnn_weights(params), input_size=I, hidden_size=H
    ).layers[0]
    np.testing.assert_array_equal(restored.w_x, params.w_x)
    np.testing.assert_array_equal(restored.w_h, params.w_h)
    assert not restored.b_x.any() and not restored.b_h.any()


# --------------------------------------------------------------------------------------
# The dispatch, with lstm_ref in place of the kernel
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "structure, case",
    [(name, "2d-batch-lengths-reverse") for name in STRUCTURES if name != "lstm-no-bias"]
    + [("bidirectional-stack", "unbatched-reverse")],
)
def test_dispatch_matches_sequential(structure, case, kernel_calls, random_state):
    """Outputs and final carry equal method="sequential"; whole composites take one call;
    cells that cuDNN cannot run warn and fall back."""
    make, calls, warns = STRUCTURES[structure]
    params = make(KEY)
    carry, xs, options = _inputs(params, case, random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run(params, carry, xs, "cudnn", grads=False, **options)
    sequential = _run(params, carry, xs, "sequential", grads=False, **options)
    _assert_trees_close(result, sequential, atol=2e-5)
    assert len(kernel_calls) == calls
    fallbacks = [w for w in caught if issubclass(w.category, jaxrnn.cudnn.CuDNNFallbackWarning)]
    assert bool(fallbacks) == warns


@pytest.mark.parametrize(
    "structure, case, call",
    [
        ("bidirectional-stack", "2d-batch-lengths-reverse", (2, True)),
        ("lstm-no-bias", "batch-lengths", (1, False)),
    ],
)
def test_gradients_match_sequential(structure, case, call, kernel_calls, random_state):
    """Gradients w.r.t. params, initial carry and inputs flow through the packing, the
    layouts, the flips and the restored carries of empty sequences."""
    params = STRUCTURES[structure][0](KEY)
    carry, xs, options = _inputs(params, case, random_state)
    _compare_with_sequential(params, carry, xs, atol=2e-5, **options)
    assert kernel_calls == [call]  # (num_layers, bidirectional): the whole stack at once


def test_dropout_between_layers_runs_layer_by_layer(kernel_calls):
    """cuDNN's dropout mask is not jaxrnn.dropout's: with a key the layers run one call
    each, with jaxrnn.dropout between them, exactly as the scan path."""
    params = jaxrnn.init_params(KEY, "lstm", I, H, num_layers=2, dropout=0.5)
    xs = jax.random.normal(KEY, (T, 2, I))
    key = jax.random.key(3)
    _compare_with_sequential(params, None, xs, atol=2e-5, key=key, grads=False)
    assert kernel_calls == [(1, False)] * 2
    kernel_calls.clear()
    jaxrnn.unroll(params, None, xs, method="cudnn")  # no key, no dropout: one call
    assert kernel_calls == [(2, False)]


def _fallback_reason(params, xs, **options):
    with pytest.warns(jaxrnn.cudnn.CuDNNFallbackWarning) as caught:
        result = jaxrnn.unroll(params, None, xs, method="cudnn", **options)
    # The fallback is lax.scan, as its message says: bit for bit method="sequential".
    reference = jaxrnn.unroll(params, None, xs, method="sequential", **options)
    _assert_trees_close(result, reference, atol=0)
    return str(caught[0].message)


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="checks the CPU fallback")
def test_without_gpu_falls_back_with_a_warning():
    message = _fallback_reason(_lstm(KEY), jnp.ones((T, 2, I)))
    assert message == (
        "unroll(method='cudnn'): LSTMParams runs with lax.scan (method='sequential'), "
        f"not cuDNN: no GPU (jax.default_backend() is {jax.default_backend()!r})"
    )


@pytest.mark.parametrize(
    "make, options, reason",
    [
        (lambda: _lstm(KEY, proj_size=2), {}, "proj_size=2"),
        (lambda: jaxrnn.init_params(KEY, "gru", I, H), {}, "GRUParams (the kernel is an LSTM)"),
        (lambda: _lstm(KEY), {"remat": True}, "remat=True"),
        (lambda: _lstm(KEY, dtype=jnp.bfloat16), {}, "dtype bfloat16"),
    ],
    ids=["proj_size", "gru", "remat", "bfloat16"],
)
def test_fallback_reasons(make, options, reason, kernel_calls):
    message = _fallback_reason(make(), jnp.ones((T, 2, I)), **options)
    assert f"not cuDNN: {reason}" in message
    assert kernel_calls == []


def test_bfloat16_matmul_precision_falls_back(kernel_calls):
    with jax.default_matmul_precision("bfloat16"):
        message = _fallback_reason(_lstm(KEY), jnp.ones((T, 2, I)))
    assert "jax_default_matmul_precision='bfloat16'" in message
    assert kernel_calls == []


def test_fallback_can_be_an_error():
    params = jaxrnn.init_params(KEY, "gru", I, H)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=jaxrnn.cudnn.CuDNNFallbackWarning)
        with pytest.raises(jaxrnn.cudnn.CuDNNFallbackWarning, match="GRUParams"):
            jaxrnn.unroll(params, None, jnp.ones((T, I)), method="cudnn")


def test_warning_points_at_the_caller():
    params = _lstm(KEY, num_layers=2, proj_size=2)
    with pytest.warns(jaxrnn.cudnn.CuDNNFallbackWarning) as caught:
        jaxrnn.unroll(params, None, jnp.ones((T, I)), method="cudnn")
    assert caught[0].filename == __file__


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, error, match",
    [
        (
            jaxrnn.init_params(KEY, "gru", I, H),
            ValueError,
            r"to_cudnn_weights: params must be LSTM cells, bidirectional pairs of them or a "
            r"stack of either, one hidden_size, no proj_size; got GRUParams \(the kernel",
        ),
        (
            jaxrnn.stack([_bi(KEY, merge="sum"), _bi(KEY, H)]),
            ValueError,
            "got merge='sum' below the top layer",
        ),
        (jaxrnn.stack([_lstm(KEY), _bi(KEY, H)]), ValueError, "got a stack that mixes"),
        (jaxrnn.stack([_lstm(KEY), _lstm(KEY, H, 2)]), ValueError, r"got hidden sizes \(4, 2\)"),
        ({"w_x": 1}, TypeError, "to_cudnn_weights: params must be jaxrnn params; got dict"),
    ],
    ids=["gru", "inner-merge", "mixed", "sizes", "not-params"],
)
def test_to_cudnn_weights_errors(params, error, match):
    with pytest.raises(error, match=match):
        jaxrnn.cudnn.to_cudnn_weights(params)


def test_from_cudnn_weights_errors():
    with pytest.raises(
        ValueError,
        match=r"from_cudnn_weights: weights must have shape \(144,\) for input_size=3, "
        r"hidden_size=4, num_layers=1, bidirectional=False; got \(10,\)",
    ):
        jaxrnn.cudnn.from_cudnn_weights(jnp.zeros(10), input_size=I, hidden_size=H)
    with pytest.raises(ValueError, match=r"must be positive ints; got \(3, 0, 1\)"):
        jaxrnn.cudnn.from_cudnn_weights(jnp.zeros(10), input_size=I, hidden_size=0)
    with pytest.raises(TypeError, match="weights must have a floating dtype; got int32"):
        jaxrnn.cudnn.from_cudnn_weights(jnp.zeros(144, jnp.int32), input_size=I, hidden_size=H)


# --------------------------------------------------------------------------------------
# The cuDNN kernel itself: only where JAX's default backend is a GPU
# --------------------------------------------------------------------------------------


@on_gpu
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_gpu_kernel_matches_sequential(structure, case, random_state):
    """Float32 matmuls on both paths (no TF32): equal to float32 rounding."""
    params = STRUCTURES[structure][0](KEY)
    carry, xs, options = _inputs(params, case, random_state)
    with jax.default_matmul_precision("highest"), warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxrnn.cudnn.CuDNNFallbackWarning)
        _compare_with_sequential(params, carry, xs, atol=1e-4, **options)


@on_gpu
def test_gpu_kernel_default_precision_is_close():
    """Unset precision lets cuDNN (and XLA) use TF32: close, not equal."""
    params = _lstm(KEY, num_layers=2, bidirectional=True)
    xs = jax.random.normal(KEY, (T, 4, I))
    _compare_with_sequential(params, None, xs, atol=2e-2, lengths=jnp.array([5, 3, 1, 0]))


@on_gpu
def test_gpu_kernel_is_used():
    params = _lstm(KEY, num_layers=2, bidirectional=True)
    xs = jnp.ones((T, 2, I))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=jaxrnn.cudnn.CuDNNFallbackWarning)
        jaxpr = jax.make_jaxpr(lambda p: jaxrnn.unroll(p, None, xs, method="cudnn"))(params)
    assert "rnn_fwd" in str(jaxpr)
    hlo = jax.jit(lambda p: jaxrnn.unroll(p, None, xs, method="cudnn")).lower(params).as_text()
    assert "dnn_rnn" in hlo  # the cuDNN (or MIOpen) custom call
