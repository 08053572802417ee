"""What every cell provides (``Cell``, public), and helpers the cell modules share.

A cell's params type is a frozen dataclass pytree (see [`params_class`][jaxrnn.params_class])
that also carries the cell's equations as methods. A step is split in two, so that the
unrolling code can choose where the input projection is computed:

    projected = params.input_projection(x)          # x W_x + b_x, no dependence on time
    carry, y = params.recurrence(carry, projected)   # everything that needs the state

Cells know nothing about time, masking or unrolling.
"""

from __future__ import annotations

import abc
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

Initializer = Any  # a jax.nn.initializers function: (key, shape, dtype) -> array

LECUN_NORMAL = jax.nn.initializers.lecun_normal()  # default for input weights w_x
ORTHOGONAL = jax.nn.initializers.orthogonal()  # default for recurrent weights w_h, per gate


class Cell(abc.ABC):
    """The interface of a cell's params type: what ``unroll``, ``cell_step``, ``stack`` and
    ``bidirectional`` need. Subclass it in a [`params_class`][jaxrnn.params_class] to define
    your own cell; every method (``"sequential"``, ``remat``, ``"deer"``, ...) and
    composite then runs it.

    A cell defines its sizes and zero state, and a step split in two, so that methods can
    compute the input projection of all steps at once:

        projected = params.input_projection(x)          # x W_x + b_x: no time dependence
        carry, y = params.recurrence(carry, projected)   # everything that needs the state

    (or overrides ``step(carry, x)`` itself). All of them act on one step with any leading
    batch dims; ``unroll`` handles time, lengths, reverse and the carry's dtype.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> @jaxrnn.params_class
      ... class IndRNN(jaxrnn.Cell):  # h' = tanh(x W + b + u * h), Li et al. 2018
      ...     w: jax.Array  # shape=(input_size, hidden_size)
      ...     u: jax.Array  # shape=(hidden_size,)
      ...     b: jax.Array  # shape=(hidden_size,)
      ...     @property
      ...     def input_shape(self): return self.w.shape[:1]
      ...     @property
      ...     def output_size(self): return self.u.shape[0]
      ...     def initial_carry(self, batch_shape, dtype):
      ...         return jnp.zeros((*batch_shape, self.output_size), dtype)
      ...     def input_projection(self, x): return x @ self.w + self.b
      ...     def recurrence(self, h, projected):
      ...         h = jnp.tanh(projected + self.u * h)
      ...         return h, h
      >>> cell = IndRNN(w=jnp.ones((3, 4)), u=jnp.full(4, 0.5), b=jnp.zeros(4))
      >>> carry, ys = jaxrnn.unroll(cell, None, jnp.ones((6, 2, 3)), lengths=jnp.array([6, 2]))
      >>> ys.shape, bool(jnp.all(ys[2:, 1] == 0))
      ((6, 2, 4), True)
    """

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Feature shape of one input ``x`` (``(input_size,)`` for vector cells)."""

    @property
    @abc.abstractmethod
    def output_size(self) -> int:
        """Features of one output ``y``."""

    @abc.abstractmethod
    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        """The state a run starts from for inputs with leading ``batch_shape``, in
        ``dtype``: zeros for the built-in cells, a learned state for ``learned_init``."""

    def zero_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        """The name of ``initial_carry`` before 0.2.0 (it is not always zeros)."""
        warnings.warn(
            "Cell.zero_carry was renamed initial_carry in jaxrnn 0.2.0; the old name goes in 0.3.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.initial_carry(batch_shape, dtype)

    def input_projection(self, x: Any) -> Any:
        """The part of a step that needs no state (``x W_x + b_x``)."""
        raise NotImplementedError(f"{type(self).__name__} defines no input_projection")

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        """The part of a step that needs the state: ``(new_carry, y)``."""
        raise NotImplementedError(f"{type(self).__name__} defines no recurrence")

    def step(self, carry: Any, x: Any) -> tuple[Any, jax.Array]:
        """One time step: ``recurrence(carry, input_projection(x))``."""
        return self.recurrence(carry, self.input_projection(x))


class VectorCell(Cell):
    """Shared structure of cells whose input is a vector and whose state is ``h``.

    The params hold ``w_x`` of shape ``(input_size, gates * hidden_size)`` and ``w_h`` of
    shape ``(hidden_size, gates * hidden_size)``; sizes are read off them. A subclass with a
    richer carry (e.g. an LSTM's ``(h, c)``) overrides ``initial_carry``.
    """

    if TYPE_CHECKING:  # fields of the subclasses' dataclasses, not fields of this class
        w_x: jax.Array
        w_h: jax.Array

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.w_x.shape[0],)

    @property
    def hidden_size(self) -> int:
        return self.w_h.shape[0]

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return jnp.zeros((*batch_shape, self.hidden_size), dtype)


class InputToWidth(Cell):
    """Shared structure of cells whose state has the width of their (projected) input, the
    RG-LRU and the temporal convolution of Griffin: ``u = x W_in + b_in`` when the input
    has another width, ``u = x`` when ``w_in`` is ``None`` (``init_input_projection``).
    A subclass defines ``hidden_size``; the output has that width too.
    """

    if TYPE_CHECKING:  # fields of the subclasses' dataclasses, not fields of this class
        w_in: jax.Array | None
        b_in: jax.Array | None

    @property
    @abc.abstractmethod
    def hidden_size(self) -> int:
        """Width of ``u``, of the state and of the output."""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.hidden_size if self.w_in is None else self.w_in.shape[0],)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def to_width(self, x: jax.Array) -> jax.Array:
        """``u``: ``x``, or ``x W_in + b_in``."""
        return x if self.w_in is None else affine(x, self.w_in, self.b_in)


class Unwrapped(NamedTuple):
    """What runs in the place of a wrapper (see ``WrappedCell.unwrap``)."""

    params: Any  # runs over xs from the wrapper's carry, in the wrapper's place
    xs: Any  # shape=(time, *batch, *params.input_shape), or a pytree with per-step extras
    output_mask: jax.Array | None  # multiplies params' outputs; None: nothing to multiply
    key: jax.Array | None  # for params: a key the wrapper did not use, or None


class WrappedCell(Cell):
    """A params type that wraps another's params in its field ``cell`` and has the wrapped
    params' input shape, output size and carry unless it overrides them (the wrappers for
    mixed precision, regularization, learned initial states and attention).

    ``unroll`` asks a wrapper ``unwrap(xs, key)`` what runs in its place: ``None`` (the
    default) runs the wrapper itself as a cell; an ``Unwrapped`` names other params, their
    inputs (e.g. with per-step random masks beside ``xs``), a mask for their outputs and
    the key left for them. ``unroll`` then runs, exactly::

        inner = params.unwrap(xs, key)
        carry, ys = unroll(inner.params, carry, inner.xs, key=inner.key, ...)
        ys = ys * inner.output_mask  # when it is not None
    """

    if TYPE_CHECKING:  # a field of the subclasses' dataclasses, not of this class
        cell: Any

    def unwrap(self, xs: Any, key: jax.Array | None) -> Unwrapped | None:
        """What ``unroll`` runs in this wrapper's place over ``xs`` with ``key``; ``None``:
        the wrapper itself, as a cell."""
        return None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.cell.input_shape

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    def initial_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return self.cell.initial_carry(batch_shape, dtype)


def affine(x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """``x @ w + b`` (``b`` may be ``None``), over any leading dims of ``x``."""
    y = x @ w
    return y if b is None else y + b


def gatewise(init: Initializer, num_gates: int) -> Initializer:
    """Apply ``init`` to each ``(rows, hidden)`` gate block of a ``(rows, gates*hidden)`` matrix.

    An orthogonal recurrent matrix should be orthogonal per gate, not across gates.
    Blocks of half-precision dtypes are drawn in float32 and cast, because the QR
    decomposition behind ``orthogonal()`` has no float16/bfloat16 kernel on CPU.
    """

    def init_blocks(key: jax.Array, shape: tuple[int, int], dtype: Any = jnp.float32):
        rows, cols = shape
        keys = jax.random.split(key, num_gates)
        draw_dtype = jnp.promote_types(dtype, jnp.float32)
        blocks = [init(k, (rows, cols // num_gates), draw_dtype) for k in keys]
        return jnp.concatenate(blocks, axis=-1).astype(dtype)

    return init_blocks


def init_biases(
    key: jax.Array, bias: bool, size: int, bias_init: Initializer, dtype: Any
) -> tuple[jax.Array | None, jax.Array | None]:
    """Input and recurrent biases ``(b_x, b_h)``, both ``None`` when ``bias=False``."""
    if not bias:
        return None, None
    kx, kh = jax.random.split(key)
    return bias_init(kx, (size,), dtype), bias_init(kh, (size,), dtype)


def bias_shape_text(b: jax.Array | None) -> str:
    return "None" if b is None else str(tuple(b.shape))


def init_input_projection(
    key: jax.Array,
    input_size: int,
    hidden_size: int,
    *,
    bias: bool,
    proj_init: Initializer,
    bias_init: Initializer,
    dtype: Any,
) -> tuple[jax.Array | None, jax.Array | None]:
    """``(w_in, b_in)`` of a cell whose state has its input's width (RG-LRU, temporal
    convolution): ``u = x W_in + b_in`` when ``input_size != hidden_size``, ``(None,
    None)`` (``u = x``) when they are equal; ``b_in`` is ``None`` without bias."""
    if input_size == hidden_size:
        return None, None
    kw, kb = jax.random.split(key)
    return (
        proj_init(kw, (input_size, hidden_size), dtype),
        bias_init(kb, (hidden_size,), dtype) if bias else None,
    )
