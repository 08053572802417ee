"""``unroll(method="fused")`` (``jaxrnn.core.hand_derivatives``) against its oracle,
``method="sequential"``.

Every kernel must give the reference's outputs, final carry and derivatives (reverse mode,
forward mode, second order) with lengths, reverse, stacks, bidirectional pairs and remat.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn.core import hand_derivatives as _fast
from jaxrnn.methods import MethodError
from tests.conftest import CELLS, CellSpec, padded, random_carry

FAST_CELLS = [spec for spec in CELLS if spec.options.get("proj_size", 0) == 0]
FAST_CELLS = [spec for spec in FAST_CELLS if spec.options.get("reset_after", True)]
SCENARIOS = {  # name -> (lengths or None, reverse)
    "plain": (None, False),
    "reverse": (None, True),
    "lengths": ([5, 2, 0], False),
    "lengths-reverse": ([5, 2, 0], True),
}
NUM_STEPS, INPUT_SIZE, HIDDEN_SIZE = 5, 3, 4


def _problem(spec: CellSpec, lengths):
    kp, kx, kc = jax.random.split(jax.random.key(0), 3)
    params = spec.init(kp, INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.float64)
    lengths = None if lengths is None else jnp.array(lengths)
    xs = padded(kx, NUM_STEPS, jnp.array([NUM_STEPS] * 3), INPUT_SIZE, dtype=jnp.float64)
    carry = random_carry(params, (3,), kc)
    return params, carry, xs, lengths


def _loss(method: str, lengths, reverse: bool, remat: bool = False):
    """A scalar of every output, with weights so that no gradient is trivially symmetric."""

    def loss(params, carry, xs):
        carry, ys = jaxrnn.unroll(
            params, carry, xs, lengths=lengths, reverse=reverse, remat=remat, method=method
        )
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        final = sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(carry))
        return jnp.sum(weights * ys) + final

    return loss


def _assert_trees_close(actual, expected, rtol=1e-9, atol=1e-10):
    jax.tree.map(
        lambda a, e: np.testing.assert_allclose(a, e, rtol=rtol, atol=atol), actual, expected
    )


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.id) for s in CELLS])
def test_fast_path_covers_the_builtin_cells(spec):
    params = spec.init(jax.random.key(0), INPUT_SIZE, HIDDEN_SIZE)
    expect_kernel = spec in FAST_CELLS
    assert (_fast.kernel_for(params) is not None) == expect_kernel


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.id) for s in CELLS])
def test_default_method_is_fused_for_small_lstm_and_gru_and_sequential_otherwise(spec):
    """``unroll``'s default (``"auto"``) gives bit for bit what the method it picks gives:
    at small states ``"fused"`` for an LSTM cell without projection or a GRU with
    ``reset_after``, ``"sequential"`` for every other cell."""
    params, carry, xs, _ = _problem(spec, None)
    params, carry, xs = jax.tree.map(lambda a: a.astype(jnp.float32), (params, carry, xs))
    fused_cell = spec.name in ("lstm", "gru") and spec in FAST_CELLS
    picked = "fused" if fused_cell else "sequential"
    assert _fast.prefers_fused(params, xs) == (picked == "fused")
    grad = jax.jit(jax.grad(_loss("auto", None, False), argnums=(0, 1, 2)))
    grad_picked = jax.jit(jax.grad(_loss(picked, None, False), argnums=(0, 1, 2)))
    default = jax.jit(lambda p, c, x: jaxrnn.unroll(p, c, x))(params, carry, xs)
    explicit = jax.jit(lambda p, c, x: jaxrnn.unroll(p, c, x, method=picked))(params, carry, xs)
    jax.tree.map(np.testing.assert_array_equal, default, explicit)
    jax.tree.map(
        np.testing.assert_array_equal, grad(params, carry, xs), grad_picked(params, carry, xs)
    )


@pytest.mark.parametrize("batch", [0, 1, 64])
def test_default_method_never_takes_the_fused_elman_rnn(batch):
    """An Elman RNN has a kernel but no size where ``auto`` prefers it, an empty batch too."""
    params = jaxrnn.init_params(jax.random.key(0), "rnn", 2, HIDDEN_SIZE)
    assert not _fast.prefers_fused(params, jnp.zeros((NUM_STEPS, batch, 2)))


@pytest.mark.parametrize("name, above", [("lstm", "fused"), ("gru", "sequential")])
def test_default_method_past_the_measured_state_size(name, above):
    """Past ``batch * hidden_size = FUSED_MAX_STATE`` the default runs the plain scan for a
    GRU and stays on the fused path for an LSTM (measured faster at every size)."""
    params = jaxrnn.init_params(jax.random.key(0), name, 2, HIDDEN_SIZE)
    batch = _fast.FUSED_MAX_STATE // HIDDEN_SIZE
    for size, picked in ((batch, "fused"), (batch + 1, above)):
        xs = jnp.cos(jnp.arange(2 * size * 2.0)).reshape(2, size, 2)
        assert _fast.prefers_fused(params, xs) == (picked == "fused")
        loss = _loss("auto", None, False)
        default = jax.jit(jax.value_and_grad(loss))(params, None, xs)
        explicit = jax.jit(jax.value_and_grad(_loss(picked, None, False)))(params, None, xs)
        jax.tree.map(np.testing.assert_array_equal, default, explicit)


def _value_cases():
    """Every cell with and without lengths+reverse; the other scenarios on LSTM and GRU."""
    for spec in FAST_CELLS:
        for scenario in SCENARIOS:
            if scenario in ("plain", "lengths-reverse") or spec.id in ("lstm", "gru"):
                yield pytest.param(spec, scenario, id=f"{spec.id}-{scenario}")


@pytest.mark.parametrize(("spec", "scenario"), list(_value_cases()))
def test_values_and_gradients_equal_reference(spec, scenario, x64):
    lengths, reverse = SCENARIOS[scenario]
    params, carry, xs, lengths = _problem(spec, lengths)

    def both(params, carry, xs):
        results = []
        for method in ("fused", "sequential"):
            run = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=reverse, method=method)
            grads = jax.grad(_loss(method, lengths, reverse), argnums=(0, 1, 2))(params, carry, xs)
            results.append((run, grads))
        return results

    fast, reference = jax.jit(both)(params, carry, xs)
    _assert_trees_close(fast, reference)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_forward_values_are_the_references_bits(name, optimized):
    """Without differentiation the fast path does the reference's arithmetic in its order
    (float32, the default): the default method and the runs that must take the plain scan
    (``remat=True``, ``with_carry_outputs``) give the same bits, compiled as users compile
    them (XLA's default optimization: the ``optimized`` fixture)."""
    params = jaxrnn.init_params(jax.random.key(0), name, 6, 16)
    xs = jax.random.normal(jax.random.key(1), (7, 5, 6))
    carry = random_carry(params, (5,), jax.random.key(2))
    lengths = jnp.array([7, 3, 0, 7, 1])

    @functools.partial(jax.jit, compiler_options=optimized)
    def runs(params, carry, xs):
        return {
            (method, reverse): jaxrnn.unroll(
                params, carry, xs, lengths=lengths, reverse=reverse, method=method
            )
            for method in ("fused", "sequential")
            for reverse in (False, True)
        }

    results = runs(params, carry, xs)
    for reverse in (False, True):
        jax.tree.map(
            np.testing.assert_array_equal,
            results["fused", reverse],
            results["sequential", reverse],
        )


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_forward_mode_and_second_order_equal_reference(name, x64):
    spec = CellSpec(name, {})
    lengths, reverse = SCENARIOS["lengths-reverse"]
    params, carry, xs, lengths = _problem(spec, lengths)
    tangents = jax.tree.map(lambda a: jnp.cos(3.0 * a), (params, carry, xs))

    def derivatives(method):
        loss = _loss(method, lengths, reverse)
        _, jvp = jax.jvp(loss, (params, carry, xs), tangents)
        # Hessian-vector product: forward-over-reverse, and reverse-over-reverse.
        hvp_fwd = jax.jvp(jax.grad(loss, argnums=(0, 1, 2)), (params, carry, xs), tangents)[1]
        if name != "lstm":
            return jvp, hvp_fwd
        hvp_rev = jax.grad(lambda *a: _dot(jax.grad(loss, argnums=(0, 1, 2))(*a), tangents))(
            params, carry, xs
        )
        return jvp, hvp_fwd, hvp_rev

    fast, reference = jax.jit(lambda: [derivatives(m) for m in ("fused", "sequential")])()
    _assert_trees_close(fast, reference)


def _dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_check_grads_of_the_fast_path(x64):
    params, carry, xs, lengths = _problem(CellSpec("gru", {}), [5, 2, 0])
    loss = jax.jit(_loss("fused", lengths, False))
    check_grads(loss, (params, carry, xs), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.id) for s in CELLS if s not in FAST_CELLS])
def test_cells_without_a_kernel_are_refused_by_name(spec):
    """One policy for every method: a cell the method cannot run raises MethodError
    (before the redesign "fused" fell back to the reference without a word)."""
    params, carry, xs, _ = _problem(spec, None)
    match = r"^unroll: params must be a cell with hand-written derivatives .* for method='fused'"
    with pytest.raises(MethodError, match=match + rf".*; got {type(params).__name__}$"):
        jaxrnn.unroll(params, carry, xs, method="fused")
    with pytest.raises(ValueError, match=r"^unroll: remat must be False with method='fused'"):
        jaxrnn.unroll(params, carry, xs, method="fused", remat=True)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["stack", "bidirectional"])
def test_composites_equal_reference(bidirectional, x64):
    kp, kx = jax.random.split(jax.random.key(1))
    params = jaxrnn.init_params(
        kp,
        "gru" if bidirectional else "lstm",
        INPUT_SIZE,
        HIDDEN_SIZE,
        num_layers=2,
        bidirectional=bidirectional,
        dtype=jnp.float64,
    )
    lengths = jnp.array([4, 1])
    xs = padded(kx, NUM_STEPS, lengths, INPUT_SIZE, dtype=jnp.float64)
    carry = jaxrnn.init_carry(params, (2,))

    def both(params, xs):
        return [
            jax.value_and_grad(_loss(method, lengths, False), argnums=(0, 2))(params, carry, xs)
            for method in ("fused", "sequential")
        ]

    fast, reference = jax.jit(both)(params, xs)
    _assert_trees_close(fast, reference)


@pytest.mark.parametrize("num_steps", [9, 11])  # a whole number of segments, and a remainder
@pytest.mark.parametrize("scenario", ["plain", "lengths-reverse"])
def test_segment_remat_equals_no_remat(num_steps, scenario, x64):
    lengths, reverse = SCENARIOS[scenario]
    kp, kx = jax.random.split(jax.random.key(2))
    params = jaxrnn.init_params(kp, "lstm", INPUT_SIZE, HIDDEN_SIZE, dtype=jnp.float64)
    xs = jax.random.normal(kx, (num_steps, 3, INPUT_SIZE), jnp.float64)
    lengths = None if lengths is None else jnp.array([num_steps, 2, 0])
    carry = random_carry(params, (3,), jax.random.key(3))

    def both(params, carry, xs):
        return [
            jax.value_and_grad(_loss("sequential", lengths, reverse, remat), argnums=(0, 1, 2))(
                params, carry, xs
            )
            for remat in (True, False)
        ]

    with_remat, without = jax.jit(both)(params, carry, xs)
    _assert_trees_close(with_remat, without)


def test_segment_remat_saves_one_carry_per_segment():
    """What the backward pass keeps: the carries entering the segments, not every step's."""
    num_steps, batch = 100, 2
    params = jaxrnn.init_params(jax.random.key(0), "lstm", INPUT_SIZE, HIDDEN_SIZE)
    xs = jnp.ones((num_steps, batch, INPUT_SIZE))

    def saved_floats(remat):
        def loss(params):
            return jnp.sum(jaxrnn.unroll(params, None, xs, remat=remat)[1])

        _, vjp = jax.vjp(loss, params)
        residuals = [leaf for leaf in jax.tree.leaves(vjp) if hasattr(leaf, "size")]
        return sum(leaf.size for leaf in residuals if leaf.size > xs.size)

    segments = num_steps // _fast.segment_length(num_steps)
    carry_floats = 2 * batch * HIDDEN_SIZE  # h and c
    assert saved_floats(True) <= segments * carry_floats
    assert saved_floats(False) >= num_steps * carry_floats


@pytest.mark.parametrize(("num_steps", "expected"), [(1, 1), (9, 3), (10, 4), (1_000_000, 1000)])
def test_segment_length(num_steps, expected):
    assert _fast.segment_length(num_steps) == expected


@pytest.mark.parametrize("batch_shape", [(), (2, 3)])
def test_batch_shapes_and_vmap(batch_shape):
    params = jaxrnn.init_params(jax.random.key(0), "gru", INPUT_SIZE, HIDDEN_SIZE)
    xs = jax.random.normal(jax.random.key(1), (NUM_STEPS, *batch_shape, INPUT_SIZE))
    unroll = jax.jit(jaxrnn.unroll, static_argnames="method")
    fast = unroll(params, None, xs, method="fused")
    reference = unroll(params, None, xs)
    _assert_trees_close(fast, reference, rtol=1e-5, atol=1e-6)
    # vmap over a leading batch dim of the time-major inputs gives the batched run.
    vmapped = jax.vmap(
        lambda x: jaxrnn.unroll(params, None, x, method="fused")[1], in_axes=1, out_axes=1
    )(xs.reshape(NUM_STEPS, -1, INPUT_SIZE))
    np.testing.assert_allclose(
        vmapped, fast[1].reshape(NUM_STEPS, -1, HIDDEN_SIZE), rtol=1e-5, atol=1e-6
    )


def test_mixed_dtypes_fall_back_to_reference(x64):
    params = jaxrnn.init_params(jax.random.key(0), "lstm", INPUT_SIZE, HIDDEN_SIZE)  # float32
    xs = jnp.ones((NUM_STEPS, 2, INPUT_SIZE), jnp.float64)
    carry = jaxrnn.init_carry(params, (2,))
    assert _fast.fast_unroll(params, carry, xs, None, False, 1) is None
    # "auto" (the default) falls back to the reference; "fused" says it cannot run them.
    default = jaxrnn.unroll(params, carry, xs)
    reference = jaxrnn.unroll(params, carry, xs, method="sequential")
    _assert_trees_close(default, reference)
    with pytest.raises(MethodError, match=r"share one floating dtype for method='fused'"):
        jaxrnn.unroll(params, carry, xs, method="fused")
