"""Flax interop: Flax's own cells as the oracle for from_flax/to_flax; the module wrappers."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxrnn
from jaxrnn.interop.flax import (
    RNN,
    LinenRNN,
    carry_from_flax,
    carry_to_flax,
    from_flax,
    to_flax,
)

INPUT_SIZE, HIDDEN_SIZE = 3, 4

FLAX_CELLS = {
    "linen.LSTMCell": nn.LSTMCell,
    "linen.OptimizedLSTMCell": nn.OptimizedLSTMCell,
    "linen.GRUCell": nn.GRUCell,
    "nnx.LSTMCell": nnx.LSTMCell,
    "nnx.OptimizedLSTMCell": nnx.OptimizedLSTMCell,
    "nnx.GRUCell": nnx.GRUCell,
}


def _noisy(tree, key):
    """Every leaf plus noise, so zero-initialized biases are tested too."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + 0.3 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def _inputs(is_lstm):
    kx, kh, kc = jax.random.split(jax.random.key(1), 3)
    x = jax.random.normal(kx, (2, INPUT_SIZE))
    h = jax.random.normal(kh, (2, HIDDEN_SIZE))
    carry = (jax.random.normal(kc, (2, HIDDEN_SIZE)), h) if is_lstm else h
    return carry, x


class FlaxCell:
    """One interface over linen and nnx cells: ``params`` (pure dict) and ``step``."""

    def __init__(self, name, params=None):
        api = name.split(".")[0]
        cls = FLAX_CELLS[name]
        self.is_lstm = "LSTM" in name
        carry, x = _inputs(self.is_lstm)
        if api == "linen":
            self.cell = cls(features=HIDDEN_SIZE)
            init = self.cell.init(jax.random.key(0), carry, x)["params"]
            self.params = _noisy(init, jax.random.key(2)) if params is None else params
            self.step = lambda c, x: self.cell.apply({"params": self.params}, c, x)
        else:
            self.cell = cls(INPUT_SIZE, HIDDEN_SIZE, rngs=nnx.Rngs(0))
            init = nnx.to_pure_dict(nnx.state(self.cell, nnx.Param))
            nnx.update(self.cell, _noisy(init, jax.random.key(2)) if params is None else params)
            self.params = nnx.to_pure_dict(nnx.state(self.cell, nnx.Param))
            self.step = self.cell


def _assert_close(a, b, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol)


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_from_flax_computes_what_flax_computes(name):
    flax_cell = FlaxCell(name)
    params = from_flax(flax_cell.params)
    assert isinstance(params, jaxrnn.LSTMParams if flax_cell.is_lstm else jaxrnn.GRUParams)
    carry, x = _inputs(flax_cell.is_lstm)
    flax_carry, flax_y = flax_cell.step(carry, x)
    jax_carry, jax_y = jaxrnn.cell_step(params, carry_from_flax(carry), x)
    np.testing.assert_allclose(jax_y, flax_y, atol=1e-6)
    _assert_close(carry_to_flax(jax_carry), flax_carry)
    # The round trip gives back Flax's params (the zero second bias adds nothing).
    _assert_close(to_flax(params, FLAX_CELLS[name]), flax_cell.params, atol=0)


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_to_flax_computes_what_jaxrnn_computes(name):
    cell = "lstm" if "LSTM" in name else "gru"
    params = _noisy(
        jaxrnn.init_params(jax.random.key(3), cell, INPUT_SIZE, HIDDEN_SIZE), jax.random.key(4)
    )
    if name == "nnx.GRUCell":  # no b_hn in nnx's GRU: only params without it convert
        params = params.__class__(**{**vars(params), "b_h": params.b_h.at[8:].set(0.0)})
    flax_cell = FlaxCell(name, to_flax(params, FLAX_CELLS[name]))
    carry, x = _inputs(flax_cell.is_lstm)
    flax_carry, flax_y = flax_cell.step(carry, x)
    jax_carry, jax_y = jaxrnn.cell_step(params, carry_from_flax(carry), x)
    np.testing.assert_allclose(flax_y, jax_y, atol=1e-5)
    _assert_close(flax_carry, carry_to_flax(jax_carry), atol=1e-5)


def test_nnx_module_is_accepted_and_checked():
    cell = nnx.LSTMCell(INPUT_SIZE, HIDDEN_SIZE, rngs=nnx.Rngs(0))
    _assert_close(from_flax(cell), from_flax(nnx.state(cell, nnx.Param)), atol=0)
    relu_cell = nnx.GRUCell(INPUT_SIZE, HIDDEN_SIZE, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="from_flax: variables must use gate_fn=sigmoid"):
        from_flax(relu_cell)


def _gru(**changes):
    params = jaxrnn.init_params(jax.random.key(0), "gru", INPUT_SIZE, HIDDEN_SIZE)
    return params.__class__(**{**vars(params), **changes})


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: to_flax(
                jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4, proj_size=2), nn.LSTMCell
            ),
            ValueError,
            "to_flax: params must be an LSTM without projection",
        ),
        (
            lambda: to_flax(_gru(reset_after=False), nn.GRUCell),
            ValueError,
            "must be a GRU with reset_after=True",
        ),
        (
            lambda: to_flax(_gru(b_h=jnp.ones(12)), nnx.GRUCell),
            ValueError,
            r"have zero b_h\[2\*hidden:\] .* use flax.linen.GRUCell; got nonzero values",
        ),
        (
            lambda: to_flax(_gru(), nn.LSTMCell),
            TypeError,
            "to_flax: params must be LSTMParams for a Flax LSTMCell; got GRUParams",
        ),
        (lambda: to_flax(_gru(), nn.Dense), TypeError, "to_flax: cell must be one of"),
        (
            lambda: from_flax({"kernel": jnp.ones((3, 4))}),
            ValueError,
            "from_flax: variables must have the params of a Flax LSTMCell.*; got keys kernel",
        ),
        (lambda: from_flax([1]), TypeError, "from_flax: variables must be a Flax cell's"),
        (
            lambda: carry_from_flax(jaxrnn.LSTMState(jnp.ones(2), jnp.ones(2))),
            TypeError,
            "carry_from_flax: carry must be a Flax carry",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_nnx_rnn_trains_with_nnx_optimizer():
    rngs = nnx.Rngs(0)
    params = jaxrnn.init_params(
        rngs.params(), "lstm", INPUT_SIZE, HIDDEN_SIZE, num_layers=2, dropout=0.5
    )
    layer = RNN(params)
    xs = jax.random.normal(jax.random.key(5), (6, 2, INPUT_SIZE))
    lengths, key = jnp.array([6, 3]), jax.random.key(7)
    expected = jaxrnn.unroll(params, None, xs, lengths=lengths, reverse=True, key=key)
    _assert_close(layer(None, xs, lengths=lengths, reverse=True, key=key), expected, atol=0)
    carry_bm, ys_bm = layer(
        None, jnp.swapaxes(xs, 0, 1), lengths=lengths, reverse=True, key=key, time_major=False
    )
    _assert_close((carry_bm, jnp.swapaxes(ys_bm, 0, 1)), expected, atol=1e-6)
    _assert_close(layer.jaxrnn_params, params, atol=0)
    optimizer = nnx.Optimizer(layer, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(layer, optimizer):
        def loss_fn(layer):
            return jnp.mean((layer(None, xs, lengths=lengths)[1] - 1.0) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(layer)
        optimizer.update(layer, grads)
        return loss

    losses = [float(train_step(layer, optimizer)) for _ in range(3)]
    assert losses[-1] < losses[0]
    assert type(layer.jaxrnn_params) is jaxrnn.Stack


def test_linen_rnn_matches_unroll_and_differentiates():
    layer = LinenRNN("gru", HIDDEN_SIZE, bidirectional=True, cell_options={"reset_after": False})
    xs = jax.random.normal(jax.random.key(5), (6, 2, INPUT_SIZE))
    lengths = jnp.array([6, 3])
    variables = layer.init(jax.random.key(0), None, xs)
    params = variables["params"]["rnn"]
    assert type(params) is jaxrnn.Bidirectional and params.forward.reset_after is False
    expected = jaxrnn.unroll(params, None, xs, lengths=lengths)
    _assert_close(layer.apply(variables, None, xs, lengths=lengths), expected, atol=0)
    batch_major = layer.apply(
        variables, None, jnp.swapaxes(xs, 0, 1), lengths=lengths, time_major=False
    )
    _assert_close((batch_major[0], jnp.swapaxes(batch_major[1], 0, 1)), expected, atol=1e-6)
    grads = jax.grad(lambda v: jnp.sum(layer.apply(v, None, xs)[1] ** 2))(variables)
    assert type(grads["params"]["rnn"]) is jaxrnn.Bidirectional
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_flax_wrappers_pass_the_method_options_through():
    """``RNN`` and ``LinenRNN`` take ``unroll``'s ``method``, ``unroll`` and ``remat``."""
    from jaxrnn.interop.flax import RNN, LinenRNN
    from jaxrnn.methods import MethodError, Sequential

    params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
    xs = jnp.ones((5, 2, 3))
    expected = jaxrnn.unroll(params, None, xs)[1]
    module = RNN(params)
    got = module(None, xs, method=Sequential(unroll=2, remat=True))[1]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(module(None, xs, unroll=5, remat=True)[1], expected, rtol=1e-6)
    with pytest.raises(MethodError, match="for method='parallel'"):
        module(None, xs, method="parallel")
    layer = LinenRNN("gru", hidden_size=4)
    variables = layer.init(jax.random.key(1), None, xs)
    with pytest.raises(MethodError, match="for method='parallel'"):
        LinenRNN("gru", hidden_size=4, unroll_method="parallel").apply(variables, None, xs)
    plain = layer.apply(variables, None, xs)[1]
    tuned = LinenRNN("gru", hidden_size=4, unroll=2, remat=True).apply(variables, None, xs)[1]
    np.testing.assert_allclose(tuned, plain, rtol=1e-6)
