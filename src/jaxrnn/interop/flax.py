"""Flax interop: jaxrnn layers as Flax modules, and Flax's cells' weights as jaxrnn params.

Two directions:

- **jaxrnn inside Flax**: [`RNN`][jaxrnn.interop.flax.RNN] (an ``nnx.Module``) and
  [`LinenRNN`][jaxrnn.interop.flax.LinenRNN] (a ``linen.Module``) hold jaxrnn params as Flax params
  and call [`unroll`][jaxrnn.unroll], so a jaxrnn layer drops into a Flax model, its optimizer and
  its checkpoints.
- **Flax's cells as jaxrnn params**: [`from_flax`][jaxrnn.interop.flax.from_flax] /
  [`to_flax`][jaxrnn.interop.flax.to_flax] convert the weights of ``LSTMCell``,
  ``OptimizedLSTMCell`` and ``GRUCell``, from ``flax.linen`` and from ``flax.nnx``;
  [`carry_from_flax`][jaxrnn.interop.flax.carry_from_flax] /
  [`carry_to_flax`][jaxrnn.interop.flax.carry_to_flax] convert the carry (Flax's LSTM carry is the
  tuple ``(c, h)``; jaxrnn's is ``LSTMState(h, c)``).

Weight layouts (Flax computes ``x @ kernel``, as jaxrnn does, gates in the same order):

================================  ============================================  =================
Flax cell                         params                                        biases
================================  ============================================  =================
linen ``LSTMCell``,               ``ii if ig io`` (kernel ``(in, H)``),         on ``h*`` only
linen ``OptimizedLSTMCell``       ``hi hf hg ho`` (kernel ``(H, H)``, bias)
nnx ``LSTMCell``                  same, with ``if_`` for ``if``                 on ``h*`` only
nnx ``OptimizedLSTMCell``         ``dense_i`` ``(in, 4H)``, ``dense_h``         on ``dense_h``
                                  ``(H, 4H)`` + bias
linen ``GRUCell``                 ``ir iz in`` (kernel, bias), ``hr hz``        ``i*`` and ``hn``
                                  (kernel), ``hn`` (kernel, bias)
nnx ``GRUCell``                   ``dense_i`` ``(in, 3H)`` + bias, ``dense_h``  on ``dense_i``
                                  ``(H, 3H)``                                   only
================================  ============================================  =================

Flax's GRU is jaxrnn's (and PyTorch's) ``reset_after=True`` GRU,
``n = tanh(x W_in + b_in + r * (h W_hn + b_hn))``, so every Flax cell converts to jaxrnn
exactly. The other way, jaxrnn's two biases are summed where Flax keeps one (exact up to
one float rounding of ``b_x + b_h``), and some jaxrnn params have no Flax form:
an LSTM with a projection, a GRU with ``reset_after=False``, and for nnx's ``GRUCell``
(which has no ``b_hn``) a GRU whose ``b_h``'s n-gate part is not zero.
[`to_flax`][jaxrnn.interop.flax.to_flax] raises a ``ValueError`` for those. Flax cells built with a
``gate_fn`` or ``activation_fn`` other than sigmoid and tanh compute something else;
[`from_flax`][jaxrnn.interop.flax.from_flax] checks this on nnx modules (a linen params dict does
not record it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import FrozenDict
from jax.typing import ArrayLike

from jaxrnn.cells import GRUParams, LSTMParams, LSTMState
from jaxrnn.core.checks import fail
from jaxrnn.core.initialization import init_params
from jaxrnn.core.params import describe
from jaxrnn.core.unrolling import unroll as _unroll  # RNN.__call__ has an argument `unroll`

__all__ = ["RNN", "LinenRNN", "carry_from_flax", "carry_to_flax", "from_flax", "to_flax"]

_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")
_LINEN_LSTM_NAMES = {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}
_NNX_LSTM_NAMES = {"ii", "if_", "ig", "io", "hi", "hf", "hg", "ho"}  # `if` is a keyword

#: The Flax cell classes with a jaxrnn form, by (``"linen"`` | ``"nnx"``, class name).
FLAX_CELLS = {
    ("linen", "LSTMCell"): linen.LSTMCell,
    ("linen", "OptimizedLSTMCell"): linen.OptimizedLSTMCell,
    ("linen", "GRUCell"): linen.GRUCell,
    ("nnx", "LSTMCell"): nnx.LSTMCell,
    ("nnx", "OptimizedLSTMCell"): nnx.OptimizedLSTMCell,
    ("nnx", "GRUCell"): nnx.GRUCell,
}


def _flax_cell_key(where: str, cell: Any) -> tuple[str, str]:
    cls = cell if isinstance(cell, type) else type(cell)
    for key, known in FLAX_CELLS.items():
        if cls is known:
            return key
    names = ", ".join(f"flax.{api}.{name}" for api, name in FLAX_CELLS)
    fail(where, "cell", f"be one of {names} (class or instance)", repr(cls), TypeError)


def _pure(where: str, variables: Any) -> dict:
    """A plain nested dict of arrays from an nnx module, an nnx State or a linen dict."""
    if isinstance(variables, nnx.Module):
        key = _flax_cell_key(where, variables)
        gate_fn = getattr(variables, "gate_fn", None)
        if (
            gate_fn is not jax.nn.sigmoid
            or getattr(variables, "activation_fn", None) is not jnp.tanh
        ):
            fail(
                where,
                "variables",
                "use gate_fn=sigmoid and activation_fn=tanh (jaxrnn's equations)",
                f"a flax.{key[0]}.{key[1]} with other functions",
            )
        variables = nnx.state(variables, nnx.Param)
    if isinstance(variables, nnx.State):
        variables = nnx.to_pure_dict(variables)
    if isinstance(variables, FrozenDict):
        variables = variables.unfreeze()
    if not isinstance(variables, Mapping):
        fail(
            where,
            "variables",
            "be a Flax cell's params (linen dict, nnx module or nnx State)",
            type(variables).__name__,
            TypeError,
        )
    if set(variables) == {"params"}:
        variables = variables["params"]
    return dict(variables)


def _kernel(tree: Mapping, name: str) -> jax.Array:
    return jnp.asarray(tree[name]["kernel"])


def from_flax(variables: Any) -> LSTMParams | GRUParams:
    """jaxrnn params equal to a Flax ``LSTMCell``, ``OptimizedLSTMCell`` or ``GRUCell``.

    Flax computes each gate with its own ``Dense`` layers, e.g. for the LSTM's forget gate
    ``f = x W_if + h W_hf + b_hf``; jaxrnn concatenates the gates' kernels,
    ``W_x = [W_ii | W_if | W_ig | W_io]`` (and ``W_h`` likewise), so that one matmul
    computes all gates. The cell is recognized from the names of its params (see the
    module docstring for the layouts). Flax's single bias goes where Flax adds it
    (``b_h`` for an LSTM; ``b_x`` and the n-gate part of ``b_h`` for a GRU), the other
    bias is zeros. The conversion is exact: ``cell_step(from_flax(v),
    carry_from_flax(c), x)`` computes what the Flax cell computes.

    Args:
      variables: a linen cell's params (``variables["params"]`` or ``variables``), an nnx
        cell module, or its ``nnx.state(cell, nnx.Param)``.

    Returns:
      [`LSTMParams`][jaxrnn.LSTMParams] or [`GRUParams`][jaxrnn.GRUParams] (``reset_after=True``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
      >>> params = from_flax(cell)
      >>> h, x = jnp.ones((2, 4)), jnp.ones((2, 3))
      >>> bool(jnp.allclose(params.step(h, x)[0], cell(h, x)[0], atol=1e-6))
      True
    """
    where = "from_flax"
    tree = _pure(where, variables)
    names = set(tree)
    if names in (_LINEN_LSTM_NAMES, _NNX_LSTM_NAMES):
        forget = "if" if "if" in names else "if_"
        inputs = ["ii", forget, "ig", "io"]
        w_x = jnp.concatenate([_kernel(tree, n) for n in inputs], axis=-1)
        w_h = jnp.concatenate([_kernel(tree, "h" + g) for g in _LSTM_GATES], axis=-1)
        b_h = jnp.concatenate([jnp.asarray(tree["h" + g]["bias"]) for g in _LSTM_GATES])
        return LSTMParams(w_x=w_x, w_h=w_h, b_x=jnp.zeros_like(b_h), b_h=b_h)
    if names == {"ir", "iz", "in", "hr", "hz", "hn"}:
        w_x = jnp.concatenate([_kernel(tree, "i" + g) for g in _GRU_GATES], axis=-1)
        w_h = jnp.concatenate([_kernel(tree, "h" + g) for g in _GRU_GATES], axis=-1)
        b_x = jnp.concatenate([jnp.asarray(tree["i" + g]["bias"]) for g in _GRU_GATES])
        b_hn = jnp.asarray(tree["hn"]["bias"])
        b_h = jnp.concatenate([jnp.zeros((2 * b_hn.shape[0],), b_hn.dtype), b_hn])
        return GRUParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=b_h, reset_after=True)
    if names == {"dense_i", "dense_h"}:
        w_x, w_h = _kernel(tree, "dense_i"), _kernel(tree, "dense_h")
        if "bias" in tree["dense_h"]:  # nnx OptimizedLSTMCell: (H, 4H) + bias on h
            b_h = jnp.asarray(tree["dense_h"]["bias"])
            return LSTMParams(w_x=w_x, w_h=w_h, b_x=jnp.zeros_like(b_h), b_h=b_h)
        b_x = jnp.asarray(tree["dense_i"]["bias"])  # nnx GRUCell: bias on x only
        return GRUParams(w_x=w_x, w_h=w_h, b_x=b_x, b_h=jnp.zeros_like(b_x), reset_after=True)
    fail(
        where,
        "variables",
        "have the params of a Flax LSTMCell, OptimizedLSTMCell or GRUCell",
        "keys " + ", ".join(sorted(names)),
    )


def _bias(b: jax.Array | None, size: int, dtype: Any) -> np.ndarray:
    return np.zeros((size,), dtype) if b is None else np.asarray(b)


def to_flax(params: LSTMParams | GRUParams, cell: Any) -> dict[str, Any]:
    """The params dict of a Flax cell that computes what ``params`` computes.

    For a linen cell the result is the ``"params"`` collection:
    ``cell.apply({"params": to_flax(params, cell)}, carry, x)``. For an nnx cell it is
    the pure dict of its ``nnx.Param`` state: ``nnx.update(cell, to_flax(params, cell))``.
    Biases are folded (``b_x + b_h`` where Flax has one bias), so results agree up to
    float rounding. Runs eagerly (it reads bias values for the nnx ``GRUCell`` check).

    Args:
      params: [`LSTMParams`][jaxrnn.LSTMParams] (no projection) or [`GRUParams`][jaxrnn.GRUParams]
        (``reset_after=True``).
      cell: the Flax cell class or instance, e.g. ``flax.linen.LSTMCell`` or an
        ``nnx.GRUCell``.

    Returns:
      A nested ``dict`` of NumPy arrays, named and shaped as the Flax cell's params.

    Raises:
      ValueError: if ``params`` has no Flax form (see the module docstring).

    Example:
      >>> import jax, jaxrnn, flax.linen as nn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> flax_params = to_flax(params, nn.LSTMCell)
      >>> forget_gate = flax_params["hf"]  # the recurrent Dense of the forget gate
      >>> sorted(flax_params), forget_gate["bias"].shape
      (['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io'], (4,))
    """
    where = "to_flax"
    api, name = _flax_cell_key(where, cell)
    want_lstm = "LSTM" in name
    expected = LSTMParams if want_lstm else GRUParams
    if not isinstance(params, expected):
        fail(
            where,
            "params",
            f"be {expected.__name__} for a Flax {name}",
            type(params).__name__,
            TypeError,
        )
    hidden = params.hidden_size
    dtype = params.w_x.dtype
    w_x, w_h = np.asarray(params.w_x), np.asarray(params.w_h)
    b_x = _bias(params.b_x, w_x.shape[1], dtype)
    b_h = _bias(params.b_h, w_x.shape[1], dtype)
    if isinstance(params, LSTMParams):
        if params.w_proj is not None:
            fail(
                where,
                "params",
                "be an LSTM without projection (Flax has none)",
                f"proj_size={params.output_size}",
            )
        bias = b_x + b_h
        if api == "nnx" and name == "OptimizedLSTMCell":
            return {"dense_i": {"kernel": w_x}, "dense_h": {"kernel": w_h, "bias": bias}}
        blocks = np.split(np.arange(4 * hidden), 4)
        forget = "if_" if api == "nnx" else "if"
        out = {}
        for gate, cols in zip(_LSTM_GATES, blocks, strict=True):
            out[forget if gate == "f" else "i" + gate] = {"kernel": w_x[:, cols]}
            out["h" + gate] = {"kernel": w_h[:, cols], "bias": bias[cols]}
        return out
    if not params.reset_after:
        fail(
            where,
            "params",
            "be a GRU with reset_after=True (Flax applies r after the recurrent matmul)",
            "reset_after=False",
        )
    rz, n = slice(0, 2 * hidden), slice(2 * hidden, 3 * hidden)
    b_in = b_x.copy()
    b_in[rz] += b_h[rz]  # r and z see b_x + b_h; only n keeps b_hn inside r * (...)
    if api == "nnx":
        if np.any(b_h[n] != 0):
            fail(
                where,
                "params",
                "have zero b_h[2*hidden:] (the n-gate's recurrent bias) for "
                "nnx.GRUCell, which has no such bias; use flax.linen.GRUCell",
                "nonzero values",
            )
        return {"dense_i": {"kernel": w_x, "bias": b_in}, "dense_h": {"kernel": w_h}}
    blocks = np.split(np.arange(3 * hidden), 3)
    out = {}
    for gate, cols in zip(_GRU_GATES, blocks, strict=True):
        out["i" + gate] = {"kernel": w_x[:, cols], "bias": b_in[cols]}
        out["h" + gate] = {"kernel": w_h[:, cols]}
    out["hn"]["bias"] = b_h[n]
    return out


def carry_from_flax(carry: Any) -> Any:
    """jaxrnn's carry from a Flax cell's: ``(c, h)`` becomes ``LSTMState(h=h, c=c)``.

    A GRU's carry (one array) is the same in both.

    Example:
      >>> import jax.numpy as jnp
      >>> carry_from_flax((jnp.zeros(4), jnp.ones(4))).h.tolist()
      [1.0, 1.0, 1.0, 1.0]
    """
    if isinstance(carry, LSTMState):
        fail(
            "carry_from_flax",
            "carry",
            "be a Flax carry ((c, h) tuple or array)",
            "an LSTMState (already jaxrnn's)",
            TypeError,
        )
    if isinstance(carry, tuple) and len(carry) == 2:
        c, h = carry
        return LSTMState(h=h, c=c)
    if not isinstance(carry, jax.Array | np.ndarray):
        fail(
            "carry_from_flax",
            "carry",
            "be a Flax carry ((c, h) tuple or array)",
            describe(carry),
            TypeError,
        )
    return carry


def carry_to_flax(carry: Any) -> Any:
    """A Flax cell's carry from jaxrnn's: ``LSTMState(h, c)`` becomes ``(c, h)``.

    Example:
      >>> import jax.numpy as jnp
      >>> c, h = carry_to_flax(LSTMState(h=jnp.ones(4), c=jnp.zeros(4)))
      >>> h.tolist()
      [1.0, 1.0, 1.0, 1.0]
    """
    if isinstance(carry, LSTMState):
        return (carry.c, carry.h)
    if not isinstance(carry, jax.Array | np.ndarray):
        fail(
            "carry_to_flax",
            "carry",
            "be a jaxrnn LSTM or GRU carry (LSTMState or array)",
            describe(carry),
            TypeError,
        )
    return carry


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


class RNN(nnx.Module):
    """A jaxrnn RNN as a Flax NNX module: every params array is an ``nnx.Param``.

    Calling it is ``unroll(self.jaxrnn_params, carry, xs, ...)``, so it takes time-major
    ``xs`` (batch-major, as Flax's ``nn.RNN``, with ``time_major=False``) and returns
    ``(carry, ys)``. The params keep their jaxrnn structure (field
    names, composites), so ``nnx.state(module)`` reads like the params' repr and
    ``nnx.Optimizer(module, tx, wrt=nnx.Param)`` trains them.

    Args:
      params: any jaxrnn params: ``init_params(rngs.params(), ...)``, ``from_torch(...)``,
        ``from_flax(...)``, a [`stack`][jaxrnn.stack] ...

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from flax import nnx
      >>> rngs = nnx.Rngs(0)
      >>> layer = RNN(jaxrnn.init_params(rngs.params(), "lstm", 3, 8, num_layers=2))
      >>> carry, ys = layer(None, jnp.ones((5, 2, 3)), lengths=jnp.array([5, 2]))
      >>> ys.shape, len(jax.tree.leaves(nnx.state(layer, nnx.Param)))
      ((5, 2, 8), 8)
    """

    def __init__(self, params: Any):
        if not hasattr(params, "initial_carry"):
            fail("RNN", "params", "be jaxrnn params", type(params).__name__, TypeError)
        self.params = nnx.data(jax.tree.map(nnx.Param, params))

    @property
    def jaxrnn_params(self) -> Any:
        """The params as a plain jaxrnn pytree of arrays (what ``unroll`` takes)."""
        return jax.tree.map(lambda v: v[...], self.params, is_leaf=_is_variable)

    def __call__(
        self,
        carry: Any,
        xs: ArrayLike,
        *,
        lengths: ArrayLike | None = None,
        reverse: bool = False,
        key: jax.Array | None = None,
        unroll: int | bool = 1,
        remat: bool = False,
        method: Any = "auto",
        time_major: bool = True,
    ) -> tuple[Any, jax.Array]:
        """``unroll(self.jaxrnn_params, carry, xs, ...)``; see [`unroll`][jaxrnn.unroll]."""
        return _unroll(
            self.jaxrnn_params,
            carry,
            xs,
            lengths=lengths,
            reverse=reverse,
            key=key,
            unroll=unroll,
            remat=remat,
            method=method,
            time_major=time_major,
        )


class LinenRNN(linen.Module):
    """A jaxrnn RNN as a Flax linen module: its params are one ``"rnn"`` entry.

    ``init`` creates the params with [`init_params`][jaxrnn.init_params] (``input_size`` from
    ``xs``), so the params collection's ``"rnn"`` entry is a jaxrnn params pytree (e.g.
    [`LSTMParams`][jaxrnn.LSTMParams]); ``apply`` runs [`unroll`][jaxrnn.unroll] and returns
    ``(carry, ys)``.

    Attributes:
      cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
      hidden_size: state size of each layer (and direction).
      num_layers, bidirectional, dropout: as in [`init_params`][jaxrnn.init_params].
      cell_options: the cell's options as a dict, e.g. ``{"proj_size": 4}``.
      unroll_method, unroll, remat: ``unroll``'s ``method``, ``unroll`` and ``remat``
        (``apply``'s own ``method`` argument names the module method to run).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> layer = LinenRNN("gru", hidden_size=8)
      >>> xs = jnp.ones((5, 2, 3))
      >>> variables = layer.init(jax.random.key(0), None, xs)
      >>> params = variables["params"]
      >>> type(params["rnn"]).__name__
      'GRUParams'
      >>> layer.apply(variables, None, xs)[1].shape
      (5, 2, 8)
    """

    cell: str
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    cell_options: Mapping[str, Any] = FrozenDict()
    unroll_method: Any = "auto"  # unroll's method (linen's apply owns the name `method`)
    unroll: int | bool = 1
    remat: bool = False

    @linen.compact
    def __call__(
        self,
        carry: Any,
        xs: ArrayLike,
        *,
        lengths: ArrayLike | None = None,
        reverse: bool = False,
        key: jax.Array | None = None,
        time_major: bool = True,
    ) -> tuple[Any, jax.Array]:
        xs = jnp.asarray(xs)

        def make(key: jax.Array) -> Any:
            return init_params(
                key,
                self.cell,
                xs.shape[-1],
                self.hidden_size,
                num_layers=self.num_layers,
                bidirectional=self.bidirectional,
                dropout=self.dropout,
                **self.cell_options,
            )

        params = self.param("rnn", make)
        return _unroll(
            params,
            carry,
            xs,
            lengths=lengths,
            reverse=reverse,
            key=key,
            unroll=self.unroll,
            remat=self.remat,
            method=self.unroll_method,
            time_major=time_major,
        )
