"""``init_params``: build cell, stacked and bidirectional params from a key."""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import jax

from jaxrnn.cells import CELL_INITS
from jaxrnn.core.checks import (
    check_bool,
    check_callable,
    check_floating_dtype,
    check_int,
    check_key,
    check_number,
    check_rate,
    fail,
)
from jaxrnn.core.composites import bidirectional as make_bidirectional
from jaxrnn.core.composites import stack

__all__ = ["init_params"]


def _cell_options(cell: str) -> tuple[str, ...]:
    signature = inspect.signature(CELL_INITS[cell])
    return tuple(name for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY)


def _check_cell_options(cell: str, options: dict[str, Any], hidden_size: int) -> None:
    """Options whose wrong values the cells would take silently (or fail on deep inside)."""
    if "bias" in options:
        check_bool("init_params", "bias", options["bias"])
    if "dtype" in options:
        check_floating_dtype("init_params", "dtype", options["dtype"])
    for name in ("kernel_init", "recurrent_init", "bias_init", "proj_init"):
        if name in options:
            check_callable("init_params", name, options[name])
    if "reset_after" in options:
        check_bool("init_params", "reset_after", options["reset_after"])
    for name in ("forget_bias", "r_min", "r_max", "max_phase"):  # ranges: the cells check
        if name in options:
            check_number("init_params", name, options[name], "be a number")
    if "epsilon" in options:
        check_number("init_params", "epsilon", options["epsilon"], "be > 0", lambda e: e > 0)
    if cell == "lstm" and "proj_size" in options:
        proj_size = options["proj_size"]
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            fail("init_params", "proj_size", "be an int", repr(proj_size), TypeError)
        if not 0 <= int(proj_size) < hidden_size:
            fail(
                "init_params",
                "proj_size",
                f"be in [0, hidden_size={hidden_size}) (0: no projection, as PyTorch)",
                repr(proj_size),
            )
        options["proj_size"] = int(proj_size)


def init_params(
    key: jax.Array,
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    **cell_options: Any,
) -> Any:
    """Initialize the params of a cell, a stack of layers, or bidirectional layers.

    Cells (equations in each params type's docstring), each with the options it takes
    (``tests/test_docs_true.py`` checks this list against the code):

    - ``"rnn"``: Elman, ``h' = act(x W_x + b_x + h W_h + b_h)``; ``activation`` is
      ``"tanh"`` or ``"relu"``. Params [`RNNParams`][jaxrnn.RNNParams].
      Options: ``activation``, ``bias``, ``kernel_init``, ``recurrent_init``,
      ``bias_init``, ``dtype``.
    - ``"lstm"``: gates i, f, g, o; ``c' = f*c + i*g``, ``h' = o*tanh(c')``;
      ``proj_size`` is PyTorch's projection of ``h`` (``0 < proj_size < hidden_size``),
      ``forget_bias`` (default 1.0) is added to ``b_x``'s forget gate.
      Params [`LSTMParams`][jaxrnn.LSTMParams].
      Options: ``proj_size``, ``bias``, ``forget_bias``, ``kernel_init``,
      ``recurrent_init``, ``bias_init``, ``proj_init``, ``dtype``.
    - ``"gru"``: gates r, z, n; ``n = tanh(x W_xn + b_xn + r*(h W_hn + b_hn))``,
      ``h' = (1-z)*n + z*h``; ``reset_after`` (default ``True``, PyTorch/cuDNN;
      ``False`` is Cho et al. 2014, ``n = tanh(x W_xn + b_xn + (r*h) W_hn + b_hn)``).
      Params [`GRUParams`][jaxrnn.GRUParams].
      Options: ``reset_after``, ``bias``, ``kernel_init``, ``recurrent_init``,
      ``bias_init``, ``dtype``.
    - ``"mingru"``: minGRU (Feng et al. 2024), gates read the input only,
      ``h' = (1-z)*h + z*g(x W_xh + b_xh)``, linear in ``h`` (``method="parallel"``).
      Params [`MinGRUParams`][jaxrnn.MinGRUParams].
      Options: ``bias``, ``kernel_init``, ``bias_init``, ``dtype``.
    - ``"minlstm"``: minLSTM (Feng et al. 2024), normalized forget and input gates that
      read the input only, linear in ``h`` (``method="parallel"``).
      Params [`MinLSTMParams`][jaxrnn.MinLSTMParams].
      Options: ``bias``, ``kernel_init``, ``bias_init``, ``dtype``.
    - ``"lru"``: linear recurrent unit (Orvieto et al. 2023), a complex diagonal linear
      recurrence with ring initialization between ``r_min`` and ``r_max`` and phases up
      to ``max_phase`` (``method="parallel"``). Params [`LRUParams`][jaxrnn.LRUParams].
      Options: ``r_min``, ``r_max``, ``max_phase``, ``dtype``.
    - ``"lstm_ln"``: layer-normalized LSTM (Ba et al. 2016), ``LN`` on the input and
      recurrent gate pre-activations and on ``c'`` before ``tanh``.
      Params [`LayerNormLSTMParams`][jaxrnn.LayerNormLSTMParams].
      Options: ``bias``, ``forget_bias``, ``epsilon``, ``kernel_init``,
      ``recurrent_init``, ``bias_init``, ``dtype``.
    - ``"mgu"``: minimal gated unit (Zhou et al. 2016), ``f = σ(x W_xf + h W_hf + b_f)``,
      ``h' = (1-f)*h + f*tanh(x W_xh + (f*h) W_hh + b_h)``.
      Params [`MGUParams`][jaxrnn.MGUParams].
      Options: ``bias``, ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``.
    - ``"convlstm"``: convolutional LSTM (Shi et al. 2015): ``input_size`` and
      ``hidden_size`` count channels, inputs are ``(..., *spatial_shape, input_size)``;
      ``spatial_shape`` is required (e.g. ``(height, width)``), ``kernel_size`` defaults
      to 3, both kernels to ``lecun_normal()`` (as Flax).
      Params [`ConvLSTMParams`][jaxrnn.ConvLSTMParams].
      Options: ``spatial_shape``, ``kernel_size``, ``bias``, ``forget_bias``,
      ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``.
    - ``"rglru"``: RG-LRU of Griffin/Hawk (De et al. 2024), ``h' = a*h + sqrt(1-a²)*(i*u)``
      with ``a = σ(Λ)^(8 r)``; the gates ``r``, ``i`` read the input only (block-diagonal,
      ``num_heads`` blocks), so it is linear in ``h`` (``method="parallel"``); ``u = x``
      when ``input_size == hidden_size``, else ``x W_in + b_in`` (``proj_init``);
      ``σ(Λ)²`` starts uniform in ``[min_rad², max_rad²]`` (0.9, 0.999).
      Params [`RGLRUParams`][jaxrnn.cells.RGLRUParams].
      Options: ``num_heads``, ``min_rad``, ``max_rad``, ``bias``, ``kernel_init``,
      ``proj_init``, ``bias_init``, ``dtype``.
    - ``"conv1d"``: Hawk's causal depthwise temporal convolution over ``temporal_width``
      steps (default 4), ``y_t = b + Σ_k W_k ⊙ u_{t-w+1+k}``, ``u`` as for ``"rglru"``; the
      carry is the window of the previous ``temporal_width - 1`` inputs; ``kernel_init``
      defaults to recurrentgemma's (normal, variance ``0.01 / temporal_width``). Stack it
      before ``"rglru"``. Params [`Conv1DParams`][jaxrnn.cells.Conv1DParams].
      Options: ``temporal_width``, ``bias``, ``kernel_init``, ``proj_init``, ``bias_init``,
      ``dtype``.
    - ``"slstm"``: sLSTM of xLSTM (Beck et al. 2024), gates i, f, z, o; exponential
      input gate, ``forget_gate`` ``"sigmoid"`` (default) or ``"exp"``, a normalizer
      ``n`` and a stabilizer ``m`` in the carry, ``h' = σ(o) * c' / n'``; the recurrent
      matrix is block-diagonal with ``num_heads`` heads (default 1; must divide
      ``hidden_size``); ``forget_bias`` (default 1.0) is added to ``b``'s forget gate.
      Params [`SLSTMParams`][jaxrnn.cells.SLSTMParams].
      Options: ``num_heads``, ``forget_gate``, ``bias``, ``forget_bias``,
      ``kernel_init``, ``recurrent_init``, ``bias_init``, ``dtype``.
    - ``"mlstm"``: xLSTM's matrix-memory cell (Beck et al. 2024), per head
      ``C' = f*C + i*v k^T``, ``n' = f*n + i*k``, ``h = o * (C' q) / max(|n'·q|, 1)`` with
      exponential input gates, stabilized; ``num_heads`` must divide ``hidden_size``,
      ``forget_gate`` is ``"sigmoid"`` (default) or ``"exp"``, ``output_norm`` adds the
      per-head layer norm (``epsilon``); runs its parallel form with ``method="parallel"``.
      Params [`MLSTMParams`][jaxrnn.cells.MLSTMParams].
      Options: ``num_heads``, ``forget_gate``, ``output_norm``, ``epsilon``, ``bias``,
      ``kernel_init``, ``bias_init``, ``dtype``.

    The options mean the same wherever they appear: ``bias`` (default ``True``),
    ``kernel_init`` (input weights, default ``lecun_normal()``), ``recurrent_init``
    (default ``orthogonal()``, applied per gate), ``bias_init`` (default ``zeros``),
    ``dtype`` (default ``float32``); any ``jax.nn.initializers`` function can be passed.
    An option a cell does not take raises ``TypeError``.

    Args:
      key: a PRNG key (``jax.random.key(seed)``).
      cell: a cell name above (a key of ``jaxrnn.cells.CELL_INITS``).
      input_size: features of each input step.
      hidden_size: state size of each layer (and direction).
      num_layers: ``> 1`` returns a [`stack`][jaxrnn.stack]; layers after the first take
        the previous layer's output size as input size.
      bidirectional: make each layer a [`bidirectional`][jaxrnn.bidirectional] pair (concat merge).
      dropout: rate of dropout between layers (as PyTorch's ``dropout``), applied only
        when ``unroll`` gets a key.
      **cell_options: the cell's options above.

    Returns:
      Params: a cell's params type, a [`Bidirectional`][jaxrnn.Bidirectional], or a
      [`Stack`][jaxrnn.Stack] when ``num_layers > 1``.

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> print(params)
      LSTMParams(w_x=float32[3,16], w_h=float32[4,16], b_x=float32[16], b_h=float32[16],
                 w_proj=None)
    """
    if cell not in CELL_INITS:
        known = ", ".join(repr(c) for c in CELL_INITS)
        fail("init_params", "cell", f"be one of {known}", repr(cell))
    allowed = _cell_options(cell)
    unknown = sorted(set(cell_options) - set(allowed))
    if unknown:
        fail(
            "init_params",
            "cell_options",
            f"be options of cell {cell!r} ({', '.join(allowed)})",
            ", ".join(unknown),
            TypeError,
        )
    check_key("init_params", key, optional=False)
    input_size = check_int("init_params", "input_size", input_size)
    hidden_size = check_int("init_params", "hidden_size", hidden_size)
    num_layers = check_int("init_params", "num_layers", num_layers)
    check_bool("init_params", "bidirectional", bidirectional)
    _check_cell_options(cell, cell_options, hidden_size)
    dropout = check_rate("init_params", "dropout", dropout)
    if num_layers == 1 and dropout:
        fail(
            "init_params",
            "dropout",
            "be 0 with num_layers=1 (it acts between layers)",
            repr(dropout),
        )
    init_cell = CELL_INITS[cell]
    layers = []
    size = input_size
    for layer_key in jax.random.split(key, num_layers):
        if bidirectional:
            kf, kb = jax.random.split(layer_key)
            layer = make_bidirectional(
                init_cell(kf, size, hidden_size, **cell_options),
                init_cell(kb, size, hidden_size, **cell_options),
            )
        else:
            layer = init_cell(layer_key, size, hidden_size, **cell_options)
        layers.append(layer)
        size = layer.output_size
    if num_layers == 1:
        return layers[0]
    return stack(layers, dropout=dropout)
