"""``unroll(..., method="cudnn")``: LSTMs on cuDNN's fused RNN kernel, through
``jax.experimental.rnn``.

cuDNN runs a whole LSTM (every layer, both directions, forward and backward pass) in one
kernel call, with the input projection of all steps done as one large matmul. JAX exposes
it as ``jax.experimental.rnn.lstm`` (with a ``custom_vjp`` whose backward pass is cuDNN's
too). ``method="cudnn"`` maps jaxrnn's params and carries onto it, exactly:

- a single LSTM cell, a [`bidirectional`][jaxrnn.bidirectional] pair of LSTM cells, and a
  [`stack`][jaxrnn.stack] of either run in **one** call (``num_layers`` layers, forward
  and backward pseudo-layers as cuDNN orders them);
- ``lengths`` become cuDNN's ``seq_lengths`` (a length of 0, which cuDNN does not take,
  runs one step and then keeps its initial carry and zero outputs);
- ``reverse=True`` flips each valid prefix before and after the call, which is what
  ``reverse`` means (a reversed bidirectional pair is the flipped pair);
- the top layer of a bidirectional stack may merge with ``"sum"`` or ``"mean"``
  (cuDNN concatenates; the merge is applied to its output); a cell without biases runs
  with zero biases;
- ``(time, ..., features)`` inputs with any batch dims are flattened to cuDNN's
  batch-major ``(batch, time, features)`` and back.

What does not match runs with ``lax.scan`` (``method="sequential"``) instead, never with
different semantics. A composite that cuDNN cannot take in one call (layers of different
hidden sizes, mixed cell types, dropout between layers with a ``key``) runs part by part,
each LSTM part still on cuDNN (dropout between layers is then ``jaxrnn.dropout``, as on
the scan path). A *cell* that cuDNN cannot run at all falls back to ``lax.scan`` and
emits a [`CuDNNFallbackWarning`][jaxrnn.cudnn.CuDNNFallbackWarning] naming the reason:

| reason | why |
|---|---|
| no GPU | ``jax.default_backend()`` is not ``"gpu"`` (the choice is made when tracing) |
| not an LSTM | the kernel is an LSTM (a GRU, an Elman RNN, ... run with ``lax.scan``) |
| ``proj_size`` | ``jax.experimental.rnn`` has no projection |
| dtype | the kernel takes float32 params, inputs and carries only |
| ``remat=True`` | segment recomputation is a ``lax.scan`` feature |
| bfloat16 matmuls | ``jax_default_matmul_precision`` of ``"bfloat16"`` has no cuDNN LSTM mode |
| empty input | a time or batch axis of size 0 |

To turn the fallback into an error, ``warnings.filterwarnings("error",
category=jaxrnn.cudnn.CuDNNFallbackWarning)``; to silence it, ``"ignore"``.

Precision: the kernel follows ``jax_default_matmul_precision`` like every JAX matmul.
Unset, it lets cuDNN use TF32 on Ampere and newer GPUs (relative error about 1e-3);
under ``jax.default_matmul_precision("highest")`` it computes in float32 and matches the
scan path to float32 rounding.

Limits: ``jax.experimental.rnn.lstm`` has no batching rule, so ``method="cudnn"`` does not
run inside ``jax.vmap`` on a GPU (give the batch to ``unroll`` as an ``xs`` axis, which is
what cuDNN wants anyway); under a sharded ``jit`` the kernel is a custom call that XLA
does not partition.

``method="cudnn"`` is opt-in: the default ``"sequential"`` gives the same results on every
backend (no TF32 difference), runs under ``vmap``, and is the reference the tests compare
against.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.experimental.rnn as jax_rnn
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.cells.lstm import LSTMParams
from jaxrnn.core.checks import check_array, check_bool, check_floating, fail, shape_text
from jaxrnn.core.composites import Bidirectional, Stack, stack
from jaxrnn.core.composites import bidirectional as bidirectional_pair
from jaxrnn.core.methods import Method, Run, Sequential, check_unroll

__all__ = ["CuDNN", "CuDNNFallbackWarning", "from_cudnn_weights", "to_cudnn_weights"]


class CuDNNFallbackWarning(UserWarning):
    """``unroll(..., method="cudnn")`` ran a cell with ``lax.scan`` instead of cuDNN.

    The message names the cell type and the reason (no GPU, not an LSTM, ``proj_size``,
    dtype, ...; see ``jaxrnn.cudnn``). The results are those of ``method="sequential"``.
    """


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: ``kernel(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, num_layers,
#: dropout, bidirectional, precision) -> (y, h_n, c_n)``, the signature of
#: ``jax.experimental.rnn.lstm``. ``None``: that function, on a GPU backend. The tests set
#: it to ``jax.experimental.rnn.lstm_ref`` (the same function in plain JAX) to run every
#: step of the dispatch but the kernel itself on CPU.
_KERNEL: Callable[..., tuple[jax.Array, jax.Array, jax.Array]] | None = None


class _Plan(NamedTuple):
    """What cuDNN runs: its pseudo-layers, in its order, and how to read its output."""

    cells: tuple[LSTMParams, ...]  # layer 0 (forward, backward if bidirectional), layer 1, ...
    bidirectional: bool
    top: Bidirectional | None  # the top bidirectional pair, whose merge applies to the output

    @property
    def num_layers(self) -> int:
        return len(self.cells) // (2 if self.bidirectional else 1)

    @property
    def input_size(self) -> int:
        return self.cells[0].w_x.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.cells[0].hidden_size


def _plan(params: Any) -> _Plan | str:
    """``params`` as cuDNN's pseudo-layers, or a phrase saying why they are not."""
    layers = params.layers if type(params) is Stack else (params,)
    bidirectional = type(layers[0]) is Bidirectional
    cells = []
    for i, layer in enumerate(layers):
        if (type(layer) is Bidirectional) != bidirectional:
            return "a stack that mixes bidirectional and unidirectional layers"
        if bidirectional and i < len(layers) - 1 and layer.merge != "concat":
            # cuDNN feeds the next layer the concatenation of both directions.
            return f"merge={layer.merge!r} below the top layer"
        for cell in (layer.forward, layer.backward) if bidirectional else (layer,):
            if type(cell) is not LSTMParams:
                return f"{type(cell).__name__} (the kernel is an LSTM)"
            if cell.w_proj is not None:
                return f"proj_size={cell.output_size} (jax.experimental.rnn has no projection)"
            cells.append(cell)
    sizes = tuple(cell.hidden_size for cell in cells)
    if len(set(sizes)) > 1:
        return f"hidden sizes {sizes} (cuDNN takes one hidden_size)"
    return _Plan(tuple(cells), bidirectional, layers[-1] if bidirectional else None)


def _runtime_reason(params: Any, carry: Any, xs: jax.Array, run: Run, remat: bool) -> str | None:
    """Why this call cannot run on the kernel although ``params`` could; ``None`` if it can."""
    if _KERNEL is None and jax.default_backend() != "gpu":
        return f"no GPU (jax.default_backend() is {jax.default_backend()!r})"
    if run.carry_outputs:
        return "carry outputs (with_carry_outputs needs every step's carry)"
    for leaf in [xs, *jax.tree.leaves(carry), *jax.tree.leaves(params)]:
        if leaf.dtype != jnp.float32:
            return f"dtype {leaf.dtype} (the kernel takes float32 only)"
    if remat:
        return "remat=True (segment recomputation is a lax.scan feature)"
    precision = jax.config.jax_default_matmul_precision  # type: ignore[attr-defined]
    if precision in ("bfloat16", "default", "fastest"):  # what lax.Precision.DEFAULT means
        return f"jax_default_matmul_precision={precision!r} (no bfloat16 cuDNN LSTM)"
    if xs.size == 0:
        return f"an empty input of shape {shape_text(xs.shape)}"
    if type(params) is Stack and params.dropout > 0 and run.key is not None:
        # cuDNN's dropout mask is not jaxrnn.dropout's: run layer by layer instead.
        return "dropout between layers with a key"
    return None


def _pack(cells: tuple[LSTMParams, ...]) -> jax.Array:
    """cuDNN's flat weight vector: every pseudo-layer's ``W_ih, W_hh``, then every one's
    ``b_ih, b_hh`` (PyTorch's shapes: ``W_ih = w_x^T``, ``W_hh = w_h^T``)."""

    def bias(b: jax.Array | None, cell: LSTMParams) -> jax.Array:
        return jnp.zeros((4 * cell.hidden_size,), cell.w_x.dtype) if b is None else b

    weights = [w.T.ravel() for cell in cells for w in (cell.w_x, cell.w_h)]
    biases = [bias(b, cell) for cell in cells for b in (cell.b_x, cell.b_h)]
    return jnp.concatenate(weights + biases)


def _flip_valid(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse each sequence's valid steps in place: ``x[t, b] <- x[lengths[b] - 1 - t, b]``
    for ``t < lengths[b]``, padding left at the end. Its own inverse."""
    steps = jnp.arange(x.shape[0])[:, None]
    index = jnp.where(steps < lengths, lengths - 1 - steps, steps)
    return jnp.take_along_axis(x, index[..., None], axis=0)


def _run_kernel(
    kernel: Callable, plan: _Plan, carry: Any, xs: jax.Array, run: Run
) -> tuple[Any, jax.Array]:
    """The whole plan in one kernel call, with ``unroll``'s semantics."""
    num_steps, batch_shape = xs.shape[0], xs.shape[1:-1]
    batch, hidden = math.prod(batch_shape), plan.hidden_size
    x = xs.reshape(num_steps, batch, plan.input_size)
    if run.valid is None:
        lengths = jnp.full((batch,), num_steps, jnp.int32)
    else:
        lengths = run.valid.reshape(num_steps, batch).sum(0, dtype=jnp.int32)
    if run.reverse:
        x = _flip_valid(x, lengths)
    # The carry's leaves come in cuDNN's pseudo-layer order (layer by layer, forward
    # before backward), h before c in each LSTMState.
    leaves, treedef = jax.tree.flatten(carry)
    h_0 = jnp.stack([leaf.reshape(batch, hidden) for leaf in leaves[0::2]])
    c_0 = jnp.stack([leaf.reshape(batch, hidden) for leaf in leaves[1::2]])
    ys, h_n, c_n = kernel(
        x.swapaxes(0, 1),
        h_0,
        c_0,
        _pack(plan.cells),
        jnp.maximum(lengths, 1),  # cuDNN takes lengths >= 1; 0 is restored below
        plan.input_size,
        hidden,
        plan.num_layers,
        0.0,
        plan.bidirectional,
        None,  # precision: jax_default_matmul_precision, as for every JAX matmul
    )
    ys = ys.swapaxes(0, 1)
    ys = jnp.where((jnp.arange(num_steps)[:, None] < lengths)[..., None], ys, 0)
    if run.reverse:
        ys = _flip_valid(ys, lengths)
    empty = (lengths == 0)[None, :, None]
    h_n, c_n = jnp.where(empty, h_0, h_n), jnp.where(empty, c_0, c_n)
    if plan.top is not None:
        ys = plan.top.merge_outputs(ys[..., :hidden], ys[..., hidden:])
    new_leaves = [
        s.reshape(*batch_shape, hidden) for pair in zip(h_n, c_n, strict=True) for s in pair
    ]
    return jax.tree.unflatten(treedef, new_leaves), ys.reshape(num_steps, *batch_shape, -1)


def _try_kernel(
    params: Any, carry: Any, xs: jax.Array, run: Run, remat: bool
) -> tuple[Any, jax.Array] | str:
    """``(carry, ys)`` from the kernel, or a phrase saying why it cannot run them."""
    plan = _plan(params)
    if isinstance(plan, str):
        return plan
    reason = _runtime_reason(params, carry, xs, run, remat)
    if reason is not None:
        return reason
    return _run_kernel(_KERNEL or jax_rnn.lstm, plan, carry, xs, run)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside jaxrnn: the warning points at the
    caller's ``unroll`` line, however deep the composites go."""
    level, frame = 2, sys._getframe(2)
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    return level


@dataclasses.dataclass(frozen=True)
class CuDNN(Method):
    """``unroll(..., method="cudnn")``: LSTMs on cuDNN's fused kernel (see this module).

    A whole stack or bidirectional pair of LSTM cells runs in one kernel call where it
    fits; otherwise the composite runs part by part and each cell goes to the kernel or,
    where it cannot (no GPU, not an LSTM, ``proj_size``, dtype, ``remat``, bfloat16
    matmuls, empty input), to ``lax.scan`` with ``unroll`` and ``remat`` and a
    [`CuDNNFallbackWarning`][jaxrnn.cudnn.CuDNNFallbackWarning] naming the reason: the
    one method that falls back instead of raising, so that a program written for the GPU
    runs unchanged on a CPU.
    """

    unroll: int | bool = 1  # of the lax.scan fallback
    remat: bool = False  # of the lax.scan fallback (cuDNN itself has no remat)
    outputs_carries = True  # by its fallback
    compiled = False  # the fallback warns at each call

    def __post_init__(self) -> None:
        check_unroll("CuDNN", self.unroll)
        check_bool("CuDNN", "remat", self.remat)

    def unroll_params(self, params: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, Any]:
        if type(params) in (Stack, Bidirectional):
            result = _try_kernel(params, carry, xs, run, self.remat)
            if not isinstance(result, str):
                return result
        return super().unroll_params(params, carry, xs, run)

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, jax.Array]:
        result = _try_kernel(cell, carry, xs, run, self.remat)
        if not isinstance(result, str):
            return result
        warnings.warn(
            f"unroll(method='cudnn'): {type(cell).__name__} runs with lax.scan "
            f"(method='sequential'), not cuDNN: {result}",
            CuDNNFallbackWarning,
            stacklevel=_caller_stacklevel(),
        )
        return Sequential(self.unroll, self.remat).unroll_cell(cell, carry, xs, run)


def to_cudnn_weights(params: Any) -> jax.Array:
    """The flat weight vector that ``jax.experimental.rnn.lstm`` (cuDNN) takes.

    cuDNN's layout: for the pseudo-layers ``l`` in its order (layer 0 forward, layer 0
    backward if bidirectional, layer 1 forward, ...), all matrices, then all biases:

    $$
    w = \\big[\\, W_{ih}^{0}, W_{hh}^{0}, W_{ih}^{1}, W_{hh}^{1}, \\dots,\\;
    b_{ih}^{0}, b_{hh}^{0}, b_{ih}^{1}, b_{hh}^{1}, \\dots \\big]
    $$

    each raveled row-major, with PyTorch's shapes ``W_ih = w_x^T`` ``(4 * hidden_size,
    input_size)``, ``W_hh = w_h^T`` ``(4 * hidden_size, hidden_size)``, gates i, f, g, o
    (the same in jaxrnn, PyTorch and cuDNN). A cell without biases gets zeros.

    Args:
      params: an LSTM cell, a [`bidirectional`][jaxrnn.bidirectional] pair of LSTM cells
        or a [`stack`][jaxrnn.stack] of either (concat merge below the top layer), one
        ``hidden_size`` throughout, no ``proj_size``.

    Returns:
      A vector of ``jax.experimental.rnn.get_num_params_in_lstm(input_size, hidden_size,
      num_layers, bidirectional)`` entries, in the params' dtype.

    Example:
      >>> import jax, jaxrnn
      >>> from jax.experimental import rnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4, num_layers=2)
      >>> weights = jaxrnn.cudnn.to_cudnn_weights(params)
      >>> weights.shape == (rnn.get_num_params_in_lstm(3, 4, 2, False),)
      True
    """
    if not hasattr(params, "input_shape"):
        fail("to_cudnn_weights", "params", "be jaxrnn params", type(params).__name__, TypeError)
    plan = _plan(params)
    if isinstance(plan, str):
        fail(
            "to_cudnn_weights",
            "params",
            "be LSTM cells, bidirectional pairs of them or a stack of either, one "
            "hidden_size, no proj_size",
            plan,
        )
    return _pack(plan.cells)


def from_cudnn_weights(
    weights: ArrayLike,
    *,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
) -> Stack:
    """Params from a ``jax.experimental.rnn`` (cuDNN) weight vector: the inverse of
    [`to_cudnn_weights`][jaxrnn.cudnn.to_cudnn_weights].

    Reads the layout with ``jax.experimental.rnn.unpack_lstm_weights`` and transposes
    PyTorch's shapes to jaxrnn's: ``w_x = W_ih^T``, ``w_h = W_hh^T``, ``b_x = b_ih``,
    ``b_h = b_hh``. Like [`from_torch`][jaxrnn.from_torch] of an ``nn.LSTM``, the result
    is always a [`Stack`][jaxrnn.Stack] (of cells, or of concat
    [`Bidirectional`][jaxrnn.Bidirectional] pairs), without dropout.

    Args:
      weights: the flat vector, ``(get_num_params_in_lstm(...),)``.
      input_size: features of the inputs.
      hidden_size: features of ``h`` and ``c`` of every layer.
      num_layers: layers of the stack.
      bidirectional: whether each layer is a forward and backward pair.

    Returns:
      A [`Stack`][jaxrnn.Stack] whose ``to_cudnn_weights`` is ``weights``.

    Example:
      >>> import jax, jaxrnn
      >>> from jax.experimental import rnn
      >>> weights = rnn.init_lstm_weight(jax.random.key(0), 3, 4, 2, True)
      >>> params = jaxrnn.cudnn.from_cudnn_weights(weights, input_size=3, hidden_size=4,
      ...                                          num_layers=2, bidirectional=True)
      >>> params.output_size, bool((jaxrnn.cudnn.to_cudnn_weights(params) == weights).all())
      (8, True)
    """
    weights = check_array("from_cudnn_weights", "weights", weights)
    check_floating("from_cudnn_weights", "weights", weights)
    sizes = (input_size, hidden_size, num_layers)
    if not all(isinstance(n, int) and n > 0 for n in sizes):
        fail(
            "from_cudnn_weights",
            "input_size, hidden_size and num_layers",
            "be positive ints",
            repr(sizes),
        )
    size = jax_rnn.get_num_params_in_lstm(input_size, hidden_size, num_layers, bidirectional)
    if weights.shape != (size,):
        fail(
            "from_cudnn_weights",
            "weights",
            f"have shape ({size},) for input_size={input_size}, hidden_size={hidden_size}, "
            f"num_layers={num_layers}, bidirectional={bidirectional}",
            shape_text(weights.shape),
        )
    w_ih, w_hh, b_ih, b_hh = jax_rnn.unpack_lstm_weights(
        weights, input_size, hidden_size, num_layers, bidirectional
    )
    cells = [
        LSTMParams(w_x=w_ih[l].T, w_h=w_hh[l].T, b_x=b_ih[l], b_h=b_hh[l]) for l in range(len(w_ih))
    ]
    if bidirectional:
        pairs = zip(cells[0::2], cells[1::2], strict=True)
        return stack([bidirectional_pair(f, b) for f, b in pairs])
    return stack(cells)
