"""Input validation with one message format.

Every message reads ``"<function>: <argument> must <expectation>; got <what came>"``, so
users see which call, which argument, what was expected and what was given. All checks
look at shapes, dtypes and tree structure only, so they run at trace time under ``jit``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.core.params import describe


def fail(
    where: str, argument: str, expected: str, got: str, error: type[Exception] = ValueError
) -> NoReturn:
    """Raise ``error`` with the library's message format."""
    raise error(f"{where}: {argument} must {expected}; got {got}")


def shape_text(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def check_array(where: str, argument: str, x: Any) -> jax.Array:
    """``x`` as an array; a clear ``TypeError`` for things that are not arrays."""
    if x is None or isinstance(x, (str, bytes, dict, list, tuple)):
        fail(where, argument, "be an array", type(x).__name__, TypeError)
    try:
        return jnp.asarray(x)
    except TypeError:
        fail(where, argument, "be an array", type(x).__name__, TypeError)


def check_floating(where: str, argument: str, x: jax.Array) -> None:
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        fail(where, argument, "have a floating dtype", str(x.dtype), TypeError)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        # A complex state (the LRU's) is stored as two real arrays; inputs are real.
        fail(where, argument, "have a real floating dtype (not complex)", str(x.dtype), TypeError)


def widen_lengths(lengths: Any, num_steps: int) -> jax.Array:
    """Integer ``lengths`` clipped to ``[0, num_steps]`` as int32, whatever their dtype.

    The clip happens in the lengths' own dtype with bounds that dtype can hold, then the
    result is widened: clipping an int8 to ``num_steps=200`` in int8 would wrap the bound.
    NumPy lengths are clipped before they become JAX arrays, since without ``jax_enable_x64``
    JAX would first wrap a 64-bit value to 32 bits.
    """
    info = np.iinfo(lengths.dtype)
    bounds = (max(0, int(info.min)), min(int(num_steps), int(info.max)))
    if isinstance(lengths, np.ndarray | np.generic):
        lengths = np.clip(lengths, *bounds)
    clipped = jnp.clip(jnp.asarray(lengths), *bounds)
    return clipped.astype(jnp.int32)  # every value is now in [0, num_steps]


def check_features(
    where: str,
    argument: str,
    x: jax.Array,
    feature_shape: Sequence[int],
    leading: Sequence[str],
    feature_names: Sequence[str] = ("input_size",),
    trailing: Sequence[str] = (),
) -> tuple[int, ...]:
    """Check ``x.shape == (*leading, *batch, *trailing, *feature_shape)``; return the batch
    shape.

    ``leading`` names axes that must be present before the batch axes (e.g. ``("time",)``),
    ``trailing`` axes between the batch axes and the features (``("time",)`` batch-major).
    """
    feature_shape = tuple(feature_shape)
    # Dims before the named ones (a ConvLSTM's height and width) are shown as plain sizes.
    names = ("",) * (len(feature_shape) - len(feature_names)) + tuple(feature_names)
    dims = (f"{n}={d}" if n else str(d) for n, d in zip(names, feature_shape, strict=True))
    named = ", ".join([*leading, "...", *trailing, *dims])
    nf, nl, nt = len(feature_shape), len(leading), len(trailing)
    if x.ndim < nf + nl + nt or tuple(x.shape[x.ndim - nf :]) != feature_shape:
        fail(where, argument, f"have shape ({named})", shape_text(x.shape))
    return tuple(x.shape[nl : x.ndim - nf - nt])


def check_lengths(
    where: str,
    lengths: Any,
    batch_shape: tuple[int, ...],
    num_steps: int,
    *,
    argument: str = "lengths",
    of: str = "xs",
) -> jax.Array:
    """Validate ``lengths`` (integer, shape == batch shape of ``of``); clip to
    ``[0, num_steps]`` and widen to int32 (``widen_lengths``). ``argument`` and ``of`` name
    the two in the messages."""
    if not isinstance(lengths, np.ndarray | np.generic):
        lengths = check_array(where, argument, lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        fail(where, argument, "have an integer dtype", str(lengths.dtype), TypeError)
    if tuple(lengths.shape) != tuple(batch_shape):
        fail(
            where,
            argument,
            f"have the batch shape of {of} {shape_text(batch_shape)}",
            shape_text(lengths.shape),
        )
    return widen_lengths(lengths, num_steps)


def check_tree_like(where: str, argument: str, tree: Any, expected: Any, hint: str) -> None:
    """Check that ``tree`` has ``expected``'s structure and leaf shapes (dtypes may differ)."""
    same: bool = jax.tree.structure(tree) == jax.tree.structure(expected)  # type: ignore[operator]
    if same:
        same = all(
            jnp.shape(a) == jnp.shape(b)
            for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(expected), strict=True)
        )
    if not same:
        fail(where, argument, f"match {hint}: {describe(expected)}", describe(tree))


def check_choice(where: str, argument: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        fail(where, argument, f"be one of {options}", repr(value))


def check_rate(where: str, argument: str, rate: Any) -> float:
    """A dropout or zoneout rate: a real number in ``[0, 1)``, returned as a float."""
    # numbers.Real admits NumPy scalars (np.float32 is not a float); bool is not a rate.
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= float(rate) < 1:
        fail(where, argument, "be a number in [0, 1)", repr(rate))
    return float(rate)


def check_key(where: str, key: Any, *, optional: bool = True) -> None:
    """One PRNG key: a typed key of shape ``()`` or a raw ``uint32[2]`` one. ``optional``
    only changes the message (whether ``None`` is also accepted by the caller)."""
    is_typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    is_raw = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    if not (is_typed and key.shape == ()) and not is_raw:
        expected = "be a single PRNG key (jax.random.key(seed))" + (" or None" if optional else "")
        fail(where, "key", expected, _describe_key(key), TypeError)


def _describe_key(key: Any) -> str:
    if isinstance(key, jax.Array):
        return f"{key.dtype}{list(key.shape)}"
    return type(key).__name__


def check_bool(where: str, argument: str, value: Any) -> bool:
    """A flag: ``True`` or ``False`` (NumPy's bools too), never a truthy string or number."""
    if not isinstance(value, bool | np.bool_):
        fail(where, argument, "be a bool", repr(value), TypeError)
    return bool(value)


def time_first(x: jax.Array, time_major: bool, feature_dims: int) -> jax.Array:
    """``x`` with time first: unchanged when ``time_major``, else its time axis (the one
    before the ``feature_dims`` trailing feature axes) moved to the front."""
    return x if time_major else jnp.moveaxis(x, x.ndim - 1 - feature_dims, 0)


def check_int(
    where: str, argument: str, value: Any, *, minimum: int = 1, optional: bool = False
) -> Any:
    """A count or size: an int (NumPy's too, not a bool) ``>= minimum``, returned as an
    int; ``TypeError`` for a non-int, ``ValueError`` for one below ``minimum``. With
    ``optional``, ``None`` is returned as it came."""
    if optional and value is None:
        return None
    kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    expected = f"be {kind}" + (" or None" if optional else "")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        fail(where, argument, expected, repr(value), TypeError)
    if value < minimum:
        fail(where, argument, expected, repr(value))
    return int(value)


def check_number(
    where: str,
    argument: str,
    value: Any,
    expected: str,
    valid: Callable[[float], bool] = lambda _: True,
    *,
    optional: bool = False,
) -> Any:
    """A real number (NumPy's too, not a bool) for which ``valid`` holds; ``expected``
    says which (``"be > 0"``). A scalar JAX array passes unchecked: under ``jit`` it may be
    traced, so its value is unknown. With ``optional``, ``None`` passes too."""
    if optional and value is None:
        return None
    if isinstance(value, jax.Array) and value.ndim == 0:
        dtype = value.dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
            fail(where, argument, expected, f"an array of dtype {dtype}", TypeError)
        return value
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        fail(where, argument, expected, repr(value), TypeError)
    if not valid(float(value)):
        fail(where, argument, expected, repr(value))
    return value


def check_floating_dtype(where: str, argument: str, dtype: Any) -> Any:
    """A real floating dtype (``jnp.bfloat16``, ``"float32"``), returned as a ``jnp.dtype``.
    ``None`` is refused: NumPy would read it as float64, silently."""
    try:
        resolved = jnp.dtype(dtype) if dtype is not None else None
    except TypeError:
        resolved = None
    if resolved is None:
        fail(where, argument, "be a floating dtype", repr(dtype), TypeError)
    if not jnp.issubdtype(resolved, jnp.floating):
        fail(where, argument, "be a floating dtype", str(resolved), TypeError)
    return resolved


def check_token(where: str, argument: str, token: Any, vocab_size: int | None = None) -> int:
    """A token id: an int (NumPy's too, not a bool) in ``[0, vocab_size)``, or ``>= 0``
    when the vocabulary is not known."""
    expected = "be a token id, an int" + (
        f" in [0, vocab_size={vocab_size})" if vocab_size is not None else " >= 0"
    )
    if isinstance(token, bool | np.bool_) or not isinstance(token, numbers.Integral):
        fail(where, argument, expected, repr(token), TypeError)
    if int(token) < 0 or (vocab_size is not None and int(token) >= vocab_size):
        fail(where, argument, expected, repr(token))
    return int(token)


def check_callable(where: str, argument: str, value: Any, optional: bool = False) -> None:
    if not callable(value) and not (optional and value is None):
        expected = "be a function" + (" or None" if optional else "")
        fail(where, argument, expected, type(value).__name__, TypeError)
