"""PyTorch interop: ``nn.RNN``/``nn.LSTM``/``nn.GRU`` and their ``*Cell`` modules.

Duck-typed: a module is read through ``type(module).__name__``, its configuration
attributes and ``state_dict()``; jaxrnn never imports torch. Weight layouts:
PyTorch stores ``weight_ih`` as ``(gates * hidden, input)`` and computes ``x W^T``;
jaxrnn stores ``w_x = weight_ih.T`` and computes ``x @ w_x``. Gate orders are the same
(LSTM i, f, g, o; GRU r, z, n), and both keep two biases, so conversion is exact.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from jaxrnn.cells import GRUParams, LSTMParams, LSTMState, RNNParams
from jaxrnn.core.checks import check_choice, fail
from jaxrnn.core.composites import Bidirectional, BidirectionalState, Stack, bidirectional, stack
from jaxrnn.core.unrolling import check_carry

__all__ = [
    "carry_from_torch",
    "carry_to_torch",
    "from_state_dict",
    "from_torch",
    "load_torch_state_dict",
    "to_torch",
]

_LAYERED = ("RNN", "LSTM", "GRU")
_CELLS = ("RNNCell", "LSTMCell", "GRUCell")
_DIRECTIONS = ("", "_reverse")


def _to_numpy(tensor: Any) -> np.ndarray:
    if hasattr(tensor, "detach"):
        tensor = tensor.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: ml_dtypes' one
            return tensor.float().numpy().astype(ml_dtypes.bfloat16)  # exact both ways
        tensor = tensor.numpy()
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
    [`Stack`][jaxrnn.Stack] of layers, each a cell or a [`Bidirectional`][jaxrnn.Bidirectional]
    pair, with the module's ``dropout``; a cell module (``nn.RNNCell``, ``nn.LSTMCell``,
    ``nn.GRUCell``) becomes a bare cell. ``nonlinearity``, ``bias`` and LSTM
    ``proj_size`` carry over. ``to_torch(from_torch(m))`` gives back ``m.state_dict()``.

    Weights do not depend on the data layout: a ``batch_first=True`` module converts like
    any other, and its ``(batch, time, features)`` inputs become jaxrnn's time-major
    ``xs = x.swapaxes(0, 1)`` (or ``jax.vmap(..., in_axes=0)`` of a per-sequence call).

    A module with ``dropout=1.0`` (which PyTorch accepts) is refused: jaxrnn's dropout
    scales what it keeps by ``1 / (1 - rate)``, which has no value at rate 1.

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
    layers = []
    for k in range(module.num_layers):
        cells = [
            _cell_from_arrays(kind, arrays, f"_l{k}{d}", **static)
            for d in _DIRECTIONS[: 2 if module.bidirectional else 1]
        ]
        layers.append(Bidirectional(*cells) if module.bidirectional else cells[0])
    if not 0 <= module.dropout < 1:
        # PyTorch takes 1.0 (every input between layers zeroed in training); jaxrnn's
        # dropout scales what it keeps by 1 / (1 - rate), which has no value at rate 1.
        fail("from_torch", "module.dropout", "be in [0, 1)", repr(module.dropout))
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
    # np.array copies: np.asarray of a jax.Array is a read-only view, which torch.from_numpy
    # warns about and which would alias JAX's buffer.
    return {name + suffix: np.array(value) for name, value in out.items()}


def to_torch(params: Any) -> dict[str, np.ndarray]:
    """Arrays named and shaped like the PyTorch module's ``state_dict()``, ready to load.

    For each cell (layer ``k``, direction ``d``: ``""`` or ``"_reverse"``), with
    ``G`` gates (RNN 1, GRU 3, LSTM 4), hidden size ``H`` and input size ``I``:

    $$
    \\mathrm{weight\\_ih} = W_x^\\top \\in \\mathbb{R}^{GH \\times I}, \\quad
    \\mathrm{weight\\_hh} = W_h^\\top \\in \\mathbb{R}^{GH \\times P}, \\quad
    \\mathrm{bias\\_ih} = b_x, \\quad \\mathrm{bias\\_hh} = b_h, \\quad
    \\mathrm{weight\\_hr} = W_{proj}^\\top \\in \\mathbb{R}^{P \\times H}
    $$

    named ``weight_ih_l{k}{d}`` etc. in a layered module, ``weight_ih`` etc. in a cell
    module; ``P`` is the LSTM's ``proj_size`` (``H`` without projection). A
    [`Stack`][jaxrnn.Stack] maps to a layered module, a bare
    [`Bidirectional`][jaxrnn.Bidirectional] to a one-layer layered module, a bare cell to a
    ``*Cell`` module. Works on gradient pytrees too (they have the params' types), so
    gradients compare key by key.

    Every array is a fresh, writable, C-contiguous NumPy copy, owned by nobody else, so
    ``torch.from_numpy`` takes it without a warning and without sharing memory with JAX.
    ``load_state_dict`` wants tensors and jaxrnn never imports torch, so loading is::

        module.load_state_dict({k: torch.from_numpy(v) for k, v in to_torch(params).items()})

    (``torch.from_numpy`` refuses ``ml_dtypes.bfloat16`` arrays: convert those with
    ``v.astype(np.float32)``, which is exact; ``load_state_dict`` casts to the module's
    dtype.)

    Args:
      params: params from [`from_torch`][jaxrnn.interop.torch.from_torch] or
        [`init_params`][jaxrnn.init_params] (GRU with ``reset_after=True``; an LSTM projection only
        inside a layered module).

    Returns:
      ``dict[str, numpy.ndarray]``, in the order of the module's ``state_dict()``.

    Example:
      >>> import jax, jaxrnn
      >>> arrays = jaxrnn.to_torch(jaxrnn.init_params(jax.random.key(0), "gru", 3, 4))
      >>> {name: a.shape for name, a in arrays.items()}
      {'weight_ih': (12, 3), 'weight_hh': (12, 4), 'bias_ih': (12,), 'bias_hh': (12,)}
      >>> all(a.flags.writeable and a.flags.c_contiguous for a in arrays.values())
      True
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


def _layer_cells(params: Any, where: str | None = None) -> list[Any]:
    """Cells in PyTorch's ``h_n`` order: layer by layer, forward before backward. With
    ``where``, they must be cells of one PyTorch kind (RNN, LSTM or GRU)."""
    layers = params.layers if isinstance(params, Stack) else (params,)
    cells = []
    for layer in layers:
        cells += [layer.forward, layer.backward] if isinstance(layer, Bidirectional) else [layer]
    kinds = {type(cell) for cell in cells}
    if where is not None and (len(kinds) != 1 or not kinds <= {RNNParams, LSTMParams, GRUParams}):
        names = ", ".join(sorted(kind.__name__ for kind in kinds))
        fail(where, "params", "hold cells of one PyTorch kind (RNN, LSTM or GRU)", names)
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
    _layer_cells(params, "carry_to_torch")
    leaves = jax.tree.leaves(carry)
    batch_shape = jnp.shape(leaves[0])[:-1] if leaves else ()
    check_carry("carry_to_torch", params, carry, batch_shape)
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
    [`carry_to_torch`][jaxrnn.interop.torch.carry_to_torch].

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4, num_layers=2)
      >>> carry = carry_from_torch(params, jnp.ones((2, 5, 4)))
      >>> len(carry), carry[0].shape
      (2, (5, 4))
    """
    cells = _layer_cells(params, "carry_from_torch")
    h0 = jnp.asarray(h0)
    if h0.ndim < 2:
        expected = "have shape (num_layers * num_directions, *batch, size)"
        fail("carry_from_torch", "h0", expected, str(tuple(h0.shape)))
    if h0.shape[0] != len(cells):
        expected = f"have {len(cells)} entries on axis 0 (num_layers * num_directions)"
        fail("carry_from_torch", "h0", expected, str(tuple(h0.shape)))
    is_lstm = isinstance(cells[0], LSTMParams)
    if is_lstm and c0 is None:
        fail("carry_from_torch", "c0", "be given for an LSTM", "None")
    if not is_lstm and c0 is not None:
        fail("carry_from_torch", "c0", "be None: only an LSTM has a cell state", "an array")
    if is_lstm:
        c0 = jnp.asarray(c0)
        if c0.shape[:-1] != h0.shape[:-1]:
            expected = (
                f"have shape {tuple(h0.shape[:-1])} + (hidden_size,), as h0 but its last axis"
            )
            fail("carry_from_torch", "c0", expected, str(tuple(c0.shape)))
    states = [LSTMState(h0[i], c0[i]) if is_lstm else h0[i] for i in range(len(cells))]
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
    carry = tuple(out) if isinstance(params, Stack) else out[0]
    check_carry("carry_from_torch", params, carry, tuple(h0.shape[1:-1]), "(h0, c0)")
    return carry


# --- state_dicts without torch ------------------------------------------------------------

_STATE_DICT_NAME = re.compile(
    r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(?:_l(\d+)(_reverse)?)?$"
)
_KINDS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _infer_kind(where: str, arrays: Mapping[str, np.ndarray], suffix: str) -> str:
    """``"lstm"``/``"gru"``/``"rnn"`` from the shape of ``weight_hh``: (gates * hidden, out)."""
    if "weight_hr" + suffix in arrays:
        return "lstm"
    rows, cols = np.shape(arrays["weight_hh" + suffix])
    gates = {4: "lstm", 3: "gru", 1: "rnn"}
    if rows % cols or rows // cols not in gates:
        fail(
            where,
            f"weight_hh{suffix}",
            "have shape (gates * hidden, hidden), gates 1, 3 or 4",
            str((rows, cols)),
        )
    return gates[rows // cols]


def from_state_dict(
    state_dict: Mapping[str, Any],
    *,
    cell: str | None = None,
    prefix: str = "",
    nonlinearity: str = "tanh",
    dropout: float = 0.0,
) -> Any:
    """Params from a PyTorch RNN's ``state_dict`` (tensors or NumPy arrays), without torch.

    The structure is read from the names, as ``from_torch`` reads it from the module:
    ``weight_ih_l{k}[_reverse]`` names give a [`Stack`][jaxrnn.Stack] of ``k + 1`` layers
    (bidirectional when ``_reverse`` names exist), bare ``weight_ih`` names give a cell
    (``nn.LSTMCell`` etc.). The cell type follows from ``weight_hh``'s shape
    ``(gates * hidden, hidden)``: 4 gates LSTM, 3 GRU, 1 RNN (``weight_hr`` means an LSTM
    with projection). What a state_dict does not store must be passed: an RNN's
    ``nonlinearity`` and the ``dropout`` between layers.

    Args:
      state_dict: name -> array, e.g. ``load_torch_state_dict(path)`` or
        ``module.state_dict()``; keys not starting with ``prefix`` are ignored.
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"`` to check the inferred type; ``None`` infers.
      prefix: the RNN's name inside a larger model's state_dict, e.g. ``"encoder.rnn."``.
      nonlinearity: ``"tanh"`` or ``"relu"`` for an RNN (not stored in state_dicts).
      dropout: the rate between layers of a stack (not stored in state_dicts).

    Returns:
      What ``from_torch`` returns for the module that produced the state_dict.

    Example:
      >>> import numpy as np
      >>> sd = {"lstm.weight_ih_l0": np.zeros((16, 3)), "lstm.weight_hh_l0": np.zeros((16, 4)),
      ...       "head.weight": np.zeros((2, 4))}
      >>> params = from_state_dict(sd, prefix="lstm.")
      >>> type(params.layers[0]).__name__, params.output_size
      ('LSTMParams', 4)
    """
    where = "from_state_dict"
    if not isinstance(state_dict, Mapping):
        fail(
            where,
            "state_dict",
            "be a mapping of names to arrays",
            type(state_dict).__name__,
            TypeError,
        )
    arrays = {
        name[len(prefix) :]: _to_numpy(value)
        for name, value in state_dict.items()
        if name.startswith(prefix)
    }
    matches = {name: _STATE_DICT_NAME.match(name) for name in arrays}
    unknown = sorted(name for name, m in matches.items() if m is None)
    if unknown or not arrays:
        fail(
            where,
            "state_dict",
            f"hold only RNN weights (weight_ih_l0, ...) under prefix {prefix!r}",
            f"{', '.join(prefix + n for n in unknown[:4]) or 'no keys'}",
        )
    check_choice(where, "nonlinearity", nonlinearity, ("tanh", "relu"))
    found = [m for m in matches.values() if m is not None]
    layered = {m.group(2) is not None for m in found}
    if len(layered) != 1:
        fail(
            where,
            "state_dict",
            "use either layered names (weight_ih_l0) or cell names (weight_ih), not both",
            ", ".join(sorted(arrays)),
        )
    is_layered = layered.pop()
    is_bidirectional = any(m.group(3) for m in found)
    if is_layered:
        num_layers = 1 + max(int(m.group(2)) for m in found)
        directions = _DIRECTIONS[: 2 if is_bidirectional else 1]
        suffixes = [f"_l{k}{d}" for k in range(num_layers) for d in directions]
    else:
        suffixes = [""]
    for suffix in suffixes:
        for name in ("weight_ih", "weight_hh"):
            if name + suffix not in arrays:
                fail(
                    where,
                    "state_dict",
                    f"contain {prefix}{name}{suffix}",
                    "it is missing",
                    KeyError,
                )
    for suffix in suffixes:
        biases = [name + suffix for name in ("bias_ih", "bias_hh") if name + suffix in arrays]
        if len(biases) == 1:
            fail(
                where,
                "state_dict",
                f"contain both {prefix}bias_ih{suffix} and {prefix}bias_hh{suffix} or neither",
                f"only {prefix}{biases[0]}",
            )
    kind = _infer_kind(where, arrays, suffixes[0])
    if cell is not None:
        check_choice(where, "cell", cell, tuple(_KINDS))
        if cell != kind:
            fail(where, "cell", f"match the weights' shapes ({kind!r})", repr(cell))
    static = {"activation": nonlinearity} if kind == "rnn" else {}
    cells = [_cell_from_arrays(_KINDS[kind], arrays, s, **static) for s in suffixes]
    if not is_layered:
        return cells[0]
    if is_bidirectional:
        layers = [bidirectional(f, b) for f, b in zip(cells[::2], cells[1::2], strict=True)]
    else:
        layers = cells
    return stack(layers, dropout=float(dropout))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a ``torch.save`` zip archive's ``data.pkl`` into NumPy arrays.

    Only the globals a state_dict of plain tensors needs are allowed (an ordered dict, the
    tensor rebuild functions, the typed storage classes); anything else, which could run
    arbitrary code, raises ``pickle.UnpicklingError``.
    """

    def __init__(self, file: Any, archive: zipfile.ZipFile, root: str, byteorder: str):
        super().__init__(file)
        self._archive, self._root, self._byteorder = archive, root, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_parameter"):
            return getattr(self, name)
        if module == "torch" and name in _TORCH_STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"load_torch_state_dict: the file must hold a state_dict of plain tensors; got a "
            f"reference to {module}.{name}, which jaxrnn does not load without torch (load it "
            "with torch.load(path, weights_only=True) and use from_state_dict)"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"load_torch_state_dict: unknown storage {pid!r}")
        if key not in self._storages:
            dtype = np.dtype(_TORCH_STORAGE_DTYPES[storage_type.name])
            dtype = dtype.newbyteorder("<" if self._byteorder == "little" else ">")
            raw = self._archive.read(f"{self._root}/data/{key}")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]

    @staticmethod
    def _rebuild_tensor_v2(storage, offset, size, stride, *_unused) -> np.ndarray:
        itemsize = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
        )
        return np.array(view, dtype=storage.dtype.newbyteorder("="))

    @staticmethod
    def _rebuild_parameter(data, *_unused) -> np.ndarray:
        return data


class _StorageType(NamedTuple):
    name: str  # e.g. "FloatStorage"


_TORCH_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``torch.save(module.state_dict(), path)`` file into NumPy arrays, without torch.

    Reads the zip format that ``torch.save`` writes since PyTorch 1.6: ``<name>/data.pkl``
    (a pickle whose tensors refer to storages by key) and ``<name>/data/<key>`` (each
    storage's raw bytes). The pickle is read with an unpickler that rebuilds tensors as
    NumPy arrays (dtype, shape, strides, offset) and refuses every other global, so a
    file cannot run code (the device a tensor was saved from is ignored: storages are raw
    bytes). Limits: plain dense tensors in a (nested) dict only;
    the legacy non-zip format (``_use_new_zipfile_serialization=False``), quantized or
    sparse tensors and pickled modules raise an error that says to use torch.

    Args:
      path: the file written by ``torch.save``.

    Returns:
      The state_dict with NumPy arrays for tensors (``bfloat16`` via ``ml_dtypes``).

    Example:
      >>> import torch  # doctest: +SKIP
      >>> torch.save(torch.nn.GRU(3, 4).state_dict(), "gru.pt")  # doctest: +SKIP
      >>> state_dict = load_torch_state_dict("gru.pt")  # no torch needed from here on
      ... # doctest: +SKIP
      >>> state_dict["weight_hh_l0"].shape  # doctest: +SKIP
      (12, 4)
      >>> params = from_state_dict(state_dict)  # doctest: +SKIP
    """
    where = "load_torch_state_dict"
    if not zipfile.is_zipfile(path):
        fail(
            where,
            "path",
            "be a zip archive written by torch.save (PyTorch >= 1.6; for the "
            "legacy format use torch.load and from_state_dict)",
            repr(os.fspath(path)),
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            fail(where, "path", "hold exactly one <name>/data.pkl", ", ".join(pickles) or "none")
        root = pickles[0][: -len("/data.pkl")]
        byteorder = "little"
        if f"{root}/byteorder" in archive.namelist():
            byteorder = archive.read(f"{root}/byteorder").decode().strip()
        with archive.open(pickles[0]) as file:
            loaded = _StateDictUnpickler(file, archive, root, byteorder).load()
    if isinstance(loaded, Mapping):
        return dict(loaded)
    fail(where, "path", "hold a state_dict (a dict of tensors)", type(loaded).__name__)
