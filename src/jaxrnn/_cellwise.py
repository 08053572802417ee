"""Apply a function to every cell inside composites, keeping the composites' structure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxrnn.composites import Bidirectional, Stack

__all__ = ["is_composite", "map_cells"]


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


def is_composite(params: Any) -> bool:
    return isinstance(params, (Stack, Bidirectional))
