"""The mLSTM (xLSTM's matrix-memory cell, ``"mlstm"``) in its three forms (the recurrence,
the quadratic and the chunkwise parallel forms) against two independent oracles.

- A float64 NumPy loop of the paper's *unstabilized* equations (Beck et al. 2024, eqs.
  19-27): the stabilized carry ``(C', n', m)`` must equal ``(C e^{-m}, n e^{-m}, m)`` and the
  outputs must be equal, through ``cell_step`` and every form of ``unroll`` with lengths and
  reverse, also with input gates ``e^{100}`` that float32 cannot hold unstabilized.
- The authors' PyTorch functions (``xlstm.blocks.mlstm.backends``: the recurrent step,
  the parallel and the chunkwise forms), fed with our q, k, v and gate pre-activations:
  outputs, final carry and gradients (torch autograd) of every form with lengths and
  reverse, float64 and float32.
- ``method="parallel"`` in a stack of bidirectional layers, and over zero steps.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.cells import MLSTMParams, MLSTMState
from jaxrnn.parallel import Parallel

IN, HID, HEADS = 3, 8, 2
D = HID // HEADS  # head size 4: sqrt(4) = 2 is exact, so both scalings of k agree bitwise
NUM_STEPS, BATCH = 7, 3
LENGTHS = np.array([7, 3, 0])
#: Every form of the run: the recurrence, the quadratic form, the chunkwise form (chunks of
#: 3 steps, which do not divide 7: the last chunk is padded).
METHODS = {
    "sequential": "sequential",
    "quadratic": "parallel",
    "chunkwise": Parallel(strategy="chunked", chunk_size=3),
}


def random_params(seed, dtype=jnp.float32, forget_gate="sigmoid", output_norm=False, input_size=IN):
    """Params with every entry random (``init_params`` starts the gates' weights at zero),
    so each term counts; drawn by NumPy, which compiles nothing."""
    rng = np.random.default_rng(seed)
    width = 4 * HID + 2 * HEADS

    def draw(*shape, mean=0.0):
        return jnp.asarray(mean + 0.5 * rng.normal(size=shape), dtype)

    return MLSTMParams(
        w_x=draw(input_size, width),
        b_x=draw(width),
        norm_gain=draw(HID, mean=1.0) if output_norm else None,
        num_heads=HEADS,
        forget_gate=forget_gate,
    )


def random_carry(params, batch_shape, seed):
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(jaxrnn.init_carry(params, batch_shape))
    return treedef.unflatten([jnp.asarray(rng.normal(size=a.shape), a.dtype) for a in leaves])


def random_inputs(seed, dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(NUM_STEPS, BATCH, IN)), dtype)


def assert_close(actual, expected, tol):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------
# The paper's equations, unstabilized, in float64 NumPy
# --------------------------------------------------------------------------------------


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def reference_step(p, state, x):
    """One step of one sequence: eqs. 19-27 as printed, on the unstabilized ``(C, n)``;
    ``m`` follows its own recurrence, only to compare ``C e^{-m}`` with our carry."""
    C, n, m = state
    projected = x @ np.asarray(p.w_x, np.float64)
    if p.b_x is not None:
        projected = projected + np.asarray(p.b_x, np.float64)
    q, k, v, o = (projected[j * HID : (j + 1) * HID].reshape(HEADS, D) for j in range(4))
    i_tilde, f_tilde = projected[4 * HID : 4 * HID + HEADS], projected[4 * HID + HEADS :]
    k = k / math.sqrt(D)
    i = np.exp(i_tilde)
    f = sigmoid(f_tilde) if p.forget_gate == "sigmoid" else np.exp(f_tilde)
    C = f[:, None, None] * C + i[:, None, None] * v[:, :, None] * k[:, None, :]
    n = f[:, None] * n + i[:, None] * k
    h = (
        np.einsum("hab,hb->ha", C, q)
        / np.maximum(np.abs(np.einsum("ha,ha->h", n, q)), 1.0)[:, None]
    )
    if p.norm_gain is not None:
        mean, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
        h = np.asarray(p.norm_gain, np.float64) * ((h - mean) / np.sqrt(var + p.epsilon)).reshape(
            HID
        )
    m = np.maximum(np.log(f) + m, i_tilde)
    return (C, n, m), sigmoid(o.reshape(HID)) * h.reshape(HID)


def unstabilized(carry):
    """The paper's ``(C, n)`` (and ``m``) of a stabilized carry: ``C = C' e^m``, ``n = n' e^m``."""
    C, n, m = (np.asarray(a, np.float64) for a in carry)
    return C * np.exp(m)[..., None, None], n * np.exp(m)[..., None], m


def stabilized(state):
    C, n, m = state
    return C * np.exp(-m)[..., None, None], n * np.exp(-m)[..., None], m


#: One compilation per configuration (XLA compiles several small programs faster than
#: one program holding them all).
UNROLL = jax.jit(jaxrnn.unroll, static_argnames=("reverse", "method"))
CELL_STEP = jax.jit(jaxrnn.cell_step)


#: (options, reverse, input gate bias): the second variant's e^{ĩ} ≈ e^{100} would overflow
#: float32 unstabilized (its largest number is e^{88.7}); float64 NumPy holds it.
VARIANTS = [({}, False, None), ({"forget_gate": "exp", "output_norm": True}, True, 100.0)]


@pytest.mark.parametrize(
    ("options", "reverse", "input_bias"),
    VARIANTS,
    ids=["sigmoid-forward", "exp-forget-gate-output-norm-reverse-huge-input-gates"],
)
def test_every_form_matches_a_numpy_loop_of_the_unstabilized_equations(
    options, reverse, input_bias
):
    params = random_params(0, **options)
    if input_bias is not None:
        b_x = np.asarray(params.b_x).copy()
        b_x[4 * HID : 4 * HID + HEADS] += input_bias
        params = dataclasses.replace(params, b_x=jnp.asarray(b_x))
    assert params.head_size == D
    carry, xs = random_carry(params, (BATCH,), 1), random_inputs(2)
    step_carry, step_y = CELL_STEP(params, jax.tree.map(lambda c: c[0], carry), xs[0, 0])
    lengths = jnp.asarray(LENGTHS)
    runs = {
        name: UNROLL(params, carry, xs, lengths=lengths, reverse=reverse, method=method)
        for name, method in METHODS.items()
    }
    assert isinstance(step_carry, MLSTMState)
    numpy_xs = np.asarray(xs, np.float64)
    first = unstabilized(jax.tree.map(lambda c: c[0], carry))
    expected_carry, expected_y = reference_step(params, first, numpy_xs[0, 0])
    assert_close(step_y, expected_y, 1e-5)
    for got, expected in zip(step_carry, stabilized(expected_carry), strict=True):
        assert_close(got, expected, 1e-5)
    for name, (final, ys) in runs.items():
        if input_bias is not None:
            assert bool(jnp.all(final.m[:2] > input_bias - 10)), name  # m carries the scale
        for b, length in enumerate(LENGTHS):
            state = unstabilized(jax.tree.map(lambda c, b=b: c[b], carry))
            steps = range(length)
            for t in reversed(steps) if reverse else steps:
                state, y = reference_step(params, state, numpy_xs[t, b])
                assert_close(ys[t, b], y, 1e-5)
            assert not np.any(np.asarray(ys[length:, b])), name
            got = jax.tree.map(lambda c, b=b: c[b], final)
            for got_leaf, expected_leaf in zip(got, stabilized(state), strict=True):
                assert_close(got_leaf, expected_leaf, 1e-5)


# --------------------------------------------------------------------------------------
# The authors' PyTorch functions (xlstm.blocks.mlstm.backends)
# --------------------------------------------------------------------------------------


#: Width of the projected input: q, k, v, o (HID each), ĩ, f̃ (HEADS each).
PROJECTED = 4 * HID + 2 * HEADS


def identity_params(dtype, norm_gain=None):
    """An mLSTM whose input projection is the identity: its inputs *are* the q, k, v, o,
    ĩ, f̃ pre-activations, so gradients with respect to ``xs`` are those with respect to
    the oracle's inputs. Weights convert exactly: xlstm's ``queries, keys, values`` are our
    ``q, x W_k + b_k, v`` per head (it divides ``keys`` by ``sqrt(d)`` itself, as we do),
    ``igate_preact, fgate_preact`` our ``ĩ, f̃``; its memory ``c_state`` is our ``C``
    transposed (``k v^T``, ours ``v k^T``), ``n_state, m_state`` our ``n, m``; its
    chunkwise form scales ``q`` instead of ``k``, so its ``C, n`` are ``sqrt(d)`` times
    ours; ``MultiHeadLayerNorm``'s weight is our ``γ - 1``. ``eps=0`` in the backends: the
    paper's equations have no epsilon there, and neither do we."""
    gain = None if norm_gain is None else jnp.asarray(norm_gain, dtype)
    return MLSTMParams(
        w_x=jnp.eye(PROJECTED, dtype=dtype), b_x=None, norm_gain=gain, num_heads=HEADS
    )


def torch_split(xs):
    """``xs (time, batch, PROJECTED)`` -> xlstm's ``q, k, v (batch, heads, time, d)``,
    ``ĩ, f̃ (batch, heads, time)`` and our ``o (time, batch, HID)``."""
    num_steps, batch = xs.shape[:2]
    q, k, v, o = (xs[..., j * HID : (j + 1) * HID] for j in range(4))

    def heads(a):
        return a.reshape(num_steps, batch, HEADS, D).permute(1, 2, 0, 3)

    gates = xs[..., 4 * HID :].permute(1, 2, 0)
    return heads(q), heads(k), heads(v), o, gates[:, :HEADS], gates[:, HEADS:]


def torch_output(h, o, norm):
    """xlstm's ``h̃ (batch, heads, time, d)`` -> our ``y = σ(o) ⊙ norm(h̃) (time, batch, HID)``."""
    import torch

    num_steps, batch = o.shape[:2]
    h = h if norm is None else norm(h)
    return torch.sigmoid(o) * h.permute(2, 0, 1, 3).reshape(num_steps, batch, HID)


def torch_recurrent(norm, xs, C0, n0, m0):
    """The recurrent oracle, step by step: outputs and the final ``(C, n, m)`` in our layout."""
    import torch
    from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple

    q, k, v, o, i, f = torch_split(xs)
    c, n, m = C0.transpose(-1, -2), n0[..., None], m0[..., None, None]
    outputs = []
    for t in range(xs.shape[0]):
        at = slice(t, t + 1)
        h, (c, n, m) = recurrent_step_stabilized_simple(
            c,
            n,
            m,
            q[:, :, at].clone(),
            k[:, :, at].clone(),
            v[:, :, at].clone(),
            i[:, :, at, None],
            f[:, :, at, None],
            eps=0.0,
        )  # fmt: skip  (clones: it squeezes q, k, v in place)
        outputs.append(torch_output(h, o[t : t + 1], norm)[0])
    return torch.stack(outputs), (c.transpose(-1, -2), n[..., 0], m[..., 0, 0])


def torch_parallel(norm, xs):
    """The parallel oracle (zero initial state): outputs."""
    from xlstm.blocks.mlstm.backends import parallel_stabilized_simple

    q, k, v, o, i, f = torch_split(xs)
    return torch_output(
        parallel_stabilized_simple(q, k, v, i[..., None], f[..., None], eps=0.0), o, norm
    )


def torch_chunkwise(norm, xs, C0, n0, m0, chunk_size):
    """The chunkwise oracle: outputs and the final ``(C, n, m)`` in our layout."""
    from xlstm.blocks.mlstm.backends import chunkwise_simple

    q, k, v, o, i, f = torch_split(xs)
    h, (c, n, m) = chunkwise_simple(
        q, k, v, i, f,
        initial_C=math.sqrt(D) * C0.transpose(-1, -2), initial_n=math.sqrt(D) * n0,
        initial_m=m0, chunk_size=chunk_size, return_last_state=True, eps=0.0,
    )  # fmt: skip
    carry = (c.transpose(-1, -2) / math.sqrt(D), n / math.sqrt(D), m.reshape(m0.shape))
    return torch_output(h, o, norm), carry


def weighted_sum(ys, carry, weights):
    """A loss that reaches every output and every leaf of the final carry."""
    return sum((w * a).sum() for w, a in zip(weights, (ys, *carry), strict=True))


#: (dtype, output_norm, reverse, tolerance), rtol = atol = tolerance. Outputs, carries and
#: gradients here are at most about 9 in size; the largest differences seen were 4e-15 in
#: float64 and 1.1e-5 (on a gradient of size 5) in float32.
ORACLE_CASES = [("float64", False, True, 1e-11), ("float32", True, False, 1e-5)]


@pytest.mark.parametrize(
    ("dtype", "output_norm", "reverse", "tol"),
    ORACLE_CASES,
    ids=["float64-reverse", "float32-output-norm"],
)
def test_every_form_matches_the_authors_pytorch_functions(dtype, output_norm, reverse, tol):
    """Each form of ``unroll`` with lengths, from a random state: outputs, final carry and
    gradients (torch autograd) against the recurrent oracle run on each sequence's valid
    steps; the chunkwise form on the full-length sequence against the chunkwise oracle;
    the quadratic form from zeros against the parallel oracle."""
    torch = pytest.importorskip("torch", reason="the xlstm oracle needs PyTorch")
    pytest.importorskip("xlstm", reason="the authors' mLSTM functions are in the xlstm package")
    from xlstm.components.ln import MultiHeadLayerNorm

    rng = np.random.default_rng(0)
    num_steps, chunk_size = 8, 4  # xlstm's chunkwise form needs whole chunks
    lengths = [8, 3]  # with chunks of 4, the second sequence has a chunk of padding only
    batch = len(lengths)
    xs = rng.normal(size=(num_steps, batch, PROJECTED))
    xs[..., 4 * HID : 4 * HID + HEADS] *= 4.0  # input gates e^ĩ across many magnitudes
    C0, n0 = rng.normal(size=(batch, HEADS, D, D)), rng.normal(size=(batch, HEADS, D))
    m0, gain = rng.normal(size=(batch, HEADS)), rng.normal(size=HID) if output_norm else None
    shapes = [(num_steps, batch, HID), C0.shape, n0.shape, m0.shape]
    weights = [rng.normal(size=s) for s in shapes]
    inputs = [a.astype(dtype) for a in (xs, C0, n0, m0)]

    norm = None
    if output_norm:
        norm = MultiHeadLayerNorm(ndim=HID, weight=True, bias=False).to(getattr(torch, dtype))
        with torch.no_grad():
            norm.weight.copy_(torch.tensor(gain - 1.0))
    leaves = [torch.tensor(a, requires_grad=True) for a in inputs]
    torch_weights = [torch.tensor(w, dtype=leaves[0].dtype) for w in weights]
    expected_ys, expected_carry, loss = np.zeros(shapes[0]), [], 0.0
    for b, length in enumerate(lengths):  # each sequence over its valid steps only
        order = list(range(length))[::-1] if reverse else list(range(length))
        state = [leaf[b : b + 1] for leaf in leaves[1:]]
        ys, carry = torch_recurrent(norm, leaves[0][order, b : b + 1], *state)
        loss = loss + weighted_sum(
            ys[:, 0],
            [c[0] for c in carry],
            [torch_weights[0][order, b]] + [w[b] for w in torch_weights[1:]],
        )
        expected_ys[order, b] = ys[:, 0].detach().numpy()
        expected_carry.append([c[0].detach().numpy() for c in carry])
    loss.backward()
    expected_carry = [np.stack(leaf) for leaf in zip(*expected_carry, strict=True)]
    full = list(range(num_steps))[::-1] if reverse else list(range(num_steps))
    with torch.no_grad():
        chunkwise = torch_chunkwise(
            norm, leaves[0][full, :1], *(leaf[:1] for leaf in leaves[1:]), chunk_size
        )
        parallel_ys = torch_parallel(norm, leaves[0])

    with jax.enable_x64(dtype == "float64"):
        params = identity_params(dtype, gain)
        carry = MLSTMState(*(jnp.asarray(a) for a in inputs[1:]))
        xs, lengths = jnp.asarray(inputs[0]), jnp.asarray(lengths)

        def loss(xs, carry, method):
            new, ys = jaxrnn.unroll(
                params, carry, xs, lengths=lengths, reverse=reverse, method=method
            )
            return weighted_sum(ys, new, [jnp.asarray(w, dtype) for w in weights]), (ys, new)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnames="method")
        forms = {**METHODS, "chunkwise": Parallel(strategy="chunked", chunk_size=chunk_size)}
        if dtype == "float32":  # the recurrence is checked in float64; in float32 the parallel
            del forms["sequential"]  # forms' rounding is what needs checking
        runs = {name: grad(xs, carry, method=method) for name, method in forms.items()}
        from_zero = UNROLL(params, None, xs, method="parallel")[1]

    assert_close(from_zero, parallel_ys.numpy(), tol)
    expected = [*expected_carry, *(leaf.grad.numpy() for leaf in leaves)]
    for (grad_xs, grad_carry), (ys, carry) in runs.values():
        assert_close(ys, expected_ys, tol)
        for got, want in zip([*carry, grad_xs, *grad_carry], expected, strict=True):
            assert_close(got, want, tol)
    _, (ys, carry) = runs["chunkwise"]
    assert_close(ys[full, 0], chunkwise[0][:, 0].numpy(), tol)
    for got, expected in zip(carry, chunkwise[1], strict=True):
        assert_close(got[0], expected[0].numpy(), tol)


# --------------------------------------------------------------------------------------
# The parallel forms against the recurrence
# --------------------------------------------------------------------------------------


def test_parallel_in_a_stack_of_bidirectional_layers():
    def pair(seed, input_size):
        return jaxrnn.bidirectional(
            random_params(seed, input_size=input_size),
            random_params(seed + 1, input_size=input_size),
        )

    params = jaxrnn.stack([pair(7, IN), pair(9, 2 * HID)])
    xs = random_inputs(6)
    lengths = jnp.asarray(LENGTHS)
    sequential = UNROLL(params, None, xs, lengths=lengths, method="sequential")
    parallel = UNROLL(params, None, xs, lengths=lengths, method="parallel")
    assert isinstance(sequential[0][1].backward, MLSTMState)
    jax.tree.map(lambda a, b: assert_close(a, b, 1e-5), parallel, sequential)


@pytest.mark.parametrize("name", ["mlstm", "mingru"])
def test_parallel_over_zero_steps_returns_the_carry(name):
    params = jaxrnn.init_params(jax.random.key(8), name, IN, HID)
    carry = random_carry(params, (2,), 9)
    for method in METHODS.values():
        new_carry, ys = jaxrnn.unroll(params, carry, jnp.ones((0, 2, IN)), method=method)
        assert ys.shape == (0, 2, HID)
        jax.tree.map(np.testing.assert_array_equal, new_carry, carry)


# --------------------------------------------------------------------------------------
# Options and errors
# --------------------------------------------------------------------------------------


def test_initialization_follows_the_authors_code():
    params = jaxrnn.init_params(jax.random.key(7), "mlstm", IN, HID, num_heads=HEADS)
    gates = params.w_x[:, 4 * HID :]
    assert params.w_x.shape == (IN, PROJECTED) and not jnp.any(gates)
    assert_close(params.b_x[4 * HID + HEADS :], [3.0, 6.0], 0)  # forget biases 3 ... 6
    assert params.norm_gain is None and params.forget_gate == "sigmoid"
    exp = jaxrnn.init_params(jax.random.key(7), "mlstm", IN, HID, num_heads=2, forget_gate="exp")
    f = jnp.exp(exp.b_x[4 * HID + HEADS :])  # the same initial forget gates as σ(3), σ(6)
    assert_close(f, jax.nn.sigmoid(jnp.array([3.0, 6.0])), 1e-6)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"num_heads": 3}, ValueError, r"init_params: num_heads must divide hidden_size=8; got 3"),
        ({"num_heads": 0}, ValueError, r"init_params: num_heads must be a positive int; got 0"),
        ({"num_heads": 2.0}, TypeError, r"init_params: num_heads must be a positive int; got 2.0"),
        ({"forget_gate": "tanh"}, ValueError, r"forget_gate must be one of 'sigmoid', 'exp'"),
        ({"output_norm": 1}, TypeError, r"init_params: output_norm must be a bool; got 1"),
        ({"epsilon": 0.0}, ValueError, r"init_params: epsilon must be > 0; got 0.0"),
    ],
)
def test_option_errors(options, error, message):
    with pytest.raises(error, match=message):
        jaxrnn.init_params(jax.random.key(0), "mlstm", IN, HID, **options)
