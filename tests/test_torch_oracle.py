"""PyTorch as an independent oracle: outputs, final states and gradients of ``nn.RNN``,
``nn.LSTM``, ``nn.GRU`` (on packed, mixed-length batches) and of their ``*Cell`` modules.

Weights come from a randomly initialized torch module through ``from_torch``; gradients
come back through ``to_torch`` and are compared with torch's ``.grad`` key by key.
Skipped when torch is not installed.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn.interop.torch import carry_from_torch, carry_to_torch

torch = pytest.importorskip("torch")
nn = torch.nn

NUM_STEPS, BATCH, INPUT_SIZE, HIDDEN_SIZE = 6, 4, 3, 5
LENGTHS = np.array([6, 2, 5, 1])
RTOL, ATOL = 1e-4, 2e-5

#: ``(torch class, constructor options, non-zero initial state)``: a covering subset of
#: {rnn tanh/relu, lstm, gru} x {1, 2, 3 layers} x {uni, bi} x {bias, none} x proj_size.
LAYERED = [
    ("RNN", {"nonlinearity": "tanh"}, False),
    ("RNN", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True, "bias": False}, True),
    ("RNN", {"nonlinearity": "tanh", "num_layers": 3, "bidirectional": True}, False),
    ("LSTM", {"bidirectional": True}, True),
    ("LSTM", {"num_layers": 2, "bias": False, "proj_size": 2}, False),
    ("LSTM", {"num_layers": 3, "bidirectional": True, "proj_size": 3}, True),
    ("GRU", {"num_layers": 3}, True),
    ("GRU", {"num_layers": 2, "bidirectional": True, "bias": False}, False),
]
LAYERED_IDS = [
    "-".join([kind, *(f"{k}={v}" for k, v in options.items()), "h0" if h0 else "zero"])
    for kind, options, h0 in LAYERED
]

CELL_MODULES = [
    ("RNNCell", {"nonlinearity": "tanh"}),
    ("RNNCell", {"nonlinearity": "relu", "bias": False}),
    ("LSTMCell", {}),
    ("LSTMCell", {"bias": False}),
    ("GRUCell", {}),
    ("GRUCell", {"bias": False}),
]
CELL_IDS = ["-".join([kind, *(f"{k}={v}" for k, v in o.items())]) for kind, o in CELL_MODULES]


def make_module(kind, options, seed=0):
    torch.manual_seed(seed)
    return getattr(nn, kind)(INPUT_SIZE, HIDDEN_SIZE, **options)


def random(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def state_shapes(module):
    """Shapes of torch's ``h_0`` (and ``c_0``): ``(layers * directions, batch, size)``."""
    rows = module.num_layers * (2 if module.bidirectional else 1)
    h_size = getattr(module, "proj_size", 0) or module.hidden_size
    shapes = [(rows, BATCH, h_size)]
    if isinstance(module, nn.LSTM):
        shapes.append((rows, BATCH, module.hidden_size))
    return shapes


def assert_close(actual, expected, what):
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL, err_msg=what
    )


def torch_run(module, xs, initial, out_weights, state_weights):
    """Torch's outputs, final state and the gradients of a weighted sum of both."""
    pack = nn.utils.rnn.pack_padded_sequence
    x = torch.tensor(xs, requires_grad=True)
    hx = [torch.tensor(s, requires_grad=True) for s in initial] if initial else None
    packed = pack(x, torch.tensor(LENGTHS), enforce_sorted=False)
    out, state = module(packed, None if hx is None else (hx[0] if len(hx) == 1 else tuple(hx)))
    out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=NUM_STEPS)
    state = state if isinstance(state, tuple) else (state,)
    loss = (out * torch.tensor(out_weights)).sum()
    loss = loss + sum(
        (s * torch.tensor(w)).sum() for s, w in zip(state, state_weights, strict=True)
    )
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    hx_grads = None if hx is None else [h.grad.numpy() for h in hx]
    outputs = out.detach().numpy(), [s.detach().numpy() for s in state]
    return outputs, grads, x.grad.numpy(), hx_grads


@pytest.mark.parametrize("kind, options, with_h0", LAYERED, ids=LAYERED_IDS)
def test_layered_module_outputs_states_and_gradients(kind, options, with_h0):
    module = make_module(kind, options)
    params = jaxrnn.from_torch(module)
    xs = random((NUM_STEPS, BATCH, INPUT_SIZE), 1)
    shapes = state_shapes(module)
    initial = [random(shape, 2 + i) for i, shape in enumerate(shapes)] if with_h0 else None
    out_weights = random((NUM_STEPS, BATCH, params.output_size), 4)
    state_weights = [random(shape, 5 + i) for i, shape in enumerate(shapes)]
    (out, state), grads, grad_xs, grad_hx = torch_run(
        module, xs, initial, out_weights, state_weights
    )

    @jax.jit
    def run(params, carry, xs):
        def loss(params, carry, xs):
            carry, ys = jaxrnn.unroll(params, carry, xs, lengths=jnp.asarray(LENGTHS))
            final = carry_to_torch(params, carry)
            weighted = [jnp.sum(s * w) for s, w in zip(final, state_weights, strict=True)]
            return jnp.sum(ys * out_weights) + sum(weighted), (ys, final)

        return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, carry, xs)

    carry = None if initial is None else carry_from_torch(params, *initial)
    (grad_params, grad_carry, grad_xs_jax), (ys, final) = run(params, carry, xs)

    assert_close(ys, out, "outputs")
    assert len(final) == len(state)
    for name, ours, theirs in zip(("h_n", "c_n"), final, state, strict=False):
        assert_close(ours, theirs, name)
    ours = jaxrnn.to_torch(grad_params)
    assert ours.keys() == grads.keys()
    for name, grad in grads.items():
        assert ours[name].shape == grad.shape
        assert_close(ours[name], grad, f"gradient of {name}")
    assert_close(grad_xs_jax, grad_xs, "gradient of xs")
    if initial is not None:
        grad_initial = carry_to_torch(params, grad_carry)
        assert len(grad_initial) == len(grad_hx)
        for name, ours, theirs in zip(("h0", "c0"), grad_initial, grad_hx, strict=False):
            assert_close(ours, theirs, f"gradient of {name}")


@pytest.mark.parametrize("kind, options", CELL_MODULES, ids=CELL_IDS)
def test_cell_module_matches_cell_step(kind, options):
    module = make_module(kind, options, seed=1)
    params = jaxrnn.from_torch(module)
    assert isinstance(params, (jaxrnn.RNNParams, jaxrnn.LSTMParams, jaxrnn.GRUParams))
    x = random((BATCH, INPUT_SIZE), 6)
    state = [random((BATCH, HIDDEN_SIZE), 7 + i) for i in range(2 if kind == "LSTMCell" else 1)]
    weights = [random((BATCH, HIDDEN_SIZE), 9 + i) for i in range(len(state))]

    tx = torch.tensor(x, requires_grad=True)
    thx = [torch.tensor(s, requires_grad=True) for s in state]
    new = module(tx, tuple(thx) if len(thx) == 2 else thx[0])
    new = new if isinstance(new, tuple) else (new,)
    sum((s * torch.tensor(w)).sum() for s, w in zip(new, weights, strict=True)).backward()

    def loss(params, carry, x):
        carry, y = jaxrnn.cell_step(params, carry, x)
        flat = (carry.h, carry.c) if isinstance(carry, jaxrnn.LSTMState) else (carry,)
        return sum(jnp.sum(s * w) for s, w in zip(flat, weights, strict=True)), (flat, y)

    carry = jaxrnn.LSTMState(*state) if kind == "LSTMCell" else state[0]
    (grad_params, grad_carry, grad_x), (flat, y) = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, carry, x
    )
    np.testing.assert_array_equal(y, flat[0])  # the output is the new h
    for ours, theirs in zip(flat, new, strict=True):
        assert_close(ours, theirs.detach().numpy(), "state")
    ours = jaxrnn.to_torch(grad_params)
    assert ours.keys() == dict(module.named_parameters()).keys()
    for name, p in module.named_parameters():
        assert_close(ours[name], p.grad.numpy(), f"gradient of {name}")
    assert_close(grad_x, tx.grad.numpy(), "gradient of x")
    for ours, theirs in zip(jax.tree.leaves(grad_carry), thx, strict=True):
        assert_close(ours, theirs.grad.numpy(), "gradient of the state")


@pytest.mark.parametrize(
    "kind, options",
    [(kind, options) for kind, options, _ in LAYERED] + CELL_MODULES,
    ids=LAYERED_IDS + CELL_IDS,
)
def test_round_trip_is_exact(kind, options):
    module = make_module(kind, options, seed=2)
    params = jaxrnn.from_torch(module)
    is_cell = kind.endswith("Cell")
    assert isinstance(params, jaxrnn.Stack) != is_cell  # layered modules become stacks
    arrays = jaxrnn.to_torch(params)
    expected = module.state_dict()
    assert list(arrays) == list(expected)
    for name, tensor in expected.items():
        assert arrays[name].dtype == np.float32
        # writable copies: torch.from_numpy warns about read-only arrays (once per process,
        # so the flags are the real check)
        assert arrays[name].flags.writeable and arrays[name].flags.c_contiguous, name
        np.testing.assert_array_equal(arrays[name], tensor.numpy(), err_msg=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)


def test_init_params_loads_into_torch_and_computes_the_same():
    """The other direction: jaxrnn params exported with ``to_torch`` drive an ``nn.GRU``."""
    params = jaxrnn.init_params(
        jax.random.key(0), "gru", INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True,
        bias_init=jax.nn.initializers.normal(0.5),
    )  # fmt: skip
    module = nn.GRU(INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True)
    module.load_state_dict(  # the documented one line
        {k: torch.from_numpy(v) for k, v in jaxrnn.to_torch(params).items()}, strict=True
    )
    xs = random((NUM_STEPS, BATCH, INPUT_SIZE), 11)
    with torch.no_grad():
        out, h_n = module(torch.tensor(xs))
    carry, ys = jaxrnn.unroll(params, None, xs)
    assert_close(ys, out.numpy(), "outputs")
    assert_close(carry_to_torch(params, carry)[0], h_n.numpy(), "h_n")


def test_a_module_that_drops_everything_is_refused():
    """PyTorch takes ``dropout=1.0``; jaxrnn's ``1 / (1 - rate)`` scaling has no value there."""
    module = torch.nn.GRU(3, 4, num_layers=2, dropout=1.0)
    with pytest.raises(
        ValueError, match=r"^from_torch: module.dropout must be in \[0, 1\); got 1.0$"
    ):
        jaxrnn.from_torch(module)
