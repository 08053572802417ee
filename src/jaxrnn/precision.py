"""Mixed precision: compute in bfloat16, keep params and the carry in float32.

Three dtypes are at play in an RNN, and jaxrnn keeps them apart:

- **param dtype**: what the weights are stored and updated in (``init_params(...,
  dtype=...)``, or [`cast_params`][jaxrnn.precision.cast_params]). Keep float32 for training:
  optimizer updates are often smaller than bfloat16's resolution.
- **compute dtype**: what the matmuls and gate nonlinearities run in. bfloat16 halves
  memory traffic and runs on the matrix units of TPUs and recent GPUs.
- **carry dtype**: what the state is stored in between steps. [`unroll`][jaxrnn.unroll]
  fixes it once, from the initial carry (by default ``result_type(param dtype, xs
  dtype)``), and casts every step's new carry back to it, so it never changes inside
  ``lax.scan``.

[`mixed_precision`][jaxrnn.precision.mixed_precision] wraps every cell of a params pytree in
[`MixedPrecision`][jaxrnn.precision.MixedPrecision], which casts the weights and inputs to the
compute dtype at each step (XLA hoists the weight casts out of the loop). The policy for the carry:

- LSTM: ``h`` is rounded to the compute dtype, because it feeds the recurrent matmul;
  the cell state ``c``, which only enters ``c' = f * c + i * g``, stays in the carry
  dtype, so that update is computed and accumulated in float32. This is where float32
  matters: ``c`` sums many small increments over long sequences, and in bfloat16
  increments below ``2**-8`` of ``c`` are lost.
- GRU and Elman RNN: the state is itself the matmul input, so it is rounded to the
  compute dtype every step; storing it in float32 between steps changes nothing.

Outputs ``ys`` come out in the compute dtype; gradients with respect to the (float32)
params come out in float32, since the casts are differentiated like any other op.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells import Cell, LSTMState
from jaxrnn.cells.base import WrappedCell
from jaxrnn.core.checks import check_floating_dtype, fail
from jaxrnn.core.params import params_class, static_field

__all__ = ["MixedPrecision", "cast_params", "full_precision", "mixed_precision"]


def cast_params(params: Any, dtype: Any) -> Any:
    """``params`` with every floating-point array cast to ``dtype`` (same structure).

    Changes the param dtype, e.g. to store or serve a model in bfloat16. To compute in
    bfloat16 while training float32 params, use
    [`mixed_precision`][jaxrnn.precision.mixed_precision] instead.

    Args:
      params: any params pytree (or gradients).
      dtype: the new floating dtype.

    Returns:
      The same pytree type with floating leaves in ``dtype``; other leaves unchanged.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> cast_params(params, jnp.bfloat16).w_h.dtype
      dtype(bfloat16)
    """
    dtype = check_floating_dtype("cast_params", "dtype", dtype)
    for leaf in jax.tree.leaves(params):
        if not hasattr(leaf, "dtype"):
            expected = "be a pytree of arrays"
            fail("cast_params", "params", expected, type(leaf).__name__, TypeError)

    return jax.tree.map(lambda x: _to_compute(x, dtype), params)


def _to_compute(x: jax.Array, dtype: Any) -> jax.Array:
    # Only real floating arrays: a complex state (e.g. the LRU's) keeps its dtype.
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x


def _compute_carry(carry: Any, dtype: Any) -> Any:
    """The carry as the cell sees it: matmul inputs in ``dtype``; an LSTM's ``c`` kept."""
    if isinstance(carry, LSTMState):
        return LSTMState(h=_to_compute(carry.h, dtype), c=carry.c)
    return jax.tree.map(lambda x: _to_compute(x, dtype), carry)


@params_class
class MixedPrecision(WrappedCell):
    """A cell whose steps compute in ``compute_dtype``; params and carry keep their dtypes.

    ``step(carry, x)`` is the wrapped cell's step on ``cast_params(cell, compute_dtype)``
    and ``x.astype(compute_dtype)``, with the carry policy of
    [`jaxrnn.precision`][jaxrnn.precision]; the new carry is cast back to the incoming carry's
    dtypes. Make these with [`mixed_precision`][jaxrnn.precision.mixed_precision].
    """

    cell: Any  # the wrapped cell's params (stored in the param dtype)
    compute_dtype: Any = static_field(jnp.dtype(jnp.bfloat16))

    def input_projection(self, x: jax.Array) -> Any:
        cell = cast_params(self.cell, self.compute_dtype)
        return cell.input_projection(x.astype(self.compute_dtype))

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        cell = cast_params(self.cell, self.compute_dtype)
        # bfloat16 gates times a float32 cell state must give float32 (the point of the
        # policy), also under jax_numpy_dtype_promotion="strict".
        with jax.numpy_dtype_promotion("standard"):
            new, y = cell.recurrence(_compute_carry(carry, self.compute_dtype), projected)
        new = jax.tree.map(lambda n, o: n.astype(o.dtype), new, carry)
        return new, _to_compute(y, self.compute_dtype)


def _param_children(params: Any) -> dict[str, Any]:
    """The non-static fields of a params dataclass (its children in the pytree)."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        return {}
    fields = dataclasses.fields(params)
    return {f.name: getattr(params, f.name) for f in fields if not f.metadata.get("static")}


def _holds_params(x: Any) -> bool:
    if type(x) in (tuple, list):
        return any(map(_holds_params, x))
    return hasattr(x, "initial_carry")


def _map_cells(fn: Any, params: Any) -> Any:
    """Apply ``fn`` to every innermost cell, keeping what is around it.

    Composites and wrapper cells (``regularize``, ``learned_init``, ...) hold other params
    and run them through their own unrollers, so ``fn`` goes inside them, never around.
    """
    if type(params) in (tuple, list):  # a stack's layers; not a NamedTuple carry
        return type(params)(_map_cells(fn, p) for p in params)
    if isinstance(params, MixedPrecision):
        return fn(params)
    children = _param_children(params)
    if any(map(_holds_params, children.values())):
        mapped = {name: _map_cells(fn, value) for name, value in children.items()}
        return dataclasses.replace(params, **mapped)  # type: ignore[type-var]
    return fn(params) if isinstance(params, Cell) else params


def mixed_precision(params: Any, compute_dtype: Any = jnp.bfloat16) -> Any:
    """Wrap every cell of ``params`` so that it computes in ``compute_dtype``.

    Composites ([`stack`][jaxrnn.stack], [`bidirectional`][jaxrnn.bidirectional]) and wrapper cells
    ([`regularize`][jaxrnn.regularization.regularize],
    [`learned_init`][jaxrnn.carries.learned_init], ...) keep their structure; each innermost cell
    becomes a [`MixedPrecision`][jaxrnn.precision.MixedPrecision]. The params' arrays are not copied
    or cast: train them as usual (in float32) and the casts happen in the step.
    [`full_precision`][jaxrnn.precision.full_precision] removes the wrappers (e.g. before
    [`to_torch`][jaxrnn.interop.torch.to_torch]).

    Args:
      params: cell or composite params.
      compute_dtype: floating dtype of the matmuls and gates, e.g. ``jnp.bfloat16``.

    Returns:
      Params of the same structure with every cell wrapped.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 8, num_layers=2)
      >>> carry, ys = jaxrnn.unroll(mixed_precision(params), None, jnp.ones((5, 2, 3)))
      >>> ys.dtype, carry[-1].c.dtype  # bfloat16 compute, float32 cell state
      (dtype(bfloat16), dtype('float32'))
    """
    if not hasattr(params, "initial_carry"):
        fail("mixed_precision", "params", "be jaxrnn params", type(params).__name__, TypeError)
    dtype = check_floating_dtype("mixed_precision", "compute_dtype", compute_dtype)
    return _map_cells(lambda cell: _wrap(cell, dtype), params)


def _wrap(cell: Any, dtype: jnp.dtype) -> MixedPrecision:
    wrapped = MixedPrecision(full_precision(cell), dtype)
    # Trace one step abstractly (no compute) so that a cell whose equations cannot run in
    # ``dtype`` (e.g. the LRU's complex recurrence needs float32) fails here, clearly.
    carry = jax.eval_shape(lambda: wrapped.initial_carry((), jnp.float32))
    x = jax.ShapeDtypeStruct(wrapped.input_shape, jnp.float32)
    try:
        jax.eval_shape(wrapped.step, carry, x)
    except TypeError as error:
        fail(
            "mixed_precision",
            "params",
            f"have cells that can compute in {dtype}",
            f"{type(cell).__name__}, which raised: {error}",
            TypeError,
        )
    return wrapped


def full_precision(params: Any) -> Any:
    """``params`` without [`MixedPrecision`][jaxrnn.precision.MixedPrecision] wrappers: the inverse
    of [`mixed_precision`][jaxrnn.precision.mixed_precision] (the arrays were never cast, so nothing
    is lost).

    Example:
      >>> import jax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> full_precision(mixed_precision(params)) == params
      True
    """

    if not hasattr(params, "initial_carry"):
        fail("full_precision", "params", "be jaxrnn params", type(params).__name__, TypeError)

    def unwrap(cell: Any) -> Any:
        return cell.cell if isinstance(cell, MixedPrecision) else cell

    return _map_cells(unwrap, params)
