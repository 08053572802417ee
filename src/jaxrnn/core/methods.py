"""How params run over time: method objects, and the one place composites are taken apart.

[`unroll`][jaxrnn.unroll] validates its arguments, then calls ``method.unroll_params(params, carry,
xs, run)``. Every method inherits that from [`Method`][jaxrnn.core.methods.Method], where it
is ``unroll_parts``, read top to bottom:

    Stack          -> each layer in turn (method.unroll of the layer), dropout between them
    Bidirectional  -> forward, then backward with reverse flipped; outputs merged
    Composite      -> params.unroll_parts(carry, xs, run): a user's own composite
    WrappedCell    -> params.unwrap(xs, key): what runs in its place (or None: a cell)
    a cell         -> method.unroll_cell(cell, carry, xs, run): the lax.scan (or parallel
                      scan, Newton solve, cuDNN call) of that method

A method is a value that carries its own settings: [`Sequential`][jaxrnn.core.methods.Sequential]
(``unroll``, ``remat``), [`HandDerivatives`][jaxrnn.core.methods.HandDerivatives],
[`Auto`][jaxrnn.core.methods.Auto] here; ``jaxrnn.parallel.Parallel`` and
``jaxrnn.parallel.DEER`` (tolerance, iteration cap, damping, trust region) and
``jaxrnn.cudnn.CuDNN`` in their modules. The strings of ``unroll(..., method=...)`` are
aliases of their defaults ([`as_method`][jaxrnn.core.methods.as_method]).

**When a method cannot run a cell** it raises [`MethodError`][jaxrnn.core.methods.MethodError]
(a ``ValueError``) in jaxrnn's one message format, ``unroll: params must <what the
method needs> for method=<the method>; <what to use instead>; got <the cell's type>``;
this is the same for every method. ``Auto`` never raises: it chooses per cell. The one exception is
``CuDNN``, a backend kernel: it runs what cuDNN can take and falls back to ``lax.scan``
with a ``CuDNNFallbackWarning`` elsewhere, because a program written for the GPU must run
unchanged on a laptop and in CI, where there is no cuDNN (see ``jaxrnn.cudnn``).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells.base import Unwrapped, WrappedCell
from jaxrnn.core import hand_derivatives
from jaxrnn.core.checks import check_bool, fail
from jaxrnn.core.composites import Bidirectional, BidirectionalState, Composite, Stack
from jaxrnn.core.dropout import dropout

__all__ = [
    "METHOD_NAMES",
    "Auto",
    "HandDerivatives",
    "Method",
    "MethodError",
    "Run",
    "Sequential",
    "as_method",
    "unroll_parts",
]


class Run(NamedTuple):
    """How one ``unroll`` call runs, passed down through composites unchanged except where
    a composite changes it (a backward direction flips ``reverse``; a stack splits ``key``)."""

    valid: jax.Array | None  # shape=(time, *batch), bool: t < lengths; None without lengths
    reverse: bool
    key: jax.Array | None  # PRNG key, None in evaluation mode
    method: Method  # runs each cell (and may take whole composites: CuDNN)
    # Also output every carry: each run returns (carry, (ys, carries)), the carries with
    # a time axis in the carry's structure (jaxrnn.carries.with_carry_outputs).
    carry_outputs: bool = False


class MethodError(ValueError):
    """A method was asked to run params it cannot run; the message says why and what to
    use instead."""


class Method:
    """How cells run over time. A subclass defines ``unroll_cell``; composites and wrappers
    are taken apart by ``unroll``, the same for every method (``unroll_parts``).

    ``unroll_cell`` returns ``(carry, ys)``, and with ``run.carry_outputs`` (set by
    ``with_carry_outputs``) ``(carry, (ys, carries))``; a method that cannot output its
    carries leaves ``outputs_carries`` False and is refused with a ``MethodError``.
    """

    outputs_carries = False

    #: ``unroll`` runs the method under its own ``jax.jit`` (one program per shape, cached):
    #: False for a method with effects on the host at each call (a warning, an error raised
    #: from computed values), which must then run op by op outside ``jit``.
    compiled: ClassVar[bool] = True

    def unroll_params(self, params: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, Any]:
        """Run any params: composites and wrappers part by part, cells by ``unroll_cell``."""
        return unroll_parts(params, carry, xs, run)

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, jax.Array]:
        """Run one cell over ``xs`` (masked already), ``(time, *batch, *input_shape)``."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """How messages name this method: ``method='parallel'`` for a string alias's
        default, ``method=Parallel(strategy='chunked', ...)`` for any other object."""
        for name in METHOD_NAMES:
            if type(as_method(name)) is type(self) and as_method(name) == self:
                return f"method={name!r}"
        return f"method={self!r}"

    def cannot_run(self, cell: Any, must: str, instead: str) -> MethodError:
        """The error every method raises for a cell it cannot run, in the format of every
        jaxrnn error: ``unroll: params must <what the method needs> for <method> (<what to
        use instead>); got <the cell's type>``."""
        return MethodError(
            f"unroll: params must {must} for {self.label}; {instead}; got {type(cell).__name__}"
        )


def check_unroll(owner: str, value: Any) -> int | bool:
    """A method's ``unroll`` setting: a positive int or a bool (``lax.scan``'s)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if not isinstance(value, numbers.Integral):
        fail(owner, "unroll", "be a positive int or a bool", repr(value), TypeError)
    if value < 1:
        fail(owner, "unroll", "be a positive int or a bool", repr(value))
    return int(value)


@dataclasses.dataclass(frozen=True)
class Sequential(Method):
    """``lax.scan`` of the cell's step, masked: every cell, and the reference of the others.

    Args:
      unroll: steps per loop iteration of ``lax.scan`` (a positive int, or ``True`` for all).
      remat: store only the carry entering each segment of about ``sqrt(time)`` steps and
        recompute the segments in the backward pass (memory ``O(sqrt(time))``).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn.core.methods import Sequential
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 3, 4)
      >>> _, ys = jaxrnn.unroll(params, None, jnp.ones((9, 3)), method=Sequential(remat=True))
      >>> ys.shape
      (9, 4)
    """

    unroll: int | bool = 1
    remat: bool = False
    outputs_carries = True

    def __post_init__(self) -> None:
        check_unroll("Sequential", self.unroll)
        check_bool("Sequential", "remat", self.remat)

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, Any]:
        return scan_cell(
            cell, carry, xs, run.valid, run.reverse, self.unroll, self.remat, run.carry_outputs
        )


@dataclasses.dataclass(frozen=True)
class HandDerivatives(Method):
    """The built-in ``"rnn"``, ``"lstm"`` (without ``proj_size``) and ``"gru"``
    (``reset_after=True``) cells with hand-scheduled derivatives (alias ``"fused"``).

    The same function as ``Sequential``; its derivative rule keeps the per-step gate
    values and computes the weight and input gradients as single GEMMs after the loop
    (``jaxrnn.core.hand_derivatives``, ``docs/performance.md``). Other cells raise
    ``MethodError``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn.core.methods import HandDerivatives
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> _, ys = jaxrnn.unroll(params, None, jnp.ones((5, 3)), method=HandDerivatives())
      >>> _, ref = jaxrnn.unroll(params, None, jnp.ones((5, 3)), method="sequential")
      >>> bool(jnp.allclose(ys, ref, atol=1e-6))
      True
    """

    unroll: int | bool = 1

    def __post_init__(self) -> None:
        check_unroll("HandDerivatives", self.unroll)

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, jax.Array]:
        fast = hand_derivatives.fast_unroll(cell, carry, xs, run.valid, run.reverse, self.unroll)
        if fast is None:
            raise self.cannot_run(
                cell,
                "be a cell with hand-written derivatives (RNNParams, LSTMParams without "
                "proj_size, GRUParams with reset_after=True) whose params, carry and xs "
                "share one floating dtype",
                "use method='sequential' (the same function) or 'auto'",
            )
        return fast


@dataclasses.dataclass(frozen=True)
class Auto(Method):
    """The default: per cell and size, the method measured fastest on XLA:CPU
    (``docs/performance.md``).

    ``HandDerivatives`` for LSTM cells without ``proj_size`` at every size, and for GRU
    cells with ``reset_after=True`` while the state per step is small,
    ``batch * hidden_size <= 8192`` (``jaxrnn.core.hand_derivatives.FUSED_MAX_STATE``),
    when params, carry and inputs share a dtype: training took 0.5-0.9x the plain scan's
    time at small states and, for the LSTM, 0.84-1.02x at large ones, the forward the same
    within noise (``benchmarks/fused_or_scan.py``). The fused GRU trades memory for that
    speed (1.5-1.6x the scan's); ``remat=True`` runs the plain scan by segments.
    ``Sequential`` for every other cell, for GRUs above that size (where the plain scan
    trained as fast or up to 1.3x faster), and whenever ``remat`` is on. Never raises
    ``MethodError``.
    """

    unroll: int | bool = 1
    remat: bool = False
    outputs_carries = True

    def __post_init__(self) -> None:
        check_unroll("Auto", self.unroll)
        check_bool("Auto", "remat", self.remat)

    def unroll_cell(self, cell: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, Any]:
        if not (self.remat or run.carry_outputs) and hand_derivatives.prefers_fused(cell, xs):
            # None where the kernel does not apply to these arrays (mixed dtypes).
            fast = hand_derivatives.fast_unroll(
                cell, carry, xs, run.valid, run.reverse, self.unroll
            )
            if fast is not None:
                return fast
        return Sequential(self.unroll, self.remat).unroll_cell(cell, carry, xs, run)


#: The strings ``unroll(..., method=...)`` takes, each the alias of a method's default.
METHOD_NAMES = (
    "sequential",
    "fused",
    "auto",
    "parallel",
    "deer",
    "quasi_deer",
    "elk",
    "quasi_elk",
    "cudnn",
)


def as_method(method: Any, *, unroll: Any = 1, remat: Any = False) -> Method:
    """The method object of ``unroll(..., method=method, unroll=unroll, remat=remat)``.

    A string is the alias of a default: ``"auto"`` is ``Auto(unroll, remat)``,
    ``"sequential"`` is ``Sequential(unroll, remat)``, ``"fused"`` is
    ``HandDerivatives(unroll)``, ``"parallel"`` is ``jaxrnn.parallel.Parallel()``,
    ``"deer"``/``"quasi_deer"``/``"elk"``/``"quasi_elk"`` are ``jaxrnn.parallel.DEER``
    presets and ``"cudnn"`` is ``jaxrnn.cudnn.CuDNN(unroll, remat)``. A method object
    carries its own settings, so ``unroll`` and ``remat`` must then keep their defaults.

    Example:
      >>> from jaxrnn.core.methods import as_method
      >>> as_method("sequential", remat=True)
      Sequential(unroll=1, remat=True)
    """
    check_unroll("unroll", unroll)
    check_bool("unroll", "remat", remat)
    if isinstance(method, Method):
        for name, value, default in (("unroll", unroll, 1), ("remat", remat, False)):
            if value is not default and value != default:
                fail(
                    "unroll",
                    name,
                    f"keep its default when method is a method object (set it on the "
                    f"object, e.g. Sequential({name}=...))",
                    f"{name}={value!r} with method={method!r}",
                )
        return method
    if method == "auto":
        return Auto(unroll, remat)
    if method == "sequential":
        return Sequential(unroll, remat)
    if method == "cudnn":
        from jaxrnn.cudnn import CuDNN  # jax.experimental.rnn is loaded only when asked for

        return CuDNN(unroll, remat)
    if method in METHOD_NAMES:
        if remat:
            fail("unroll", "remat", f"be False with method={method!r} (no remat)", "True")
        if method == "fused":
            return HandDerivatives(unroll)
        from jaxrnn import parallel  # the parallel-in-time methods live in their module

        return parallel.PRESETS[method]
    options = ", ".join(repr(name) for name in METHOD_NAMES)
    fail("unroll", "method", f"be one of {options} or a Method object", repr(method))


def expand_mask(mask: jax.Array, leaf: jax.Array) -> jax.Array:
    """Broadcastable mask: ``mask`` has the batch dims, ``leaf`` trailing feature dims too.
    Every method masks padded steps with it."""
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


def with_dtypes(new: Any, old: Any) -> Any:
    """Keep the carry's dtype: a carry never changes type from one step to the next."""
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


def scan_cell(
    cell: Any,
    carry: Any,
    xs: Any,
    valid: jax.Array | None,
    reverse: bool,
    unroll: int | bool = 1,
    remat: bool = False,
    carry_outputs: bool = False,
) -> tuple[Any, Any]:
    """The sequential run: one ``cell.step`` per ``lax.scan`` iteration, masked.

    Masked steps (``valid[t] == False``) keep the carry and emit zeros. With ``remat`` it
    stores only the carry entering each segment of about ``sqrt(time)`` steps
    (``hand_derivatives.remat_scan``). With ``carry_outputs`` each step outputs
    ``(y, new_carry)`` (zeros at masked steps).
    """

    def body(carry, inputs):
        x, valid_t = inputs
        new, y = cell.step(carry, x)
        new = with_dtypes(new, carry)
        out = (y, new) if carry_outputs else y
        if valid_t is not None:
            new = jax.tree.map(lambda n, o: jnp.where(expand_mask(valid_t, n), n, o), new, carry)
            out = jax.tree.map(
                lambda o: jnp.where(expand_mask(valid_t, o), o, 0).astype(o.dtype), out
            )
        return new, out

    inputs = (xs, valid)
    if remat:
        return hand_derivatives.remat_scan(body, carry, inputs, reverse=reverse, unroll=unroll)
    return jax.lax.scan(body, carry, inputs, reverse=reverse, unroll=unroll)


def stack_keys(key: jax.Array | None, num_layers: int) -> tuple[list, list]:
    """``(layer_keys, dropout_keys)`` of a ``Stack`` run with ``key``: layer ``i`` gets
    ``split(key, 2 n)[i]`` and the dropout after it ``split(key, 2 n)[n + i]`` (all
    ``None`` without a key). Everything that runs a stack draws its masks this way."""
    if key is None:
        return [None] * num_layers, [None] * num_layers
    keys = list(jax.random.split(key, 2 * num_layers))
    return keys[:num_layers], keys[num_layers:]


def bidirectional_runs(run: Run) -> tuple[Run, Run]:
    """The runs of a bidirectional pair's forward and backward directions: the key split
    in two, and ``reverse`` flipped for the backward one."""
    kf, kb = (None, None) if run.key is None else jax.random.split(run.key)
    return run._replace(key=kf), run._replace(key=kb, reverse=not run.reverse)


def _split(out: Any, run: Run) -> tuple[Any, Any]:
    """``(ys, carries)`` of a run's outputs; ``carries`` is ``None`` without carry outputs."""
    return out if run.carry_outputs else (out, None)


def _join(ys: Any, carries: Any, run: Run) -> Any:
    return (ys, carries) if run.carry_outputs else ys


def unroll_parts(params: Any, carry: Any, xs: Any, run: Run) -> tuple[Any, Any]:
    """Take composites and wrappers apart down to cells, which ``run.method`` runs."""
    method = run.method
    if isinstance(params, Stack):
        n = len(params.layers)
        layer_keys, dropout_keys = stack_keys(run.key, n)
        new_carry, carries = [], []
        for i, (layer, layer_carry) in enumerate(zip(params.layers, carry, strict=True)):
            layer_run = run._replace(key=layer_keys[i])
            layer_carry, out = method.unroll_params(layer, layer_carry, xs, layer_run)
            xs, layer_carries = _split(out, run)
            if dropout_keys[i] is not None and i < n - 1 and params.dropout > 0:
                xs = dropout(dropout_keys[i], xs, params.dropout)
            new_carry.append(layer_carry)
            carries.append(layer_carries)
        return tuple(new_carry), _join(xs, tuple(carries), run)
    if isinstance(params, Bidirectional):
        forward_run, backward_run = bidirectional_runs(run)
        carry_f, out_f = method.unroll_params(params.forward, carry.forward, xs, forward_run)
        carry_b, out_b = method.unroll_params(params.backward, carry.backward, xs, backward_run)
        (ys_f, carries_f), (ys_b, carries_b) = _split(out_f, run), _split(out_b, run)
        ys = params.merge_outputs(ys_f, ys_b)
        return BidirectionalState(carry_f, carry_b), _join(
            ys, BidirectionalState(carries_f, carries_b), run
        )
    if isinstance(params, Composite):
        return params.unroll_parts(carry, xs, run)
    inner: Unwrapped | None = None
    if isinstance(params, WrappedCell):
        inner = params.unwrap(xs, run.key)
    if inner is None:
        if run.carry_outputs and not method.outputs_carries:
            raise method.cannot_run(
                params,
                "be run by a method that outputs every step's carry (with_carry_outputs)",
                "use method='sequential'",
            )
        return method.unroll_cell(params, carry, xs, run)
    carry, out = method.unroll_params(inner.params, carry, inner.xs, run._replace(key=inner.key))
    ys, carries = _split(out, run)
    if inner.output_mask is not None:
        ys = ys * inner.output_mask
    return carry, _join(ys, carries, run)
