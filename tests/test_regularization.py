"""``regularize`` (variational dropout, zoneout), ``learned_init`` and ``with_carry_outputs``.

Training runs are checked against a plain loop of ``cell_step`` over each sequence's valid
steps that applies the masks ``draw_masks`` sampled, so the wiring of every mask is
checked; the masks themselves are checked for being the same at every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.regularization import draw_masks

IN, HID = 3, 4
LENGTHS = np.array([4, 0, 2])
ALL_RATES = {
    "input_dropout": 0.3,
    "output_dropout": 0.4,
    "recurrent_dropout": 0.5,
    "zoneout_h": 0.3,
    "zoneout_c": 0.2,
}


def assert_close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def assert_dropout_mask(mask, rate):
    """Inverted dropout: each entry 0 or 1 / (1 - rate), both present."""
    dropped, kept = np.isclose(mask, 0.0), np.isclose(mask, 1.0 / (1.0 - rate), rtol=1e-5)
    assert np.all(dropped | kept) and np.any(dropped) and np.any(kept)


def cell_and_xs(name, seed=0, num_steps=4, batch=3):
    kp, kx = jax.random.split(jax.random.key(seed))
    cell = jaxrnn.init_params(kp, name, IN, HID, bias_init=jax.nn.initializers.normal(0.5))
    return cell, jax.random.normal(kx, (num_steps, batch, IN))


unroll = jax.jit(jaxrnn.unroll, static_argnames=("reverse",))


def hidden(carry):
    return carry.h if isinstance(carry, jaxrnn.LSTMState) else carry


def with_hidden(carry, h):
    return carry._replace(h=h) if isinstance(carry, jaxrnn.LSTMState) else h


def reference_loop(reg, carry, xs, lengths, reverse, masks, evaluate=False):
    """``cell_step`` of the inner cell over each sequence's valid steps, regularized by hand.

    ``masks = (m_x, m_h, keep_h, keep_c, m_y)`` as sampled (``None`` where off); with
    ``evaluate`` the zoneout masks are replaced by the rates (the expectation).
    """
    m_x, m_h, keep_h, keep_c, m_y = masks
    ys = np.zeros((xs.shape[0], xs.shape[1], reg.output_size))
    finals = []
    for b, length in enumerate(lengths):
        state = jax.tree.map(lambda a, b=b: a[b], carry)
        steps = range(length)
        for t in reversed(steps) if reverse else steps:
            x = xs[t, b] if m_x is None else xs[t, b] * m_x[b]
            h_prev = hidden(state)
            read = state if m_h is None else with_hidden(state, h_prev * m_h[b])
            new, y = jaxrnn.cell_step(reg.cell, read, x)
            if reg.zoneout_h:
                d = reg.zoneout_h if evaluate else keep_h[t, b]
                y = d * h_prev + (1 - d) * hidden(new)
                new = with_hidden(new, y)
            if reg.zoneout_c:
                e = reg.zoneout_c if evaluate else keep_c[t, b]
                new = new._replace(c=e * state.c + (1 - e) * new.c)
            state, ys[t, b] = new, y if m_y is None else y * m_y[b]
        finals.append(state)
    return jax.tree.map(lambda *leaves: np.stack(leaves), *finals), ys


# --- regularize --------------------------------------------------------------------------


def test_without_key_dropout_is_off_exactly():
    params = jaxrnn.init_params(jax.random.key(0), "lstm", IN, HID, num_layers=2)
    dropped = jaxrnn.regularization.regularize(
        params, input_dropout=0.5, output_dropout=0.5, recurrent_dropout=0.5
    )
    xs = jax.random.normal(jax.random.key(1), (4, 3, IN))
    plain = unroll(params, None, xs, lengths=jnp.asarray(LENGTHS))
    evaluated = unroll(dropped, None, xs, lengths=jnp.asarray(LENGTHS))
    jax.tree.map(np.testing.assert_array_equal, evaluated, plain)
    x = xs[0]
    jax.tree.map(
        np.testing.assert_array_equal,
        jaxrnn.cell_step(dropped, None, x),
        jaxrnn.cell_step(params, None, x),
    )


@pytest.mark.parametrize(
    ("name", "reverse"),
    [("lstm", False), ("lstm", True), ("gru", False)],
    ids=["lstm-forward", "lstm-reverse", "gru-forward"],
)
def test_training_equals_loop_with_the_sampled_masks(name, reverse):
    cell, xs = cell_and_xs(name)
    rates = ALL_RATES if name == "lstm" else {**ALL_RATES, "zoneout_c": 0.0}
    reg = jaxrnn.regularization.regularize(cell, **rates)
    key = jax.random.key(3)
    carry = jax.tree.map(
        lambda c: jax.random.normal(jax.random.key(4), c.shape), jaxrnn.init_carry(cell, (3,))
    )
    final, ys = unroll(reg, carry, xs, lengths=jnp.asarray(LENGTHS), key=key, reverse=reverse)

    drawn = draw_masks(reg, xs, key)
    m_y = drawn.output
    # Variational input dropout: one mask, the same at every step, of 0 or 1 / (1 - p).
    m_x = np.broadcast_to(np.asarray(drawn.input), xs.shape)
    np.testing.assert_allclose(m_x, np.broadcast_to(m_x[0], m_x.shape), rtol=1e-6)
    assert_dropout_mask(m_x, ALL_RATES["input_dropout"])
    m_h = np.asarray(drawn.recurrent)
    assert m_h.shape == (3, HID)
    assert_dropout_mask(m_h, ALL_RATES["recurrent_dropout"])
    zoneout = [drawn.keep_h, *([drawn.keep_c] if name == "lstm" else [])]
    keep = np.concatenate([np.asarray(k) for k in zoneout], axis=-1)
    assert set(np.unique(keep)) == {0.0, 1.0}  # zoneout masks, new at every step
    assert not np.all(keep[1:] == keep[:1])
    keep_h, keep_c = keep[..., :HID], keep[..., HID:] if name == "lstm" else None

    masks = (m_x[0], m_h, keep_h, keep_c, np.asarray(m_y))
    ref_final, ref_ys = reference_loop(reg, carry, np.asarray(xs), LENGTHS, reverse, masks)
    assert_close(ys, ref_ys)
    jax.tree.map(assert_close, final, ref_final)


def test_output_dropout_mask_is_the_same_at_every_step():
    cell, xs = cell_and_xs("gru", seed=5, num_steps=6, batch=8)
    reg = jaxrnn.regularization.regularize(cell, output_dropout=0.5)
    _, ys_eval = unroll(reg, None, xs)
    _, ys_train = unroll(reg, None, xs, key=jax.random.key(6))
    ratio = np.asarray(ys_train / ys_eval)
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)
    assert_dropout_mask(ratio, 0.5)


def test_zoneout_at_evaluation_is_the_expectation():
    cell, xs = cell_and_xs("lstm", seed=7)
    reg = jaxrnn.regularization.regularize(cell, zoneout_h=0.3, zoneout_c=0.2)
    carry = jaxrnn.init_carry(cell, (3,))
    final, ys = unroll(reg, None, xs, lengths=jnp.asarray(LENGTHS))
    masks = (None,) * 5
    ref_final, ref_ys = reference_loop(reg, carry, np.asarray(xs), LENGTHS, False, masks, True)
    assert_close(ys, ref_ys)
    jax.tree.map(assert_close, final, ref_final)
    plain = unroll(cell, None, xs, lengths=jnp.asarray(LENGTHS))[1]
    assert not np.allclose(ys, plain)


def test_masks_depend_only_on_the_key():
    cell, xs = cell_and_xs("lstm", seed=8)
    reg = jaxrnn.regularization.regularize(cell, **ALL_RATES)
    runs = [unroll(reg, None, xs, key=jax.random.key(k))[1] for k in (0, 0, 1)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_stack_and_bidirectional_with_lengths_and_gradients():
    params = jaxrnn.init_params(
        jax.random.key(9), "lstm", IN, HID, num_layers=2, bidirectional=True, dropout=0.2
    )
    params = jaxrnn.regularization.regularize(params, **ALL_RATES)
    assert all(
        isinstance(layer.backward, jaxrnn.regularization.Regularized) for layer in params.layers
    )
    lengths = jnp.asarray(LENGTHS)
    xs = jax.random.normal(jax.random.key(10), (4, 3, IN))
    padding = jnp.arange(4)[:, None, None] >= lengths[:, None]
    key = jax.random.key(11)

    @jax.jit
    def loss_and_grad(params, xs):
        def loss(params):
            carry, ys = jaxrnn.unroll(params, None, xs, lengths=lengths, key=key)
            return jnp.sum(ys**2), (carry, ys)

        return jax.value_and_grad(loss, has_aux=True)(params)

    (_, (carry, ys)), grads = loss_and_grad(params, xs)
    (_, (carry_nan, ys_nan)), _ = loss_and_grad(params, jnp.where(padding, jnp.nan, xs))
    assert ys.shape == (4, 3, 2 * HID)
    assert not np.any(np.asarray(ys)[np.asarray(padding[..., 0])])
    np.testing.assert_array_equal(ys_nan, ys)  # padding values never reach the outputs
    jax.tree.map(np.testing.assert_array_equal, carry_nan, carry)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(leaf)) and np.any(leaf != 0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda c: jaxrnn.regularization.regularize(c, zoneout_h=1.0),
            r"regularize: zoneout_h must be",
        ),
        (
            lambda c: jaxrnn.regularization.regularize(c, input_dropout=-0.1),
            r"input_dropout must be a number",
        ),
        (
            lambda c: jaxrnn.regularization.regularize(c, zoneout_c=0.1),
            r"zoneout_c must be 0 for a cell",
        ),
        (
            lambda c: jaxrnn.regularization.regularize(
                jaxrnn.regularization.regularize(c, zoneout_h=0.1), zoneout_h=0.1
            ),
            r"params must not be regularized already",
        ),
        (
            lambda c: jaxrnn.regularization.regularize("gru"),
            r"regularize: params must be jaxrnn params",
        ),
    ],
    ids=["rate-1", "negative", "zoneout_c-gru", "twice", "not-params"],
)
def test_regularize_errors(make, message):
    cell = jaxrnn.init_params(jax.random.key(0), "gru", IN, HID)
    with pytest.raises((TypeError, ValueError), match=message):
        make(cell)


# --- learned_init ------------------------------------------------------------------------


def test_learned_initial_state_is_used_and_trained():
    params = jaxrnn.init_params(jax.random.key(15), "lstm", IN, HID, num_layers=2)
    carry0 = jax.tree.map(
        lambda c: jax.random.normal(jax.random.key(16), c.shape), jaxrnn.init_carry(params)
    )
    learned = jaxrnn.carries.learned_init(params, carry0)
    assert isinstance(learned.layers[1], jaxrnn.carries.LearnedInit)
    xs = jax.random.normal(jax.random.key(17), (3, 2, IN))
    broadcast = jax.tree.map(lambda c: jnp.broadcast_to(c, (2, *c.shape)), carry0)
    expected = unroll(params, broadcast, xs)
    jax.tree.map(assert_close, unroll(learned, None, xs), expected)

    grads = jax.grad(lambda p: jnp.sum(jaxrnn.unroll(p, None, xs)[1] ** 2))(learned)
    for layer in grads.layers:
        for leaf in jax.tree.leaves(layer.carry0):
            assert np.any(np.asarray(leaf) != 0)


def test_learned_init_composes_with_regularize_in_training():
    cell, xs = cell_and_xs("lstm", seed=18)
    carry0 = jaxrnn.LSTMState(h=jnp.full((HID,), 0.5), c=jnp.full((HID,), -0.5))
    key = jax.random.key(19)
    for params in (
        jaxrnn.carries.learned_init(jaxrnn.regularization.regularize(cell, **ALL_RATES), carry0),
        jaxrnn.regularization.regularize(jaxrnn.carries.learned_init(cell, carry0), **ALL_RATES),
    ):
        _, ys = unroll(params, None, xs, key=key)
        broadcast = jax.tree.map(lambda c: jnp.broadcast_to(c, (3, HID)), carry0)
        _, expected = unroll(
            jaxrnn.regularization.regularize(cell, **ALL_RATES), broadcast, xs, key=key
        )
        assert_close(ys, expected)


def test_learned_init_rejects_a_carry0_of_another_shape():
    cell = jaxrnn.init_params(jax.random.key(0), "gru", IN, HID)
    with pytest.raises(ValueError, match=r"learned_init: carry0 must match init_carry"):
        jaxrnn.carries.learned_init(cell, jnp.zeros((2, HID)))


# --- with_carry_outputs ------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_carry_outputs_are_the_carries_of_a_step_loop(reverse):
    cell, xs = cell_and_xs("lstm", seed=20)
    final, carries = unroll(
        jaxrnn.carries.with_carry_outputs(cell),
        None,
        xs,
        lengths=jnp.asarray(LENGTHS),
        reverse=reverse,
    )
    plain_final, ys = unroll(cell, None, xs, lengths=jnp.asarray(LENGTHS), reverse=reverse)
    assert isinstance(carries, jaxrnn.LSTMState)
    assert carries.c.shape == (4, 3, HID)
    np.testing.assert_array_equal(carries.h, ys)
    jax.tree.map(np.testing.assert_array_equal, final, plain_final)
    for b, length in enumerate(LENGTHS):
        state = jaxrnn.init_carry(cell)
        steps = range(length)
        for t in reversed(steps) if reverse else steps:
            state, _ = jaxrnn.cell_step(cell, state, xs[t, b])
            assert_close(carries.c[t, b], state.c)
        assert not np.any(np.asarray(carries.c[length:, b]))


def test_carry_outputs_of_a_regularized_convlstm():
    """Spatial masks: zoneout and recurrent dropout on (..., H, W, C) states, and an output
    dropout mask that is the same at every step."""
    conv = jaxrnn.init_params(jax.random.key(21), "convlstm", IN, HID, spatial_shape=(2, 3))
    reg = jaxrnn.regularization.regularize(conv, **ALL_RATES)
    xs = jax.random.normal(jax.random.key(22), (3, 2, 2, 3, IN))
    key = jax.random.key(23)
    # A non-zero initial state: zoneout may keep it, and h / h must be defined.
    carry = jax.tree.map(lambda c: c + 0.5, jaxrnn.init_carry(conv, (2,)))
    _, carries = unroll(jaxrnn.carries.with_carry_outputs(reg), carry, xs, key=key)
    _, ys = unroll(reg, carry, xs, key=key)
    assert carries.c.shape == ys.shape == (3, 2, 2, 3, HID)
    ratio = np.asarray(ys / carries.h)
    assert_dropout_mask(ratio, ALL_RATES["output_dropout"])
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[0], ratio.shape), rtol=1e-5)


def test_carry_outputs_of_learned_init_and_regularized_cells():
    cell, xs = cell_and_xs("lstm", seed=24)
    reg = jaxrnn.carries.learned_init(
        jaxrnn.regularization.regularize(cell, zoneout_h=0.3, zoneout_c=0.3, recurrent_dropout=0.3)
    )
    key = jax.random.key(25)
    _, carries = unroll(jaxrnn.carries.with_carry_outputs(reg), None, xs, key=key)
    assert_close(carries.h, unroll(reg, None, xs, key=key)[1])
    new, out = jaxrnn.cell_step(jaxrnn.carries.with_carry_outputs(cell), None, xs[0])
    jax.tree.map(np.testing.assert_array_equal, new, out)


def test_carry_outputs_cannot_be_a_layer_or_wrapped_twice():
    params = jaxrnn.init_params(jax.random.key(0), "lstm", IN, HID, num_layers=2)
    with pytest.raises(ValueError, match=r"with_carry_outputs: params must not contain"):
        jaxrnn.carries.with_carry_outputs(jaxrnn.carries.with_carry_outputs(params))
    with pytest.raises(TypeError, match=r"CarryOutputs has no output_size"):
        jaxrnn.stack([jaxrnn.carries.with_carry_outputs(params.layers[0]), params.layers[1]])
