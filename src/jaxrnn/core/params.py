"""Frozen dataclasses registered as pytrees, with a repr that shows shapes, not values."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, dataclass_transform

import jax

__all__ = ["describe", "params_class", "static_field"]


def static_field(default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that is pytree metadata (hashable configuration), not a leaf.

    ``jit`` specializes on it, ``grad`` and ``tree.map`` pass it by, and two params that
    differ in it have different tree structures.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> @jaxrnn.params_class
      ... class Scaled:
      ...     w: jax.Array
      ...     scale: float = jaxrnn.static_field(2.0)
      >>> jax.tree.leaves(Scaled(jnp.ones(3)))  # the scale is not a leaf
      [Array([1., 1., 1.], dtype=float32)]
    """
    return dataclasses.field(default=default, metadata={"static": True})


def _leaf_repr(x: Any) -> str:
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is None or dtype is None:
        return repr(x)
    return f"{dtype}[{','.join(str(d) for d in shape)}]"


def describe(tree: Any) -> str:
    """``repr`` of a pytree with every array leaf shown as ``dtype[shape]``.

    >>> import jax.numpy as jnp
    >>> describe({"h": jnp.zeros((2, 3))})
    "{'h': float32[2,3]}"
    """
    return repr(jax.tree.map(_ShapeOnly, tree))


class _ShapeOnly:
    __slots__ = ("text",)

    def __init__(self, x: Any):
        self.text = _leaf_repr(x)

    def __repr__(self) -> str:
        return self.text


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, static_field))
def params_class(cls: type[_T]) -> type[_T]:
    """Make ``cls`` a frozen dataclass registered as a pytree.

    Fields made with ``static_field`` are metadata (part of the tree's structure,
    so ``jit`` specializes on them); all others are children. The repr shows array
    leaves as ``dtype[shape]`` so that ``print(params)`` is readable. This is how the
    built-in cells declare their params, and how a cell of your own does (subclass
    [`Cell`][jaxrnn.Cell] too).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> @jaxrnn.params_class
      ... class Affine:
      ...     w: jax.Array  # shape=(input_size, output_size)
      ...     b: jax.Array  # shape=(output_size,)
      >>> params = Affine(w=jnp.ones((3, 2)), b=jnp.zeros(2))
      >>> params
      Affine(w=float32[3,2], b=float32[2])
      >>> jax.grad(lambda p: jnp.sum(jnp.ones(3) @ p.w + p.b))(params).b
      Array([1., 1.], dtype=float32)
    """
    cls = dataclasses.dataclass(frozen=True, repr=False)(cls)
    cls = jax.tree_util.register_dataclass(cls)

    def __repr__(self: Any) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            text = repr(value) if f.metadata.get("static") else describe(value)
            parts.append(f"{f.name}={text}")
        return f"{type(self).__name__}({', '.join(parts)})"

    cls.__repr__ = __repr__  # type: ignore[method-assign]
    return cls
