"""Mixed precision: bfloat16 compute stays close to float32; the carry keeps its dtype."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.cells import Cell
from jaxrnn.core.params import params_class
from jaxrnn.precision import MixedPrecision, cast_params, full_precision, mixed_precision

CELLS = ["rnn", "lstm", "gru"]
BF16 = jnp.dtype(jnp.bfloat16)


def _setup(cell, num_layers=2):
    kp, kx = jax.random.split(jax.random.key(0))
    params = jaxrnn.init_params(kp, cell, 3, 16, num_layers=num_layers)
    xs = jax.random.normal(kx, (12, 4, 3))
    return params, xs, jnp.array([12, 7, 1, 0])


def _eqns(jaxpr):
    """Every equation of a jaxpr, including those inside scan bodies and other sub-jaxprs."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _eqns(sub)


def test_bfloat16_compute_stays_close_to_float32():
    # One stack with a layer of every cell: two compilations cover all three cells.
    keys = jax.random.split(jax.random.key(1), 3)
    params = jaxrnn.stack(
        [
            jaxrnn.init_params(k, cell, 3 if i == 0 else 16, 16)
            for i, (k, cell) in enumerate(zip(keys, CELLS, strict=True))
        ]
    )
    _, xs, lengths = _setup("rnn")

    def loss(p):
        carry, ys = jaxrnn.unroll(p, None, xs, lengths=lengths)
        return jnp.mean(ys.astype(jnp.float32) ** 2), (carry, ys)

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    (loss32, (carry32, ys32)), grads32 = value_and_grad(params)
    (loss16, (carry16, ys16)), grads16 = value_and_grad(mixed_precision(params))
    assert ys16.dtype == BF16
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(carry16))
    np.testing.assert_allclose(ys16.astype(jnp.float32), ys32, atol=3e-2)
    for a, b in zip(jax.tree.leaves(carry16), jax.tree.leaves(carry32), strict=True):
        np.testing.assert_allclose(a, b, atol=3e-2)
    np.testing.assert_allclose(loss16, loss32, rtol=2e-2)
    # Gradients reach the float32 params in float32, with the params' structure.
    grads16 = full_precision(grads16)
    assert jax.tree.structure(grads16) == jax.tree.structure(grads32)
    flat16, flat32 = (
        jnp.concatenate([g.ravel() for g in jax.tree.leaves(t)]) for t in (grads16, grads32)
    )
    assert flat16.dtype == jnp.float32
    cosine = jnp.dot(flat16, flat32) / (jnp.linalg.norm(flat16) * jnp.linalg.norm(flat32))
    assert cosine > 0.99


@pytest.mark.parametrize("cell", CELLS)
def test_matmuls_run_in_the_compute_dtype(cell):
    params, xs, _ = _setup(cell, num_layers=1)
    jaxpr = jax.make_jaxpr(lambda p: jaxrnn.unroll(p, None, xs))(mixed_precision(params))
    dots = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "dot_general"]
    assert len(dots) >= 2  # input projection and recurrent matmul
    for eqn in dots:
        assert [v.aval.dtype for v in eqn.invars] == [BF16, BF16], eqn


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    ("param_dtype", "xs_dtype", "carry_dtype"),
    [
        (jnp.float32, jnp.bfloat16, jnp.float32),  # low-precision inputs
        (jnp.bfloat16, jnp.float32, jnp.bfloat16),  # an explicit carry decides
        (jnp.bfloat16, jnp.bfloat16, jnp.float32),  # bf16 params, f32 carry
    ],
)
def test_carry_dtype_never_changes_inside_scan(cell, param_dtype, xs_dtype, carry_dtype):
    params, xs, lengths = _setup(cell, num_layers=1)
    params, xs = cast_params(params, param_dtype), xs.astype(xs_dtype)
    carry = jax.tree.map(lambda x: x.astype(carry_dtype), jaxrnn.init_carry(params, (4,)))

    def run(carry):
        return jaxrnn.unroll(params, carry, xs, lengths=lengths)

    jaxpr = jax.make_jaxpr(run)(carry)
    scans = [e for e in _eqns(jaxpr.jaxpr) if e.primitive.name == "scan"]
    assert len(scans) == 1
    num_carry = scans[0].params["num_carry"]
    num_consts = scans[0].params["num_consts"]
    carry_in = scans[0].invars[num_consts : num_consts + num_carry]
    carry_out = scans[0].outvars[:num_carry]
    assert {v.aval.dtype for v in carry_in} == {jnp.dtype(carry_dtype)}
    assert {v.aval.dtype for v in carry_out} == {jnp.dtype(carry_dtype)}
    new_carry, _ = jax.eval_shape(run, carry)
    assert jax.tree.map(lambda x: x.dtype, new_carry) == jax.tree.map(lambda x: x.dtype, carry)


def test_lstm_cell_state_accumulates_in_float32():
    # f = sigmoid(20) ~ 1, i = sigmoid(0) = 1/2, g = tanh(1e-3): c grows by 5e-4 a step.
    # In bfloat16, c stops growing once 5e-4 is below half its spacing (c ~ 0.25); the
    # mixed policy keeps c in float32 and follows the float32 run.
    hidden, steps = 2, 1000
    bias = jnp.concatenate(
        [jnp.zeros(hidden), jnp.full(hidden, 20.0), jnp.full(hidden, 1e-3), jnp.full(hidden, 20.0)]
    )
    params = jaxrnn.LSTMParams(
        w_x=jnp.zeros((1, 4 * hidden)),
        w_h=jnp.zeros((hidden, 4 * hidden)),
        b_x=bias,
        b_h=jnp.zeros(4 * hidden),
    )
    xs = jnp.zeros((steps, 1))
    c32 = jaxrnn.unroll(params, None, xs)[0].c
    c_mixed = jaxrnn.unroll(mixed_precision(params), None, xs)[0].c
    c16 = jaxrnn.unroll(cast_params(params, jnp.bfloat16), None, xs.astype(BF16))[0].c
    np.testing.assert_allclose(c32, 0.5, rtol=1e-3)
    np.testing.assert_allclose(c_mixed, c32, rtol=1e-2)
    assert float(jnp.max(jnp.abs(c16.astype(jnp.float32) - c32))) > 0.1


def test_wrapping_keeps_structure_and_unwraps():
    params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4, num_layers=2, bidirectional=True)
    mixed = mixed_precision(params, jnp.float16)
    assert type(mixed) is jaxrnn.Stack
    assert isinstance(mixed.layers[1].backward, MixedPrecision)
    assert mixed.layers[1].backward.compute_dtype == jnp.float16
    assert mixed.output_size == params.output_size
    assert jax.tree.structure(full_precision(mixed)) == jax.tree.structure(params)
    rewrapped = mixed_precision(mixed, jnp.bfloat16)  # no double wrapping
    assert isinstance(rewrapped.layers[0].forward.cell, jaxrnn.GRUParams)
    assert cast_params(params, jnp.float16).layers[0].forward.w_x.dtype == jnp.float16


def test_wrapper_cells_keep_their_unrollers():
    # regularize's dropout lives in its own unroller: the cast must go inside, not around.
    cell = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 8)
    mixed = mixed_precision(jaxrnn.regularization.regularize(cell, recurrent_dropout=0.5))
    assert type(mixed) is jaxrnn.regularization.Regularized and isinstance(
        mixed.cell, MixedPrecision
    )
    assert full_precision(mixed) == jaxrnn.regularization.regularize(cell, recurrent_dropout=0.5)
    xs = jnp.ones((4, 2, 3))
    _, train = jaxrnn.unroll(mixed, None, xs, key=jax.random.key(1))
    _, evaluation = jaxrnn.unroll(mixed, None, xs)
    assert train.dtype == evaluation.dtype == BF16
    assert not jnp.allclose(train, evaluation)  # dropout ran


@params_class
class ComplexCell(Cell):
    """A cell whose recurrence needs float32 (lax.complex takes float32/float64 only)."""

    w: jax.Array  # shape=(input_size, hidden_size)

    input_shape = property(lambda self: (self.w.shape[0],))
    output_size = property(lambda self: self.w.shape[1])

    def initial_carry(self, batch_shape, dtype):
        return jnp.zeros((*batch_shape, self.w.shape[1]), dtype)

    def input_projection(self, x):
        return x @ self.w

    def recurrence(self, carry, projected):
        h = jnp.abs(jax.lax.complex(carry, projected))
        return h, h


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda p: mixed_precision(p, jnp.int8),
            "mixed_precision: compute_dtype must be a floating",
        ),
        (lambda p: mixed_precision({"w": 1}), "mixed_precision: params must be jaxrnn params"),
        (lambda p: cast_params(p, "nonsense"), "cast_params: dtype must be a floating dtype"),
        (
            lambda p: mixed_precision(jaxrnn.stack([p, ComplexCell(jnp.ones((4, 4)))])),
            "mixed_precision: params must have cells that can compute in bfloat16; got "
            "ComplexCell, which raised: complex does not accept dtype bfloat16",
        ),
    ],
)
def test_errors(call, match):
    params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
    with pytest.raises(TypeError, match=match):
        call(params)
