"""Regularisation inside a recurrent layer: variational dropout and zoneout.

All of it is driven by the ``key`` of [`unroll`][jaxrnn.unroll]: with ``key=None``
(evaluation) no dropout is applied and zoneout takes its expectation, so a model is
evaluated by leaving out the key. [`cell_step`][jaxrnn.cell_step] is always the evaluation step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.cells.base import Unwrapped, WrappedCell
from jaxrnn.core.checks import (
    check_array,
    check_features,
    check_floating,
    check_key,
    check_rate,
    fail,
)
from jaxrnn.core.composites import map_cells
from jaxrnn.core.dropout import dropout
from jaxrnn.core.params import params_class, static_field

__all__ = ["Masks", "Regularized", "ZoneoutInputs", "draw_masks", "regularize"]

RATES = ("input_dropout", "output_dropout", "recurrent_dropout", "zoneout_h", "zoneout_c")


def _hidden(carry: Any) -> jax.Array:
    """The ``h`` of a carry: the carry itself (RNN, GRU, MGU) or its ``h`` field (LSTMs)."""
    return carry.h if hasattr(carry, "h") else carry


def _with_hidden(carry: Any, h: jax.Array) -> Any:
    return carry._replace(h=h) if hasattr(carry, "h") else h


class ZoneoutInputs(NamedTuple):
    """The input of one training step of a [`Regularized`][jaxrnn.regularization.Regularized]
    cell with zoneout: the step's ``x`` and its zoneout masks, scanned beside each other
    (a pytree, never concatenated onto the features)."""

    x: Any  # shape=(*batch, *input_shape); after input_projection, the projected input
    keep_h: jax.Array | None  # shape=(*batch, *h_shape): 1 keeps h_{t-1}; None without
    keep_c: jax.Array | None  # shape=(*batch, *c_shape): 1 keeps c_{t-1}; None without


class Masks(NamedTuple):
    """The masks of one training run of a ``Regularized`` cell over a batch
    (``None`` where the rate is 0), drawn by [`draw_masks`][jaxrnn.regularization.draw_masks]."""

    input: jax.Array | None  # shape=(*batch, *input_shape): m_x, the same at every step
    output: jax.Array | None  # shape=(*batch, *spatial, output_size): m_y, every step
    recurrent: jax.Array | None  # shape=(*batch, *h_shape): m_h, every step
    keep_h: jax.Array | None  # shape=(time, *batch, *h_shape): zoneout of h, per step
    keep_c: jax.Array | None  # shape=(time, *batch, *c_shape): zoneout of c, per step


def _regularized_recurrence(
    params: Regularized,
    carry: Any,
    projected: Any,
    keep_h: jax.Array | float,
    keep_c: jax.Array | float,
) -> tuple[Any, jax.Array]:
    """The inner cell's recurrence reading a dropped-out ``h``, then zoneout.

    ``keep_h``/``keep_c`` are the zoneout masks (1 keeps the previous value) in training,
    the rates themselves in evaluation, where ``keep * prev + (1 - keep) * new`` is then
    the expectation of the random update.
    """
    h_prev = _hidden(carry)
    mask = params.recurrent_mask
    read = carry if mask is None else _with_hidden(carry, h_prev * mask)
    new, y = params.cell.recurrence(read, projected)
    if params.zoneout_h:
        y = keep_h * h_prev + (1.0 - keep_h) * _hidden(new)
        new = _with_hidden(new, y)
    if params.zoneout_c:
        new = new._replace(c=keep_c * carry.c + (1.0 - keep_c) * new.c)
    if params.output_mask is not None:
        y = y * params.output_mask
    return new, y


@params_class
class Regularized(WrappedCell):
    """A cell with variational dropout and zoneout; see
    [`regularize`][jaxrnn.regularization.regularize].

    Rates are static (``jit`` specializes on them). The mask fields are ``None`` in the
    params a user holds; ``unroll`` with a key sets them for one run (``unwrap``), and
    that run's inputs carry the per-step zoneout masks as ``ZoneoutInputs``.
    """

    cell: Any  # params of the wrapped cell
    input_dropout: float = static_field(0.0)
    output_dropout: float = static_field(0.0)
    recurrent_dropout: float = static_field(0.0)
    zoneout_h: float = static_field(0.0)
    zoneout_c: float = static_field(0.0)
    input_mask: jax.Array | None = None  # m_x of a training run (set by unwrap), or None
    output_mask: jax.Array | None = None  # m_y of a training run, or None
    recurrent_mask: jax.Array | None = None  # m_h of a training run, or None

    @property
    def masks_drawn(self) -> bool:
        """Whether these are the params of one training run (masks set by ``unwrap``)."""
        fields = (self.input_mask, self.output_mask, self.recurrent_mask)
        return any(mask is not None for mask in fields)

    def input_projection(self, x: Any) -> Any:
        zoneout = x if isinstance(x, ZoneoutInputs) else None
        x = x.x if zoneout is not None else x
        if self.input_mask is not None:
            x = x * self.input_mask
        projected = self.cell.input_projection(x)
        return projected if zoneout is None else zoneout._replace(x=projected)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        """With ``ZoneoutInputs`` (training) the masks they carry, else zoneout by its
        expectation; dropout by the mask fields (``None`` in evaluation)."""
        if isinstance(projected, ZoneoutInputs):
            keep_h = 0.0 if projected.keep_h is None else projected.keep_h
            keep_c = 0.0 if projected.keep_c is None else projected.keep_c
            return _regularized_recurrence(self, carry, projected.x, keep_h, keep_c)
        return _regularized_recurrence(self, carry, projected, self.zoneout_h, self.zoneout_c)

    def with_masks(self, masks: Masks) -> Regularized:
        """The params of one training run: ``masks``' per-sequence masks set; the per-step
        zoneout masks go with the inputs (``ZoneoutInputs``)."""
        return dataclasses.replace(
            self, input_mask=masks.input, output_mask=masks.output, recurrent_mask=masks.recurrent
        )

    def unwrap(self, xs: Any, key: jax.Array | None) -> Unwrapped | None:
        """In training (a key), the run with its masks drawn from ``key``; in evaluation
        the wrapped cell itself, or this cell's own step when it has zoneout."""
        if self.masks_drawn:
            return None  # already one run's training step
        if key is None:
            if self.zoneout_h or self.zoneout_c:
                return None  # evaluation with zoneout: this params' own step
            return Unwrapped(self.cell, xs, None, None)  # dropout is off: the cell
        masks = draw_masks(self, xs, key)
        if not (self.recurrent_dropout or self.zoneout_h or self.zoneout_c):
            # Only input and output dropout: the wrapped cell runs as it is (with its
            # fastest method) between the two masks. It may draw masks of its own (an
            # AttentionCell's inner layers): it gets a key that draw_masks did not use.
            xs = xs if masks.input is None else xs * masks.input
            return Unwrapped(self.cell, xs, masks.output, jax.random.fold_in(key, len(RATES)))
        if self.zoneout_h or self.zoneout_c:
            xs = ZoneoutInputs(xs, masks.keep_h, masks.keep_c)
        return Unwrapped(self.with_masks(masks), xs, None, None)


def _variational_mask(key: jax.Array, shape: tuple[int, ...], rate: float, dtype: Any):
    """An inverted-dropout mask (0 or ``1 / (1 - rate)``), drawn once, reused at every step."""
    return dropout(key, jnp.ones(shape, dtype), rate)


def draw_masks(params: Regularized, xs: jax.Array, key: jax.Array) -> Masks:
    """Every mask of one training run of ``params`` over ``xs`` ``(time, *batch,
    *input_shape)``, from ``key``.

    The key is split in five, one per rate in the order of ``RATES`` (input, output,
    recurrent dropout, zoneout of ``h``, of ``c``); dropout masks are inverted (0 or
    ``1 / (1 - rate)``) and drawn once per sequence, zoneout masks (1 keeps the previous
    value) anew at every step.
    """
    where = "draw_masks"
    if not isinstance(params, Regularized):
        fail(where, "params", "be Regularized (from regularize)", type(params).__name__, TypeError)
    xs = check_array(where, "xs", xs)
    check_floating(where, "xs", xs)
    batch_shape = check_features(where, "xs", xs, params.input_shape, ("time",))
    check_key(where, key, optional=False)
    num_steps, dtype = xs.shape[0], xs.dtype
    carry = jax.eval_shape(lambda: params.initial_carry(batch_shape, dtype))
    keys = dict(zip(RATES, jax.random.split(key, len(RATES)), strict=True))

    def variational(rate_name: str, shape: Callable[[], tuple[int, ...]]) -> jax.Array | None:
        rate = getattr(params, rate_name)
        return _variational_mask(keys[rate_name], shape(), rate, dtype) if rate else None

    def per_step(rate_name: str, state_shape: Callable[[], tuple[int, ...]]) -> jax.Array | None:
        rate = getattr(params, rate_name)
        if not rate:
            return None
        draw = jax.random.bernoulli(keys[rate_name], rate, (num_steps, *state_shape()))
        return draw.astype(dtype)

    # Shapes are read only for the rates in use: a cell wrapped for input and output
    # dropout only (an attention decoder, say) need not have an h in its carry.
    output_shape = (*batch_shape, *params.input_shape[:-1], params.output_size)
    return Masks(
        input=variational("input_dropout", lambda: xs.shape[1:]),
        output=variational("output_dropout", lambda: output_shape),
        recurrent=variational("recurrent_dropout", lambda: _hidden(carry).shape),
        keep_h=per_step("zoneout_h", lambda: _hidden(carry).shape),
        keep_c=per_step("zoneout_c", lambda: carry.c.shape),
    )


def _check_cell(cell: Any, rates: dict[str, float]) -> None:
    if not hasattr(cell, "initial_carry"):
        fail("regularize", "params", "be jaxrnn params", type(cell).__name__, TypeError)
    if isinstance(cell, Regularized):
        fail("regularize", "params", "not be regularized already", "Regularized")
    if getattr(cell, "memory", None) is not None:
        # The checks below read the carry of one sequence, which a cell bound to a batch of
        # memory cannot give. (AttentionCell is not imported: its module imports this one.)
        fail(
            "regularize",
            "params",
            "hold cells that run on any batch shape (an attention decoder bound to its "
            "memory runs on the memory's only: regularize its inner cell instead, "
            "dataclasses.replace(decoder, "
            "cell=jaxrnn.regularization.regularize(decoder.cell, ...)))",
            type(cell).__name__,
        )
    carry = jax.eval_shape(lambda: cell.initial_carry((), jnp.float32))
    has_h = hasattr(carry, "h") or isinstance(carry, jax.ShapeDtypeStruct)
    if (rates["recurrent_dropout"] or rates["zoneout_h"]) and not has_h:
        fail(
            "regularize",
            "params",
            "have a carry that is h or has a field h (for recurrent_dropout, zoneout_h)",
            type(carry).__name__,
        )
    if rates["zoneout_c"] and not hasattr(carry, "c"):
        fail(
            "regularize",
            "zoneout_c",
            f"be 0 for a cell whose carry has no field c ({type(cell).__name__})",
            repr(rates["zoneout_c"]),
        )


def regularize(
    params: Any,
    *,
    input_dropout: float = 0.0,
    output_dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout_h: float = 0.0,
    zoneout_c: float = 0.0,
) -> Any:
    """Add variational dropout and zoneout to every cell of ``params``.

    With a ``key`` given to [`unroll`][jaxrnn.unroll], each cell runs (per sequence, masks
    ``m`` of inverted dropout, drawn once and used at every step as Gal & Ghahramani's
    variational dropout; ``d_t`` drawn anew at every step):

        x_t  <- x_t * m_x                              # input_dropout
        carry, y_t = cell(carry with h * m_h, x_t)     # recurrent_dropout: h as read
        h_t = d_t * h_{t-1} + (1 - d_t) * h_t,  d_t ~ Bernoulli(zoneout_h)
        c_t = e_t * c_{t-1} + (1 - e_t) * c_t,  e_t ~ Bernoulli(zoneout_c)
        y_t <- h_t (with zoneout_h) ;  y_t <- y_t * m_y  # output_dropout

    Without a key (evaluation) dropout is off and zoneout is its expectation,
    ``h_t = p h_{t-1} + (1 - p) h_t``. Recurrent dropout masks the ``h`` that the cell
    reads, never the carry itself (like TensorFlow's variational ``DropoutWrapper``): for
    an RNN or LSTM this is exactly dropout on ``h_{t-1} W_h``; a GRU or MGU also sees the
    dropped ``h`` in its interpolation ``z * h``. In a stack, each layer gets its own key.

    Args:
      params: a cell, or a stack or bidirectional composite (each cell is wrapped).
      input_dropout: rate of variational dropout on each cell's inputs.
      output_dropout: rate of variational dropout on each cell's outputs.
      recurrent_dropout: rate of variational dropout on ``h`` where the cell reads it.
      zoneout_h: probability that a unit of ``h`` keeps its previous value at a step.
      zoneout_c: the same for the cell state ``c`` (cells with an ``LSTMState``).

    Returns:
      ``params`` with each cell wrapped in a [`Regularized`][jaxrnn.regularization.Regularized]
      (same carry, same input and output shapes).

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> lstm = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 8)
      >>> params = jaxrnn.regularization.regularize(lstm, recurrent_dropout=0.25, zoneout_c=0.1)
      >>> xs = jnp.ones((5, 2, 3))
      >>> _, ys_train = jaxrnn.unroll(params, None, xs, key=jax.random.key(1))
      >>> _, ys_eval = jaxrnn.unroll(params, None, xs)  # no key: evaluation
      >>> ys_train.shape, bool(jnp.allclose(ys_train, ys_eval))
      ((5, 2, 8), False)

    References:
      Gal, Ghahramani, "A Theoretically Grounded Application of Dropout in Recurrent
      Neural Networks", NeurIPS 2016. Krueger et al., "Zoneout: Regularizing RNNs by
      Randomly Preserving Hidden Activations", ICLR 2017.
    """
    rates = dict(
        zip(
            RATES,
            (input_dropout, output_dropout, recurrent_dropout, zoneout_h, zoneout_c),
            strict=True,
        )
    )
    for name, rate in rates.items():
        check_rate("regularize", name, rate)

    def wrap(cell: Any) -> Regularized:
        _check_cell(cell, rates)
        return Regularized(
            cell,
            input_dropout=float(input_dropout),
            output_dropout=float(output_dropout),
            recurrent_dropout=float(recurrent_dropout),
            zoneout_h=float(zoneout_h),
            zoneout_c=float(zoneout_c),
        )

    if not hasattr(params, "initial_carry"):
        fail("regularize", "params", "be jaxrnn params", type(params).__name__, TypeError)
    return map_cells(wrap, params)
