"""PyTorch interop: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and their ``*Cell`` modules.

Duck-typed: a module is read through ``type(module).__name__``, its configuration
attributes and ``state_dict()``; jaxrnn never imports torch. Weight layouts:
PyTorch stores ``weight_ih`` as ``(gates * hidden, input)`` and computes ``x W^T``;
jaxrnn stores ``w_x = weight_ih.T`` and computes ``x @ w_x``. Gate orders are the same
(LSTM i, f, g, o; GRU r, z, n), and both keep two biases, so conversion is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import fail
from jaxrnn.cells import GRUParams, LSTMParams, LSTMState, RNNParams
from jaxrnn.composites import Bidirectional, BidirectionalState, Stack, stack

__all__ = ["carry_from_torch", "carry_to_torch", "from_torch", "to_torch"]

_LAYERED = ("RNN", "LSTM", "GRU")
_CELLS = ("RNNCell", "LSTMCell", "GRUCell")
_DIRECTIONS = ("", "_reverse")


def _to_numpy(tensor: Any) -> np.ndarray:
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


def _cell_from_arrays(kind: str, arrays: Mapping[str, np.ndarray], suffix: str, **static):
    def get(name: str) -> jax.Array | None:
        value = arrays.get(name + suffix)
        return None if value is None else jnp.asarray(value)

    w_x, w_h = (
        jnp.asarray(arrays["weight_ih" + suffix]).T,
        jnp.asarray(arrays["weight_hh" + suffix]).T,
    )
    b_x, b_h = get("bias_ih"), get("bias_hh")
    if kind == "LSTM":
        w_hr = get("weight_hr")
        w_proj = None if w_hr is None else w_hr.T
        return LSTMParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h, w_proj=w_proj)
    if kind == "GRU":
        return GRUParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h, reset_after=True)
    return RNNParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h, **static)


def from_torch(module: Any) -> Any:
    """Params equal to a PyTorch recurrent module's weights.

    A layered module (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``, even with one layer) becomes a
    :class:`~jaxrnn.Stack` of layers, each a cell or a :class:`~jaxrnn.Bidirectional`
    pair, with the module's ``dropout``; a cell module (``nn.RNNCell``, ``nn.LSTMCell``,
    ``nn.GRUCell``) becomes a bare cell. ``nonlinearity``, ``bias`` and LSTM
    ``proj_size`` carry over. ``to_torch(from_torch(m))`` gives back ``m.state_dict()``.

    Args:
      module: a PyTorch module of one of the six types above (duck-typed by class name).

    Returns:
      jaxrnn params that compute what the module computes.

    Example:
      >>> import torch, jaxrnn  # doctest: +SKIP
      >>> params = jaxrnn.from_torch(torch.nn.LSTM(3, 8, num_layers=2))  # doctest: +SKIP
    """
    kind = type(module).__name__
    if kind not in _LAYERED + _CELLS or not hasattr(module, "state_dict"):
        fail(
            "from_torch",
            "module",
            "be a torch nn.RNN, nn.LSTM, nn.GRU, nn.RNNCell, nn.LSTMCell or nn.GRUCell",
            kind,
            TypeError,
        )
    arrays = {name: _to_numpy(t) for name, t in module.state_dict().items()}
    static = {}
    if kind.startswith("RNN"):
        static["activation"] = module.nonlinearity
    if kind in _CELLS:
        return _cell_from_arrays(kind[: -len("Cell")], arrays, "", **static)
    if getattr(module, "batch_first", False):
        # Weights are layout-independent; only the data layout differs. Say so once here
        # rather than silently: jaxrnn is time-major.
        pass
    layers = []
    for k in range(module.num_layers):
        cells = [
            _cell_from_arrays(kind, arrays, f"_l{k}{d}", **static)
            for d in _DIRECTIONS[: 2 if module.bidirectional else 1]
        ]
        layers.append(Bidirectional(*cells) if module.bidirectional else cells[0])
    return stack(layers, dropout=float(module.dropout))


def _cell_to_arrays(cell: Any, suffix: str, where: str) -> dict[str, np.ndarray]:
    if isinstance(cell, GRUParams) and not cell.reset_after:
        fail(
            "to_torch",
            where,
            "be a GRU with reset_after=True (PyTorch's form)",
            "reset_after=False",
        )
    if not isinstance(cell, (RNNParams, LSTMParams, GRUParams)):
        fail("to_torch", where, "be rnn, lstm or gru params", type(cell).__name__, TypeError)
    out: dict[str, Any] = {"weight_ih": cell.w_x.T, "weight_hh": cell.w_h.T}
    if cell.b_x is not None:
        out["bias_ih"], out["bias_hh"] = cell.b_x, cell.b_h
    if isinstance(cell, LSTMParams) and cell.w_proj is not None:
        out["weight_hr"] = cell.w_proj.T
    return {name + suffix: np.asarray(value) for name, value in out.items()}


def to_torch(params: Any) -> dict[str, np.ndarray]:
    """Arrays named and shaped like the PyTorch module's ``state_dict()``.

    A :class:`~jaxrnn.Stack` maps to a layered module (``weight_ih_l0``,
    ``weight_hh_l0_reverse``, ...), a bare :class:`~jaxrnn.Bidirectional` to a one-layer
    layered module, a bare cell to a ``*Cell`` module (``weight_ih``, ...). Works on
    gradient pytrees too (they have the params' types), so gradients compare key by key.
    Load the result with ``module.load_state_dict({k: torch.from_numpy(v) ...})``.

    Args:
      params: params from :func:`from_torch` or :func:`~jaxrnn.init_params` (GRU with
        ``reset_after=True``; an LSTM projection only inside a layered module).

    Returns:
      ``dict[str, numpy.ndarray]``.

    Example:
      >>> import jax, jaxrnn
      >>> arrays = jaxrnn.to_torch(jaxrnn.init_params(jax.random.key(0), "gru", 3, 4))
      >>> {name: a.shape for name, a in arrays.items()}
      {'weight_ih': (12, 3), 'weight_hh': (12, 4), 'bias_ih': (12,), 'bias_hh': (12,)}
    """
    if isinstance(params, (RNNParams, LSTMParams, GRUParams)):
        if isinstance(params, LSTMParams) and params.w_proj is not None:
            fail(
                "to_torch",
                "params",
                "be a cell without projection (torch's LSTMCell has "
                "none); put it in jaxrnn.stack([...]) for nn.LSTM",
                "proj_size > 0",
            )
        return _cell_to_arrays(params, "", "params")
    if isinstance(params, Stack):
        layers = params.layers
    elif isinstance(params, Bidirectional):
        layers = (params,)
    else:
        fail(
            "to_torch",
            "params",
            "be a cell, a Stack or a Bidirectional",
            type(params).__name__,
            TypeError,
        )
    out: dict[str, np.ndarray] = {}
    for k, layer in enumerate(layers):
        cells = (layer.forward, layer.backward) if isinstance(layer, Bidirectional) else (layer,)
        for cell, direction in zip(cells, _DIRECTIONS, strict=False):
            out.update(_cell_to_arrays(cell, f"_l{k}{direction}", f"layers[{k}]"))
    return out


def _layer_cells(params: Any) -> list[Any]:
    """Cells in PyTorch's ``h_n`` order: layer by layer, forward before backward."""
    layers = params.layers if isinstance(params, Stack) else (params,)
    cells = []
    for layer in layers:
        cells += [layer.forward, layer.backward] if isinstance(layer, Bidirectional) else [layer]
    return cells


def carry_to_torch(params: Any, carry: Any) -> tuple[jax.Array, ...]:
    """PyTorch's final state ``h_n`` (and ``c_n`` for an LSTM) from a jaxrnn carry.

    Shapes ``(num_layers * num_directions, *batch, size)``, as ``nn.LSTM`` returns them.

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4, num_layers=2)
      >>> h_n, c_n = carry_to_torch(params, jaxrnn.init_carry(params, (5,)))
      >>> h_n.shape
      (2, 5, 4)
    """
    layers = params.layers if isinstance(params, Stack) else (params,)
    carries = carry if isinstance(params, Stack) else (carry,)
    flat = []
    for layer, layer_carry in zip(layers, carries, strict=True):
        if isinstance(layer, Bidirectional):
            flat += [layer_carry.forward, layer_carry.backward]
        else:
            flat.append(layer_carry)
    if isinstance(flat[0], LSTMState):
        return jnp.stack([s.h for s in flat]), jnp.stack([s.c for s in flat])
    return (jnp.stack(flat),)


def carry_from_torch(params: Any, h0: Any, c0: Any = None) -> Any:
    """A jaxrnn carry from PyTorch's ``h_0`` (and ``c_0``), the inverse of
    :func:`carry_to_torch`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4, num_layers=2)
      >>> carry = carry_from_torch(params, jnp.ones((2, 5, 4)))
      >>> len(carry), carry[0].shape
      (2, (5, 4))
    """
    cells = _layer_cells(params)
    h0 = jnp.asarray(h0)
    if h0.shape[0] != len(cells):
        fail(
            "carry_from_torch",
            "h0",
            f"have {len(cells)} entries on axis 0 (num_layers * num_directions)",
            str(tuple(h0.shape)),
        )
    is_lstm = isinstance(cells[0], LSTMParams)
    if is_lstm and c0 is None:
        fail("carry_from_torch", "c0", "be given for an LSTM", "None")
    states = [LSTMState(h0[i], jnp.asarray(c0)[i]) if is_lstm else h0[i] for i in range(len(cells))]
    layers = params.layers if isinstance(params, Stack) else (params,)
    out: list[Any] = []
    i = 0
    for layer in layers:
        if isinstance(layer, Bidirectional):
            out.append(BidirectionalState(states[i], states[i + 1]))
            i += 2
        else:
            out.append(states[i])
            i += 1
    return tuple(out) if isinstance(params, Stack) else out[0]
