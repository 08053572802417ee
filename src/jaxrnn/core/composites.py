"""Composites: a stack of layers and a bidirectional pair. Both are params too.

A composite has the same structural interface as a cell (``input_shape``, ``output_size``,
``initial_carry``), so composites nest: a stack of bidirectional layers, or a bidirectional
pair of stacks. How they run over time lives in ``jaxrnn.core.unrolling``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.core.checks import check_choice, check_rate, fail
from jaxrnn.core.params import params_class, static_field

MERGES = ("concat", "sum", "mean")


class Composite:
    """Params made of other params that say how their parts run over time: the extension
    point for a user's own composite ([`Stack`][jaxrnn.Stack] and
    [`Bidirectional`][jaxrnn.Bidirectional] are taken apart by ``unroll`` directly).

    A subclass (a ``params_class``) defines ``input_shape``, ``output_size``,
    ``initial_carry`` and ``unroll_parts(carry, xs, run) -> (carry, ys)``, which runs each
    part with ``run.method.unroll_params(part, part_carry, part_xs, run)`` (a ``run`` whose
    ``key`` or ``reverse`` it may change with ``run._replace``), so that every method and
    every nesting keep working.
    """

    def unroll_parts(self, carry: Any, xs: Any, run: Any) -> tuple[Any, Any]:
        raise NotImplementedError


class BidirectionalState(NamedTuple):
    """Carry of a bidirectional pair: one carry per direction."""

    forward: Any
    backward: Any


@params_class
class Bidirectional:
    """A forward and a backward RNN over the same inputs, outputs merged per step.

    See [`bidirectional`][jaxrnn.bidirectional].
    """

    forward: Any  # params of the forward direction
    backward: Any  # params of the backward direction
    merge: str = static_field("concat")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.forward.input_shape

    @property
    def output_size(self) -> int:
        size = self.forward.output_size
        return 2 * size if self.merge == "concat" else size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> BidirectionalState:
        return BidirectionalState(
            self.forward.initial_carry(batch_shape, dtype),
            self.backward.initial_carry(batch_shape, dtype),
        )

    def merge_outputs(self, ys_forward: jax.Array, ys_backward: jax.Array) -> jax.Array:
        if self.merge == "concat":
            return jnp.concatenate([ys_forward, ys_backward], axis=-1)
        if self.merge == "sum":
            return ys_forward + ys_backward
        return (ys_forward + ys_backward) / 2


@params_class
class Stack:
    """Layers run one after the other over time, each layer's ``ys`` the next one's ``xs``.

    See [`stack`][jaxrnn.stack].
    """

    layers: tuple[Any, ...]  # params of each layer, bottom first
    dropout: float = static_field(0.0)  # rate between layers, applied only with a key

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.layers[0].input_shape

    @property
    def output_size(self) -> int:
        return self.layers[-1].output_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> tuple[Any, ...]:
        return tuple(layer.initial_carry(batch_shape, dtype) for layer in self.layers)


def bidirectional(forward: Any, backward: Any, *, merge: str = "concat") -> Bidirectional:
    """Run ``forward`` over the sequence and ``backward`` over it reversed; merge outputs.

    At every step ``t`` (with ``ys_b`` aligned to input positions, see ``unroll``'s
    ``reverse``):

        carry_f, ys_f = unroll(forward, carry.forward, xs, lengths=lengths)
        carry_b, ys_b = unroll(backward, carry.backward, xs, lengths=lengths, reverse=True)
        ys = concat([ys_f, ys_b], -1)   # merge="concat"; "sum": ys_f + ys_b; "mean": average
        carry = BidirectionalState(carry_f, carry_b)

    Args:
      forward: params of the forward direction (a cell or a composite).
      backward: params of the backward direction, same input size.
      merge: ``"concat"`` (output size doubles), ``"sum"`` or ``"mean"`` (sizes must match).

    Returns:
      A [`Bidirectional`][jaxrnn.Bidirectional] params pytree.

    Example:
      >>> import jax, jaxrnn
      >>> kf, kb = jax.random.split(jax.random.key(0))
      >>> bi = jaxrnn.bidirectional(jaxrnn.init_params(kf, "gru", 3, 8),
      ...                           jaxrnn.init_params(kb, "gru", 3, 8))
      >>> bi.output_size
      16
    """
    check_choice("bidirectional", "merge", merge, MERGES)
    _check_pair("bidirectional", forward, backward, merge, "")
    return Bidirectional(forward=forward, backward=backward, merge=merge)


def stack(layers: Sequence[Any], *, dropout: float = 0.0) -> Stack:
    """Stack layers: each layer runs over the whole sequence, feeding the next.

    Equivalent to:

        new_carry = []
        for i, layer in enumerate(layers):
            carry_i, xs = unroll(layer, carry[i], xs, lengths=lengths)
            if key is not None and i < len(layers) - 1:
                xs = dropout_(xs, rate=dropout)   # as PyTorch's nn.LSTM(dropout=...)
            new_carry.append(carry_i)
        return tuple(new_carry), xs

    Args:
      layers: params of each layer, bottom first; layer ``i + 1``'s input size must be
        layer ``i``'s output size.
      dropout: rate of dropout on the outputs of every layer but the last, applied only
        when ``unroll`` gets a ``key``.

    Returns:
      A [`Stack`][jaxrnn.Stack] params pytree; its carry is a tuple with one carry per layer.

    Example:
      >>> import jax, jaxrnn
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> deep = jaxrnn.stack([jaxrnn.init_params(k1, "lstm", 3, 16),
      ...                      jaxrnn.init_params(k2, "lstm", 16, 16)])
      >>> len(jaxrnn.init_carry(deep, batch_shape=(4,)))
      2
    """
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        expected = "be a non-empty sequence of params"
        fail("stack", "layers", expected, type(layers).__name__, TypeError)
    layers = tuple(layers)
    if not layers:
        fail("stack", "layers", "be a non-empty sequence of params", "an empty sequence")
    _check_layers("stack", layers, "layers")
    return Stack(layers=layers, dropout=check_rate("stack", "dropout", dropout))


def _check_pair(where: str, forward: Any, backward: Any, merge: str, prefix: str) -> None:
    for name, part in (("forward", forward), ("backward", backward)):
        if not hasattr(part, "input_shape"):
            fail(where, prefix + name, "be jaxrnn params", type(part).__name__, TypeError)
    if forward.input_shape != backward.input_shape:
        fail(
            where,
            prefix + "backward",
            f"take the same input shape as {prefix}forward {forward.input_shape}",
            str(backward.input_shape),
        )
    if merge != "concat" and forward.output_size != backward.output_size:
        fail(
            where,
            prefix + "backward",
            f"have {prefix}forward's output_size={forward.output_size} for merge={merge!r}",
            str(backward.output_size),
        )


def _check_layers(where: str, layers: tuple[Any, ...], name: str) -> None:
    for i, layer in enumerate(layers):
        if not hasattr(layer, "input_shape"):
            fail(where, f"{name}[{i}]", "be jaxrnn params", type(layer).__name__, TypeError)
        # Spatial dims (a ConvLSTM's height and width) pass through every layer unchanged.
        if i and layer.input_shape != (*layers[0].input_shape[:-1], layers[i - 1].output_size):
            fail(
                where,
                f"{name}[{i}]",
                f"take input_size={layers[i - 1].output_size} ({name}[{i - 1}].output_size)",
                f"input_shape={layer.input_shape}",
            )


def check_composite(where: str, params: Any, name: str = "params") -> None:
    """The parts of a [`Stack`][jaxrnn.Stack] or [`Bidirectional`][jaxrnn.Bidirectional]
    fit together, at every depth: what [`stack`][jaxrnn.stack] and
    [`bidirectional`][jaxrnn.bidirectional] check, for composites built by hand."""
    if isinstance(params, Stack):
        if not params.layers:
            fail(where, f"{name}.layers", "be a non-empty tuple of params", "()")
        _check_layers(where, params.layers, f"{name}.layers")
        for i, layer in enumerate(params.layers):
            check_composite(where, layer, f"{name}.layers[{i}]")
    elif isinstance(params, Bidirectional):
        check_choice(where, f"{name}.merge", params.merge, MERGES)
        _check_pair(where, params.forward, params.backward, params.merge, f"{name}.")
        check_composite(where, params.forward, f"{name}.forward")
        check_composite(where, params.backward, f"{name}.backward")


def map_cells(fn: Callable[..., Any], params: Any, *trees: Any) -> Any:
    """``fn(cell, *subtrees)`` for each cell of ``params``, rebuilt into the same composites.

    ``trees`` (e.g. an initial carry) have the carry structure of ``params``: a tuple with
    one entry per layer of a stack, a [`BidirectionalState`][jaxrnn.BidirectionalState] for a pair.
    A cell is anything that is neither a [`Stack`][jaxrnn.Stack] nor a
    [`Bidirectional`][jaxrnn.Bidirectional].
    """
    if isinstance(params, Stack):
        layers = [
            map_cells(fn, layer, *(tree[i] for tree in trees))
            for i, layer in enumerate(params.layers)
        ]
        return dataclasses.replace(params, layers=tuple(layers))
    if isinstance(params, Bidirectional):
        forward = map_cells(fn, params.forward, *(tree.forward for tree in trees))
        backward = map_cells(fn, params.backward, *(tree.backward for tree in trees))
        return dataclasses.replace(params, forward=forward, backward=backward)
    return fn(params, *trees)


def contains_bidirectional(params: Any) -> bool:
    """Whether ``params`` is, or stacks, a bidirectional pair (which has no single step)."""
    if isinstance(params, Bidirectional):
        return True
    return isinstance(params, Stack) and any(map(contains_bidirectional, params.layers))
