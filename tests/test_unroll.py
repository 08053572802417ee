"""``unroll``: gradients (``check_grads`` in float64) and invariants of lengths, reverse,
batching and transformations, on every cell and composite under test.

Most tests call ``unroll`` through one module-level ``jax.jit`` so that tests with the same
shapes share compilations (eager ``lax.scan`` recompiles its body on every call).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import jaxrnn

NUM_STEPS, BATCH, INPUT_SIZE, HIDDEN_SIZE = 5, 3, 2, 4

run = jax.jit(jaxrnn.unroll, static_argnames=("reverse", "unroll", "remat", "method"))

#: Few examples, no deadline (the first example compiles), fixtures reused across examples.
FEW = settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

lengths_strategy = st.lists(st.integers(0, NUM_STEPS), min_size=BATCH, max_size=BATCH).map(
    lambda ls: jnp.array(ls, jnp.int32)
)


def assert_trees_close(a, b, rtol=1e-6, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def loss_of_run(params, carry, xs, lengths, reverse=False, **options):
    """A non-linear scalar of outputs and final carry, so every cotangent is generic."""
    carry, ys = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=reverse, **options)
    return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(carry))


#: Params that cover every carry structure (array, ``LSTMState``, tuple per layer,
#: ``BidirectionalState``) and params type, for tests of things that do not depend on a
#: cell's equations (how ``lax.scan`` is configured, how transformations compose).
STRUCTURES = [
    ("rnn", {"activation": "relu", "bias": False}),
    ("lstm", {"proj_size": 3}),
    ("gru", {"bidirectional": True}),
    ("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
]
by_structure = pytest.mark.parametrize(
    "name, options", STRUCTURES, ids=["-".join([n, *map(str, o.values())]) for n, o in STRUCTURES]
)


def both_directions(params, carry, xs, lengths, **options):
    """A forward and a reversed run of the same inputs, as one function."""
    forward = jaxrnn.unroll(params, carry, xs, lengths=lengths, **options)
    backward = jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=True, **options)
    return forward, backward


def loss_of_both(params, carry, xs, lengths, **options):
    """A non-linear scalar of both runs' outputs and carries; the runs as auxiliary output."""
    runs = both_directions(params, carry, xs, lengths, **options)
    leaves = jax.tree.leaves(runs)
    return sum(jnp.sum(jnp.sin(leaf)) for leaf in leaves), runs


#: Shared by tests so that one compilation per params structure serves them all.
value_and_grad_of_run = jax.jit(jax.value_and_grad(loss_of_run), static_argnames="reverse")


@jax.jit
def _outputs_and_grads(params, carry, xs, lengths):
    """Outputs of a forward and a reversed run, and gradients w.r.t. params, carry, xs."""
    grads, runs = jax.grad(loss_of_both, argnums=(0, 1, 2), has_aux=True)(
        params, carry, xs, lengths
    )
    return runs, grads


# --- gradients -------------------------------------------------------------------------


def test_check_grads_float64(any_cell, x64, padded_batch, random_state):
    """Reversed runs with lengths (forward runs: the bidirectional test below)."""
    kp, kc, kx = jax.random.split(jax.random.key(0), 3)
    # hidden_size 4 > the registry's proj_size=3, which PyTorch (and now jaxrnn) require
    params = any_cell.init(kp, INPUT_SIZE, 4, dtype=jnp.float64)
    lengths = jnp.array([4, 0, 2])
    xs = padded_batch(kx, 4, lengths, INPUT_SIZE, dtype=jnp.float64)
    carry = random_state(params, lengths.shape, kc)
    assert xs.dtype == jnp.float64

    @jax.jit
    def f(params, carry, xs):
        return jaxrnn.unroll(params, carry, xs, lengths=lengths, reverse=True)

    check_grads(f, (params, carry, xs), order=1, modes=("fwd", "rev"))


def test_check_grads_float64_bidirectional_with_remat(x64, padded_batch):
    params = jaxrnn.init_params(
        jax.random.key(1), "lstm", INPUT_SIZE, 3, bidirectional=True, dtype=jnp.float64
    )
    lengths = jnp.array([3, 1])
    xs = padded_batch(jax.random.key(2), 3, lengths, INPUT_SIZE, dtype=jnp.float64)

    @jax.jit
    def f(params, xs):
        return jaxrnn.unroll(params, None, xs, lengths=lengths, remat=True)

    check_grads(f, (params, xs), order=1, modes=("fwd", "rev"))


# --- lengths and padding ---------------------------------------------------------------


@FEW
@given(lengths=lengths_strategy, fill=st.sampled_from([math.nan, math.inf, -math.inf, 1e30]))
def test_padding_values_change_neither_outputs_nor_gradients(
    model, padded_batch, random_state, lengths, fill
):
    params = model.init(jax.random.key(3), INPUT_SIZE, HIDDEN_SIZE)
    carry = random_state(params, (BATCH,), jax.random.key(4))
    clean = padded_batch(jax.random.key(5), NUM_STEPS, lengths, INPUT_SIZE)
    dirty = padded_batch(jax.random.key(5), NUM_STEPS, lengths, INPUT_SIZE, fill=fill)
    assert not np.array_equal(clean, dirty) or bool(jnp.all(lengths == NUM_STEPS))
    with_clean = _outputs_and_grads(params, carry, clean, lengths)
    with_dirty = _outputs_and_grads(params, carry, dirty, lengths)
    assert_trees_equal(with_clean, with_dirty)
    grad_xs = with_dirty[1][2]
    steps = jnp.arange(NUM_STEPS)[:, None]
    assert not jnp.any(jnp.where((steps >= lengths)[..., None], grad_xs, 0.0))


def flip_valid_prefixes(a, lengths):
    """``a[:L, b][::-1]`` for each sequence ``b`` of length ``L``; padding stays in place."""
    a = np.array(a)
    for b, length in enumerate(np.asarray(lengths)):
        a[:length, b] = a[:length, b][::-1].copy()
    return a


@FEW
@given(lengths=lengths_strategy)
def test_reverse_equals_flipping_each_valid_prefix(model, padded_batch, random_state, lengths):
    params = model.init(jax.random.key(6), INPUT_SIZE, HIDDEN_SIZE)
    carry = random_state(params, (BATCH,), jax.random.key(7))
    xs = padded_batch(jax.random.key(8), NUM_STEPS, lengths, INPUT_SIZE)
    carry_r, ys_r = run(params, carry, xs, lengths=lengths, reverse=True)
    flipped = jnp.asarray(flip_valid_prefixes(xs, lengths))
    carry_f, ys_f = run(params, carry, flipped, lengths=lengths)
    assert_trees_close(carry_r, carry_f)
    np.testing.assert_allclose(ys_r, flip_valid_prefixes(ys_f, lengths), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_zero_length_gives_initial_carry_and_zero_outputs(model, random_state, reverse):
    params = model.init(jax.random.key(9), INPUT_SIZE, HIDDEN_SIZE)
    carry = random_state(params, (BATCH,), jax.random.key(10))
    xs = jax.random.normal(jax.random.key(11), (NUM_STEPS, BATCH, INPUT_SIZE))
    new_carry, ys = run(params, carry, xs, lengths=jnp.zeros(BATCH, int), reverse=reverse)
    assert_trees_equal(new_carry, carry)
    assert ys.shape == (NUM_STEPS, BATCH, params.output_size)
    assert not jnp.any(ys)


def test_lengths_are_clipped_to_the_number_of_steps(model, random_state):
    params = model.init(jax.random.key(12), INPUT_SIZE, HIDDEN_SIZE)
    carry = random_state(params, (BATCH,), jax.random.key(10))
    xs = jax.random.normal(jax.random.key(13), (NUM_STEPS, BATCH, INPUT_SIZE))
    for reverse in (False, True):
        clipped = run(params, carry, xs, lengths=jnp.array([-3, NUM_STEPS + 4, 2]), reverse=reverse)
        in_range = run(params, carry, xs, lengths=jnp.array([0, NUM_STEPS, 2]), reverse=reverse)
        assert_trees_equal(clipped, in_range)


@by_structure
def test_full_lengths_equal_no_lengths(name, options, random_state):
    params = jaxrnn.init_params(jax.random.key(14), name, INPUT_SIZE, HIDDEN_SIZE, **options)
    carry = random_state(params, (BATCH,), jax.random.key(10))
    xs = jax.random.normal(jax.random.key(15), (NUM_STEPS, BATCH, INPUT_SIZE))
    full = jnp.full((BATCH,), NUM_STEPS)
    for reverse in (False, True):
        assert_trees_close(
            run(params, carry, xs, lengths=full, reverse=reverse),
            run(params, carry, xs, reverse=reverse),
        )


# --- batching and transformations ------------------------------------------------------


def test_vmap_in_axes_1_of_per_example_unroll_equals_batched_call(
    model, padded_batch, random_state
):
    params = model.init(jax.random.key(16), INPUT_SIZE, HIDDEN_SIZE)
    lengths = jnp.array([NUM_STEPS, 0, 2])
    xs = padded_batch(jax.random.key(17), NUM_STEPS, lengths, INPUT_SIZE)
    carry = random_state(params, (BATCH,), jax.random.key(18))

    def one(carry, x, length):  # x: (time, input_size), length: a scalar
        return jaxrnn.unroll(params, carry, x, lengths=length, reverse=True)

    batched = run(params, carry, xs, lengths=lengths, reverse=True)
    time_major = jax.vmap(one, in_axes=(0, 1, 0), out_axes=(0, 1))(carry, xs, lengths)
    assert_trees_close(time_major, batched)


@pytest.mark.parametrize("name, options", STRUCTURES[1:], ids=["lstm", "gru-bi", "lstm-bi-stack"])
def test_multiple_batch_dims_and_vmap_over_them(name, options, padded_batch):
    """Batch dims ``(time, b1, b2, features)`` act as one flat batch; ``vmap`` over ``b1``
    (``in_axes=1`` of time-major data) and over batch-major data agree with both."""
    params = jaxrnn.init_params(jax.random.key(21), name, INPUT_SIZE, HIDDEN_SIZE, **options)
    lengths = jnp.array([[5, 1, 3], [0, 2, 4]])
    xs = padded_batch(jax.random.key(22), NUM_STEPS, lengths, INPUT_SIZE)
    carry, ys = run(params, None, xs, lengths=lengths, reverse=True)
    flat_carry, flat_ys = run(
        params, None, xs.reshape(NUM_STEPS, 6, INPUT_SIZE), lengths=lengths.reshape(6),
        reverse=True,
    )  # fmt: skip
    assert ys.shape == (NUM_STEPS, 2, 3, params.output_size)
    np.testing.assert_allclose(ys.reshape(NUM_STEPS, 6, -1), flat_ys, rtol=1e-6, atol=1e-6)
    assert_trees_close(jax.tree.map(lambda a: a.reshape(6, -1), carry), flat_carry)

    def group(x, length):  # x: (time, b2, input_size), length: (b2,)
        return jaxrnn.unroll(params, None, x, lengths=length, reverse=True)

    by_group = jax.vmap(group, in_axes=(1, 0), out_axes=(0, 1))(xs, lengths)
    assert_trees_close(by_group, (carry, ys))

    def one(x, length):  # x: (time, input_size), length: a scalar
        return jaxrnn.unroll(params, None, x, lengths=length, reverse=True)

    batch_major = jnp.moveaxis(xs.reshape(NUM_STEPS, 6, INPUT_SIZE), 0, 1)
    one_carry, one_ys = jax.vmap(one)(batch_major, lengths.reshape(6))
    assert_trees_close((one_carry, jnp.moveaxis(one_ys, 1, 0)), (flat_carry, flat_ys))


@by_structure
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_batch_major_equals_time_major_moved(name, options, padded_batch, reverse):
    """``time_major=False`` reads ``(b1, b2, time, features)`` and returns ``ys`` the same
    way; values, carries and gradients are those of the time-major call on moved axes."""
    params = jaxrnn.init_params(jax.random.key(24), name, INPUT_SIZE, HIDDEN_SIZE, **options)
    lengths = jnp.array([[5, 1, 3], [0, 2, 4]])
    xs = padded_batch(jax.random.key(25), NUM_STEPS, lengths, INPUT_SIZE)
    xs_bm = jnp.moveaxis(xs, 0, 2)

    def loss(params, xs, time_major):
        carry, ys = jaxrnn.unroll(
            params, None, xs, lengths=lengths, reverse=reverse, time_major=time_major
        )
        time_axis = 0 if time_major else 2
        weights = jnp.arange(NUM_STEPS, dtype=ys.dtype).reshape(
            (NUM_STEPS,) + (1,) * (ys.ndim - 1 - time_axis)
        )
        return jnp.sum(jnp.sin(ys) * weights), (carry, ys)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    (g_params, g_xs), (carry, ys) = grad(params, xs, True)
    (g_params_bm, g_xs_bm), (carry_bm, ys_bm) = grad(params, xs_bm, False)
    assert ys_bm.shape == (2, 3, NUM_STEPS, params.output_size)
    np.testing.assert_allclose(ys_bm, jnp.moveaxis(ys, 0, 2), rtol=1e-6, atol=1e-6)
    assert_trees_close(carry_bm, carry)
    assert_trees_close(g_params_bm, g_params)
    np.testing.assert_allclose(g_xs_bm, jnp.moveaxis(g_xs, 0, 2), rtol=1e-6, atol=1e-6)


def test_batch_major_without_batch_dims_is_time_major(padded_batch):
    """A single sequence ``(time, features)`` is the same in both layouts."""
    params = jaxrnn.init_params(jax.random.key(26), "gru", INPUT_SIZE, HIDDEN_SIZE)
    xs = jax.random.normal(jax.random.key(27), (NUM_STEPS, INPUT_SIZE))
    assert_trees_equal(
        jaxrnn.unroll(params, None, xs, time_major=False), jaxrnn.unroll(params, None, xs)
    )


def test_jit_equals_eager(any_cell, padded_batch):
    params = any_cell.init(jax.random.key(23), INPUT_SIZE, HIDDEN_SIZE)
    lengths = jnp.array([NUM_STEPS, 0, 2])
    xs = padded_batch(jax.random.key(24), NUM_STEPS, lengths, INPUT_SIZE)
    eager = jaxrnn.unroll(params, None, xs, lengths=lengths, reverse=True)
    assert_trees_close(run(params, None, xs, lengths=lengths, reverse=True), eager)


@by_structure
def test_jit_vmap_grad_composes(name, options, padded_batch):
    params = jaxrnn.init_params(jax.random.key(25), name, INPUT_SIZE, HIDDEN_SIZE, **options)
    lengths = jnp.array([NUM_STEPS, 0, 2])
    xs = padded_batch(jax.random.key(26), NUM_STEPS, lengths, INPUT_SIZE)

    def loss(params, x, length):
        return loss_of_run(params, None, x, length, reverse=True)

    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 1, 0)))(params, xs, lengths)
    _, total = value_and_grad_of_run(params, None, xs, lengths, reverse=True)
    assert type(per_example) is type(params)
    for leaf, param in zip(jax.tree.leaves(per_example), jax.tree.leaves(params), strict=True):
        assert leaf.shape == (BATCH, *param.shape)
    assert_trees_close(jax.tree.map(lambda g: g.sum(0), per_example), total, rtol=1e-5, atol=1e-5)


def _value_and_grads_per_scan_options(params, xs, lengths, option_sets):
    """``value_and_grad`` of a reversed run with ``lengths`` (w.r.t. params and xs), once
    per dict of scan options, all in one jitted program."""

    @jax.jit
    def run(params, xs):
        return [
            jax.value_and_grad(loss_of_run, argnums=(0, 2))(
                params, None, xs, lengths, reverse=True, **options
            )
            for options in option_sets
        ]

    return run(params, xs)


def test_remat_and_scan_unroll_give_same_values_and_gradients(padded_batch):
    """On bidirectional LSTMs with projection (the options pass through composites)."""
    params = jaxrnn.init_params(
        jax.random.key(27), "lstm", INPUT_SIZE, HIDDEN_SIZE, bidirectional=True, proj_size=2
    )
    lengths = jnp.array([NUM_STEPS, 0, 2])
    xs = padded_batch(jax.random.key(28), NUM_STEPS, lengths, INPUT_SIZE)
    plain, remat, unrolled = _value_and_grads_per_scan_options(
        params, xs, lengths, ({}, {"remat": True}, {"unroll": 2})
    )
    assert_trees_close(remat, plain, rtol=1e-5, atol=1e-6)
    assert_trees_close(unrolled, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["rglru", "conv1d", "slstm", "mlstm"])
def test_remat_equals_plain_for_the_modern_cells_in_a_bidirectional_stack(name, padded_batch):
    """The cells of Griffin/Hawk and xLSTM in 2 bidirectional layers, reversed, with lengths:
    ``remat`` recomputes the same values and gradients.

    4 steps make 2 segments of 2 and no remainder: the remainder's extra segment, which does
    not depend on the cell, is covered on LSTMs above, and it made these programs take
    1.6x as long to compile (the mLSTM's: 15.5 s against 9.5 s)."""
    num_steps = 4
    params = jaxrnn.init_params(
        jax.random.key(29), name, INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True
    )
    lengths = jnp.array([num_steps, 0, 2])
    xs = padded_batch(jax.random.key(30), num_steps, lengths, INPUT_SIZE)
    plain, remat = _value_and_grads_per_scan_options(params, xs, lengths, ({}, {"remat": True}))
    assert_trees_close(remat, plain, rtol=1e-5, atol=1e-6)


# --- params as pytrees -----------------------------------------------------------------


@by_structure
def test_grads_have_the_params_type_and_optax_updates_them(name, options, padded_batch):
    params = jaxrnn.init_params(jax.random.key(29), name, INPUT_SIZE, HIDDEN_SIZE, **options)
    lengths = jnp.array([NUM_STEPS, 1, 2])
    xs = padded_batch(jax.random.key(30), NUM_STEPS, lengths, INPUT_SIZE)
    loss, grads = value_and_grad_of_run(params, None, xs, lengths, reverse=True)
    assert type(grads) is type(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)

    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)
    updates, state = optimizer.update(grads, state, params)
    new_params = optax.apply_updates(params, updates)
    assert type(new_params) is type(params)
    assert jax.tree.structure(new_params) == jax.tree.structure(params)
    for old, new in zip(jax.tree.leaves(params), jax.tree.leaves(new_params), strict=True):
        assert new.dtype == old.dtype
        assert not np.array_equal(new, old)
    assert value_and_grad_of_run(new_params, None, xs, lengths, reverse=True)[0] < loss


def test_print_shows_shapes_not_values(model):
    params = model.init(jax.random.key(31), INPUT_SIZE, HIDDEN_SIZE)
    params = jax.tree.map(lambda leaf: jnp.full_like(leaf, 0.123456), params)  # a known value
    text = repr(params)
    assert text.startswith(type(params).__name__ + "(")
    for leaf in jax.tree.leaves(params):
        assert f"{leaf.dtype}[{','.join(map(str, leaf.shape))}]" in text
    assert "Array(" not in text and "0.123" not in text
    assert str(params) == text
