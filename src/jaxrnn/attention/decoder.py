"""Attention decoders: ``AttentionCell``, a decoder cell closed over its memory, its
training step with the inner layers' dropout, ``init_attention_cell``, ``with_memory`` and
``unroll_with_alignments``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.attention.scores import (
    ATTENTION_KINDS,
    AttentionParams,
    attend_prepared,
    check_memory,
    init_attention,
    prepare_memory,
)
from jaxrnn.cells.base import Unwrapped, WrappedCell
from jaxrnn.core.checks import (
    check_bool,
    check_choice,
    check_floating_dtype,
    check_int,
    check_key,
    check_rate,
    fail,
    shape_text,
)
from jaxrnn.core.composites import Stack
from jaxrnn.core.dropout import dropout
from jaxrnn.core.initialization import init_params
from jaxrnn.core.methods import stack_keys
from jaxrnn.core.params import params_class, static_field
from jaxrnn.core.unrolling import step, unroll
from jaxrnn.heads import ReadoutParams, init_readout, readout
from jaxrnn.pooling import final_hidden
from jaxrnn.regularization import Regularized, ZoneoutInputs, draw_masks

__all__ = [
    "AttentionCell",
    "AttentionState",
    "DecoderInputs",
    "LayerNoise",
    "init_attention_cell",
    "unroll_with_alignments",
    "with_memory",
]


class AttentionState(NamedTuple):
    """Carry of an [`AttentionCell`][jaxrnn.attention.AttentionCell]."""

    cell: Any  # the inner cell's carry
    attentional: jax.Array | None  # shape=(*batch, output_size): h~_{t-1}; None unless fed


@params_class
class AttentionCell(WrappedCell):
    """A decoder cell closed over a memory; see the module docstring for its step.

    Built by [`init_attention_cell`][jaxrnn.attention.init_attention_cell] without memory;
    [`with_memory`][jaxrnn.attention.with_memory] binds one. The memory is stored batch-leading, so
    each step's scores and context are batched products without a transpose.

    ``step`` (what [`cell_step`][jaxrnn.cell_step] and [`generate`][jaxrnn.decoding.generate] run)
    is deterministic. [`unroll`][jaxrnn.unroll] with a ``key`` runs the inner layers with
    their dropout: between the layers of a ``Stack`` at its ``dropout`` rate, and inside
    layers wrapped by [`regularize`][jaxrnn.regularization.regularize] (e.g.
    ``dataclasses.replace(decoder, cell=jaxrnn.regularization.regularize(decoder.cell,
    recurrent_dropout=0.25))``).
    """

    cell: Any  # the inner decoder: a cell or a Stack of unidirectional layers
    attention: AttentionParams
    combine: ReadoutParams | None  # Luong's W_c, b_c: [c; h] -> h~; None for "bahdanau"
    memory: jax.Array | None  # shape=(*batch, source_time, memory_size), padding zeroed
    keys: jax.Array | None  # shape=(*batch, source_time, attention_size): memory W_m
    memory_lengths: jax.Array | None  # shape=(*batch,), int; None: every position valid
    input_feeding: bool = static_field(True)  # Luong: feed h~_{t-1} with the input

    @property
    def _fed_size(self) -> int:
        if self.attention.kind == "bahdanau":
            return self.attention.memory_size
        return self.output_size if self.input_feeding else 0

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.cell.input_shape[-1] - self._fed_size,)

    @property
    def output_size(self) -> int:
        if self.combine is None:
            return self.cell.output_size + self.attention.memory_size
        return self.combine.output_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> AttentionState:
        # Checked here too, so that unroll and cell_step report it before tracing the step.
        _check_batch(self.memory, tuple(batch_shape))
        fed = self.combine is not None and self.input_feeding
        attentional = jnp.zeros((*batch_shape, self.output_size), dtype) if fed else None
        return AttentionState(self.cell.initial_carry(batch_shape, dtype), attentional)

    def input_projection(self, x: jax.Array) -> Any:
        # Nothing can be hoisted out of time: the inner cell's input includes the context
        # or h~_{t-1}, which need the carry.
        return x

    def recurrence(self, carry: AttentionState, projected: Any) -> tuple[Any, jax.Array]:
        if isinstance(projected, DecoderInputs):  # a training step: the inner layers' noise
            inner_step = functools.partial(_noisy_step, self.cell, projected.noise)
            carry, y, _ = self._attend_step(carry, projected.x, inner_step)
            return carry, y
        carry, y, _ = self.attend_step(carry, projected)
        return carry, y

    def unwrap(self, xs: Any, key: jax.Array | None) -> Unwrapped | None:
        """With a key, the decoder whose inner layers run with their dropout: the layers'
        per-sequence masks set in them, their per-step masks beside ``xs``
        (``DecoderInputs``); without, ``None`` (this cell's deterministic step)."""
        if key is None or isinstance(xs, DecoderInputs):
            return None
        return _with_noise(self, xs, key)

    def attend_step(
        self, carry: AttentionState, x: jax.Array
    ) -> tuple[AttentionState, jax.Array, jax.Array]:
        """One step, also returning the attention weights ``(*batch, source_time)``."""
        return self._attend_step(carry, x, functools.partial(step, self.cell))

    def _attend_step(
        self,
        carry: AttentionState,
        x: jax.Array,
        inner_step: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
    ) -> tuple[AttentionState, jax.Array, jax.Array]:
        """The step, with ``inner_step(cell_carry, x) -> (cell_carry, h)`` as the inner cell's
        (a training step passes one with dropout, ``_noisy_step``)."""
        memory = self.memory
        if memory is None:
            fail(
                "AttentionCell",
                "memory",
                "be bound with with_memory(params, memory, memory_lengths) before the cell runs",
                "None",
            )
        _check_batch(memory, x.shape[:-1])

        def read(query: jax.Array) -> tuple[jax.Array, jax.Array]:
            return attend_prepared(self.attention, query, memory, self.keys, self.memory_lengths)

        if self.combine is None:  # Bahdanau: read with s_{t-1}, feed the context
            # The query is s_{t-1}'s top-layer h (an LSTM carry's h field).
            context, weights = read(final_hidden(carry.cell))
            cell_carry, h = inner_step(carry.cell, jnp.concatenate([x, context], -1))
            return AttentionState(cell_carry, None), jnp.concatenate([h, context], -1), weights
        if self.input_feeding:
            x = jnp.concatenate([x, cast(jax.Array, carry.attentional)], -1)
        cell_carry, h = inner_step(carry.cell, x)
        context, weights = read(h)
        attentional = readout(self.combine, jnp.concatenate([context, h], -1), "tanh")
        fed = attentional if self.input_feeding else None
        return AttentionState(cell_carry, fed), attentional, weights


def _check_batch(memory: jax.Array | None, batch_shape: tuple[int, ...]) -> None:
    if memory is not None and batch_shape != memory.shape[:-2]:
        fail(
            "AttentionCell",
            "x",
            f"have the batch shape of the memory {shape_text(memory.shape[:-2])}",
            shape_text(batch_shape),
        )


class LayerNoise(NamedTuple):
    """The per-step masks of one inner layer of an attention decoder in training (``None``
    where off): what its training step reads at step ``t``."""

    keep_h: jax.Array | None  # shape=(*batch, *h_shape): zoneout of a regularize()d layer
    keep_c: jax.Array | None  # shape=(*batch, *c_shape): zoneout of c
    dropout: jax.Array | None  # shape=(*batch, output_size): the Stack's dropout after it


class DecoderInputs(NamedTuple):
    """The input of one training step of an ``AttentionCell``: ``x_t`` and the masks of
    its inner layers for that step, a pytree beside the features (``unroll`` scans it)."""

    x: jax.Array  # shape=(*batch, input_size)
    noise: tuple[LayerNoise, ...]  # one per inner layer, bottom first


def _noisy_step(
    inner: Any, noise: tuple[LayerNoise, ...], carry: Any, x: jax.Array
) -> tuple[Any, jax.Array]:
    """The inner decoder's step in training: each layer (a ``Regularized`` one with its
    zoneout masks), then the Stack's dropout mask after it."""
    stacked = isinstance(inner, Stack)
    layers, carries = (inner.layers, carry) if stacked else ((inner,), (carry,))
    new_carries = []
    for layer, layer_carry, layer_noise in zip(layers, carries, noise, strict=True):
        layer_input: Any = x
        if layer_noise.keep_h is not None or layer_noise.keep_c is not None:
            layer_input = ZoneoutInputs(x, layer_noise.keep_h, layer_noise.keep_c)
        layer_carry, x = step(layer, layer_carry, layer_input)
        if layer_noise.dropout is not None:
            x = x * layer_noise.dropout
        new_carries.append(layer_carry)
    return (tuple(new_carries) if stacked else new_carries[0]), x


def _contains_regularized(params: Any) -> bool:
    is_regularized = lambda p: isinstance(p, Regularized)  # noqa: E731
    return any(map(is_regularized, jax.tree.leaves(params, is_leaf=is_regularized)))


def _with_noise(params: AttentionCell, xs: jax.Array, key: jax.Array) -> Unwrapped:
    """The decoder ``unroll`` runs for ``params`` with ``key``, and its inputs.

    The keys are those of ``unroll(params.cell, ..., key=key)``: a ``Stack``'s come from
    ``stack_keys``; a single layer gets ``key``. So the inner layers draw the masks they
    would draw on their own (``regularization.draw_masks``), over the same
    ``(time, *batch)``.
    """
    inner = params.cell
    stacked = isinstance(inner, Stack)
    layers = inner.layers if stacked else (inner,)
    n = len(layers)
    layer_keys, dropout_keys = stack_keys(key, n) if stacked else ([key], [None])
    num_steps, batch_shape, dtype = xs.shape[0], xs.shape[1:-1], xs.dtype
    training_layers, noise = [], []
    for i, layer in enumerate(layers):
        keep_h = keep_c = drop = None
        if isinstance(layer, Regularized):
            shape = (num_steps, *batch_shape, *layer.input_shape)
            masks = draw_masks(layer, jnp.ones(shape, dtype), cast(jax.Array, layer_keys[i]))
            layer = layer.with_masks(masks)
            keep_h, keep_c = masks.keep_h, masks.keep_c
        elif _contains_regularized(layer):
            fail(
                "unroll",
                "params",
                "have regularize()d cells of an AttentionCell as its inner layers, not "
                "inside other wrappers (where a key would not reach them)",
                f"layer {i}: {type(layer).__name__} around a Regularized",
            )
        if stacked and i < n - 1 and inner.dropout > 0:
            ones = jnp.ones((num_steps, *batch_shape, layer.output_size), dtype)
            drop = dropout(cast(jax.Array, dropout_keys[i]), ones, inner.dropout)
        training_layers.append(layer)
        noise.append(LayerNoise(keep_h, keep_c, drop))
    if stacked:
        training_cell = dataclasses.replace(inner, layers=tuple(training_layers))
    else:
        training_cell = training_layers[0]
    training = dataclasses.replace(params, cell=training_cell)
    return Unwrapped(training, DecoderInputs(xs, tuple(noise)), None, None)


def init_attention_cell(
    key: jax.Array,
    cell: str,
    input_size: int,
    hidden_size: int,
    memory_size: int,
    *,
    kind: str = "bahdanau",
    num_layers: int = 1,
    dropout: float = 0.0,
    attention_size: int | None = None,
    attentional_size: int | None = None,
    input_feeding: bool = True,
    dtype: Any = jnp.float32,
    **cell_options: Any,
) -> AttentionCell:
    """Initialize an attention decoder (without memory: bind one with
    [`with_memory`][jaxrnn.attention.with_memory]).

    The inner cell reads ``[x_t; c_t]`` (``"bahdanau"``), ``[x_t; h~_{t-1}]`` (``"luong_*"``
    with ``input_feeding``) or ``x_t``, so its input size is ``input_size`` plus the fed
    size. Output size: ``hidden_size + memory_size`` (``"bahdanau"``: ``[h_t; c_t]``) or
    ``attentional_size`` (``"luong_*"``: ``h~_t``, default ``hidden_size``).

    Args:
      key: a PRNG key.
      cell: inner cell name for [`init_params`][jaxrnn.init_params] (``"lstm"``, ``"gru"``...).
      input_size: size of ``x_t`` (e.g. the target embedding).
      hidden_size: width of each inner layer (the query size).
      memory_size: size of each memory vector (the encoder's output size).
      kind: ``"bahdanau"``, ``"luong_dot"`` or ``"luong_general"``.
      num_layers: inner layers (a [`stack`][jaxrnn.stack] when more than one).
      dropout: rate of dropout between the inner layers (the stack's ``dropout``, as
        PyTorch's ``nn.LSTM(dropout=...)``: a fresh mask at every step), applied only
        when [`unroll`][jaxrnn.unroll] gets a ``key``; needs ``num_layers > 1``.
      attention_size: hidden width of the additive score (``"bahdanau"`` only).
      attentional_size: size of ``h~_t`` (``"luong_*"`` only; ``None``: ``hidden_size``).
      input_feeding: ``"luong_*"``: feed ``h~_{t-1}`` with the input.
      dtype: dtype of every weight.
      **cell_options: options of the inner cell, passed to
        [`init_params`][jaxrnn.init_params] (e.g. ``forget_bias``).

    Returns:
      An [`AttentionCell`][jaxrnn.attention.AttentionCell] with ``memory=None``.

    Example:
      >>> import jax, jaxrnn
      >>> decoder = jaxrnn.attention.init_attention_cell(jax.random.key(0), "gru", 8, 16, 12,
      ...                                                kind="luong_general")
      >>> decoder.input_shape, decoder.output_size, decoder.cell.input_shape
      ((8,), 16, (24,))
      >>> import jax.numpy as jnp
      >>> deep = jaxrnn.attention.init_attention_cell(jax.random.key(0), "lstm", 3, 4, 6,
      ...                                             num_layers=2, dropout=0.5)
      >>> deep = jaxrnn.attention.with_memory(deep, jnp.ones((5, 2, 6)))
      >>> _, ys_train = jaxrnn.unroll(deep, None, jnp.ones((7, 2, 3)), key=jax.random.key(1))
      >>> _, ys_eval = jaxrnn.unroll(deep, None, jnp.ones((7, 2, 3)))  # no key: no dropout
      >>> ys_train.shape, bool(jnp.allclose(ys_train, ys_eval))
      ((7, 2, 10), False)
    """
    where = "init_attention_cell"
    check_key(where, key, optional=False)
    check_choice(where, "kind", kind, ATTENTION_KINDS)
    check_int(where, "hidden_size", hidden_size)
    check_bool(where, "input_feeding", input_feeding)
    dtype = check_floating_dtype(where, "dtype", dtype)
    if attentional_size is not None and kind == "bahdanau":
        fail(
            where, "attentional_size", "be None unless kind is a Luong kind", repr(attentional_size)
        )
    k_att, k_cell, k_out = jax.random.split(key, 3)
    attention = init_attention(
        k_att, hidden_size, memory_size, kind=kind, attention_size=attention_size, dtype=dtype
    )
    combine = None
    fed = memory_size
    if kind != "bahdanau":
        out_size = hidden_size if attentional_size is None else attentional_size
        check_int(where, "attentional_size", out_size)
        combine = init_readout(k_out, memory_size + hidden_size, out_size, dtype=dtype)
        fed = out_size if input_feeding else 0
    check_int(where, "input_size", input_size)
    check_int(where, "num_layers", num_layers)
    check_rate(where, "dropout", dropout)
    if dropout and num_layers == 1:
        fail(
            where,
            "dropout",
            "be 0 with num_layers=1 (it acts between the inner layers)",
            repr(dropout),
        )
    inner = init_params(
        k_cell,
        cell,
        input_size + fed,
        hidden_size,
        num_layers=num_layers,
        dropout=float(dropout),
        dtype=dtype,
        **cell_options,
    )
    return AttentionCell(
        cell=inner,
        attention=attention,
        combine=combine,
        memory=None,
        keys=None,
        memory_lengths=None,
        input_feeding=bool(input_feeding),
    )


def with_memory(
    params: AttentionCell, memory: ArrayLike, memory_lengths: ArrayLike | None = None
) -> AttentionCell:
    """Bind a memory (e.g. an encoder's outputs) to an attention decoder.

    $$
    \\mathrm{memory}_{b,s} \\leftarrow [s < L_b]\\, \\mathrm{memory}_{s,b}, \\qquad
    \\mathrm{keys} = \\mathrm{memory}\\, W_m \\ (\\text{bahdanau})
    $$

    The memory is moved batch-leading with its padding zeroed, and the additive score's
    keys are computed here, once per source rather than once per step. Call it inside the
    function you differentiate, so that gradients reach the encoder and ``W_m`` through
    the memory and keys. Binding again replaces the memory.

    Args:
      params: an [`AttentionCell`][jaxrnn.attention.AttentionCell].
      memory: ``(source_time, *batch, memory_size)``, time-major.
      memory_lengths: integer ``batch``-shaped valid lengths, or ``None``.

    Returns:
      The [`AttentionCell`][jaxrnn.attention.AttentionCell] with its memory; it steps over inputs
      ``(*batch, input_size)`` of the memory's batch shape.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> decoder = jaxrnn.attention.init_attention_cell(jax.random.key(0), "lstm", 3, 4, 6)
      >>> memory = jnp.ones((5, 2, 6))                        # (source_time, batch, 6)
      >>> decoder = jaxrnn.attention.with_memory(decoder, memory, jnp.array([5, 2]))
      >>> carry, ys = jaxrnn.unroll(decoder, None, jnp.ones((7, 2, 3)))
      >>> ys.shape                                            # [h_t; c_t]
      (7, 2, 10)
    """
    where = "with_memory"
    if not isinstance(params, AttentionCell):
        fail(where, "params", "be an AttentionCell", type(params).__name__, TypeError)
    memory, lengths = check_memory(where, params.attention, memory, memory_lengths)
    values, keys = prepare_memory(params.attention, memory, lengths)
    return dataclasses.replace(params, memory=values, keys=keys, memory_lengths=lengths)


@params_class
class _WithAlignments(WrappedCell):
    """An attention cell whose output is ``[y_t; a_t]``, so that ``unroll`` masks and
    stacks the weights along with the outputs."""

    cell: AttentionCell
    source_time: int = static_field()

    @property
    def output_size(self) -> int:
        return self.cell.output_size + self.source_time

    def input_projection(self, x: jax.Array) -> Any:
        return x

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        carry, y, weights = self.cell.attend_step(carry, projected)
        return carry, jnp.concatenate([y, weights.astype(y.dtype)], -1)


def unroll_with_alignments(
    params: AttentionCell,
    carry: Any,
    xs: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
) -> tuple[Any, jax.Array, jax.Array]:
    """[`unroll`][jaxrnn.unroll] an attention decoder, also returning its attention weights.

    $$
    \\mathrm{alignments}_{t, b, s} = a_{t,b,s}
    \\quad\\text{(the weight of source position } s \\text{ at step } t)
    $$

    ``alignments[:, b]`` is the ``(time, source_time)`` matrix that translation papers
    plot. Steps ``t >= lengths[b]`` hold zeros, as ``ys`` does.

    Args:
      params: an [`AttentionCell`][jaxrnn.attention.AttentionCell] with memory.
      carry: initial carry, or ``None`` for the zero state.
      xs: inputs ``(time, *batch, input_size)``.
      lengths: integer ``batch``-shaped valid lengths, or ``None``.

    Returns:
      ``(carry, ys, alignments)``: as [`unroll`][jaxrnn.unroll], and alignments
      ``(time, *batch, source_time)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> decoder = jaxrnn.attention.init_attention_cell(jax.random.key(0), "gru", 3, 4, 4,
      ...                                                kind="luong_dot")
      >>> decoder = jaxrnn.attention.with_memory(decoder, jnp.ones((5, 2, 4)), jnp.array([5, 2]))
      >>> _, ys, alignments = jaxrnn.attention.unroll_with_alignments(
      ...     decoder, None, jnp.ones((7, 2, 3)))
      >>> ys.shape, alignments.shape, bool(jnp.allclose(alignments.sum(-1), 1.0))
      ((7, 2, 4), (7, 2, 5), True)
    """
    where = "unroll_with_alignments"
    if not isinstance(params, AttentionCell):
        fail(where, "params", "be an AttentionCell", type(params).__name__, TypeError)
    if params.memory is None:
        fail(where, "params", "have a memory (see with_memory)", "an AttentionCell without one")
    wrapped = _WithAlignments(params, source_time=params.memory.shape[-2])
    carry, out = unroll(wrapped, carry, xs, lengths=lengths)
    size = params.output_size
    return carry, out[..., :size], out[..., size:]
