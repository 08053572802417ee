"""Methods are values: objects that carry their settings, strings as aliases of their
defaults, every one runs stacks and bidirectional pairs, and one policy (``MethodError``)
for params a method cannot run."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.methods import (
    DEER,
    PRESETS,
    Auto,
    CuDNN,
    HandDerivatives,
    Method,
    MethodError,
    Parallel,
    Sequential,
    as_method,
)

KEY = jax.random.key(0)
XS = jax.random.normal(jax.random.key(1), (6, 2, 3))
LENGTHS = jnp.array([6, 3])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("auto", Auto()),
        ("sequential", Sequential()),
        ("fused", HandDerivatives()),
        ("parallel", Parallel()),
        ("deer", DEER(variant="full")),
        ("quasi_deer", DEER(variant="diagonal", max_iter=500)),
        ("elk", DEER(variant="full", trust_region=1e-6)),
        ("quasi_elk", DEER(variant="diagonal", max_iter=500, trust_region=1e-6)),
        ("cudnn", CuDNN()),
    ],
)
def test_strings_are_aliases_of_defaults(name, expected):
    assert as_method(name) == expected
    assert expected.label == f"method={name!r}"
    if name in PRESETS:
        assert PRESETS[name] == expected


def test_string_settings_go_into_the_object():
    assert as_method("sequential", unroll=4, remat=True) == Sequential(unroll=4, remat=True)
    assert as_method("auto", remat=True) == Auto(remat=True)


def test_a_configured_method_runs_a_bidirectional_stack():
    """DEER with its own tolerance on a stack holding a bidirectional GRU pair, with
    lengths: outputs and gradients equal the sequential run."""
    params = jaxrnn.stack([jaxrnn.init_params(KEY, "gru", 3, 4, bidirectional=True)])
    method = DEER(tol=1e-6, max_iter=60, damping=0.0)

    def loss(p, m):
        _, ys = jaxrnn.unroll(p, None, XS, lengths=LENGTHS, method=m)
        return jnp.sum(jnp.sin(ys)), ys

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (value, ys), grads = value_and_grad(params, method)
    (ref_value, ref_ys), ref_grads = value_and_grad(params, "sequential")
    np.testing.assert_allclose(ys, ref_ys, atol=1e-5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4), grads, ref_grads)


def test_sequential_settings_change_nothing_but_the_schedule():
    params = jaxrnn.init_params(KEY, "lstm", 3, 4, num_layers=2)
    plain = jaxrnn.unroll(params, None, XS, lengths=LENGTHS, method="sequential")
    tuned = jaxrnn.unroll(params, None, XS, lengths=LENGTHS, method=Sequential(2, remat=True))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), tuned, plain)


def test_a_users_method_is_a_subclass():
    """The extension point for methods: subclass Method, define unroll_cell."""

    @dataclasses.dataclass(frozen=True)
    class Unrolled(Method):
        """A Python loop of steps: every cell, no scan (for tiny T only)."""

        def unroll_cell(self, cell, carry, xs, run):
            ys = []
            steps = range(xs.shape[0])
            for t in reversed(steps) if run.reverse else steps:
                new, y = cell.step(carry, xs[t])
                keep = run.valid[t][..., None]
                carry = jax.tree.map(lambda n, o, k=keep: jnp.where(k, n, o), new, carry)
                ys.append((t, jnp.where(keep, y, 0)))
            return carry, jnp.stack([y for _, y in sorted(ys, key=lambda p: p[0])])

    params = jaxrnn.init_params(KEY, "gru", 3, 4, bidirectional=True)
    mine = jaxrnn.unroll(params, None, XS, lengths=LENGTHS, method=Unrolled())
    reference = jaxrnn.unroll(params, None, XS, lengths=LENGTHS)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), mine, reference)


@pytest.mark.parametrize(
    ("method", "cell", "match"),
    [
        ("parallel", "gru", r"be a cell that is linear in its state for method='parallel'"),
        (Parallel(strategy="chunked"), "lstm", r"be a cell .* for method=Parallel\(strategy="),
        ("fused", "lstm_ln", r"be a cell with hand-written derivatives .* for method='fused'"),
    ],
    ids=["parallel-gru", "chunked-lstm", "fused-lstm_ln"],
)
def test_one_policy_for_params_a_method_cannot_run(method, cell, match):
    params = jaxrnn.init_params(KEY, cell, 3, 4)
    with pytest.raises(MethodError, match=rf"^unroll: params must {match}.*; got \w+Params$"):
        jaxrnn.unroll(params, None, XS, method=method)


def test_carry_outputs_need_a_method_that_has_them():
    params = jaxrnn.carries.with_carry_outputs(jaxrnn.init_params(KEY, "gru", 3, 4))
    with pytest.raises(MethodError, match=r"outputs every step's carry.*for method='deer'"):
        jaxrnn.unroll(params, None, XS, method="deer")
    carry, carries = jaxrnn.unroll(params, None, XS, method=Sequential(remat=True))
    np.testing.assert_allclose(carries[-1], carry, rtol=1e-6)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (
            {"method": "scan"},
            ValueError,
            r"^unroll: method must be one of 'sequential', .* or a Method object; got 'scan'$",
        ),
        ({"unroll": 0}, ValueError, r"^unroll: unroll must be a positive int or a bool; got 0$"),
        ({"unroll": 2.5}, TypeError, r"^unroll: unroll must be a positive int or a bool"),
        ({"remat": "yes"}, TypeError, r"^unroll: remat must be a bool; got 'yes'$"),
        ({"reverse": "False"}, TypeError, r"^unroll: reverse must be a bool; got 'False'$"),
        (
            {"method": Sequential(), "remat": True},
            ValueError,
            r"^unroll: remat must keep its default when method is a method object",
        ),
        ({"method": "deer", "remat": True}, ValueError, r"remat must be False with method='deer'"),
    ],
    ids=["unknown", "unroll-0", "unroll-float", "remat-str", "reverse-str", "twice", "deer-remat"],
)
def test_bad_method_options_are_refused(options, error, match):
    params = jaxrnn.init_params(KEY, "gru", 3, 4)
    with pytest.raises(error, match=match):
        jaxrnn.unroll(params, None, XS, **options)


def test_method_settings_are_checked_when_made():
    with pytest.raises(TypeError, match=r"^Sequential: unroll must be a positive int"):
        Sequential(unroll="2")
    with pytest.raises(ValueError, match=r"^DEER: max_iter must be a positive int; got 0$"):
        DEER(max_iter=0)
    with pytest.raises(ValueError, match=r"^Parallel: strategy must be one of 'tree'"):
        Parallel(strategy="blelloch")
