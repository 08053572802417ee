"""Regularisation inside a recurrent layer: variational dropout and zoneout.

All of it is driven by the ``key`` of [`unroll`][jaxrnn.unroll]: with ``key=None``
(evaluation) no dropout is applied and zoneout takes its expectation, so a model is
evaluated by leaving out the key. [`cell_step`][jaxrnn.cell_step] is always the evaluation step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells.base import Cell, Unwrapped, WrappedCell
from jaxrnn.core.checks import check_rate, fail
from jaxrnn.core.composites import map_cells
from jaxrnn.core.dropout import dropout
from jaxrnn.core.params import params_class, static_field

__all__ = ["Regularized", "regularize"]

RATES = ("input_dropout", "output_dropout", "recurrent_dropout", "zoneout_h", "zoneout_c")


def _hidden(carry: Any) -> jax.Array:
    """The ``h`` of a carry: the carry itself (RNN, GRU, MGU) or its ``h`` field (LSTMs)."""
    return carry.h if hasattr(carry, "h") else carry


def _with_hidden(carry: Any, h: jax.Array) -> Any:
    return carry._replace(h=h) if hasattr(carry, "h") else h


def _regularized_recurrence(
    params: Regularized,
    carry: Any,
    projected: Any,
    recurrent_mask: jax.Array | None,
    keep_h: jax.Array | float,
    keep_c: jax.Array | float,
) -> tuple[Any, jax.Array]:
    """The inner cell's recurrence reading a dropped-out ``h``, then zoneout.

    ``keep_h``/``keep_c`` are the zoneout masks (1 keeps the previous value) in training,
    the rates themselves in evaluation, where ``keep * prev + (1 - keep) * new`` is then
    the expectation of the random update.
    """
    h_prev = _hidden(carry)
    read = carry if recurrent_mask is None else _with_hidden(carry, h_prev * recurrent_mask)
    new, y = params.cell.recurrence(read, projected)
    if params.zoneout_h:
        y = keep_h * h_prev + (1.0 - keep_h) * _hidden(new)
        new = _with_hidden(new, y)
    if params.zoneout_c:
        new = new._replace(c=keep_c * carry.c + (1.0 - keep_c) * new.c)
    return new, y


@params_class
class Regularized(WrappedCell):
    """A cell with variational dropout and zoneout; see
    [`regularize`][jaxrnn.regularization.regularize].

    Rates are static (``jit`` specializes on them); the cell's params are the only leaves.
    """

    cell: Any  # params of the wrapped cell
    input_dropout: float = static_field(0.0)
    output_dropout: float = static_field(0.0)
    recurrent_dropout: float = static_field(0.0)
    zoneout_h: float = static_field(0.0)
    zoneout_c: float = static_field(0.0)

    def input_projection(self, x: jax.Array) -> Any:
        return self.cell.input_projection(x)

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        """The evaluation step: no dropout, zoneout by its expectation."""
        return _regularized_recurrence(self, carry, projected, None, self.zoneout_h, self.zoneout_c)

    def unwrap(self, xs: Any, key: jax.Array | None) -> Unwrapped | None:
        """In training (a key), the wrapped cell's run with its masks drawn from ``key``; in
        evaluation the wrapped cell itself, or this cell's own step with zoneout."""
        if key is None:
            if self.zoneout_h or self.zoneout_c:
                return None  # evaluation with zoneout: this params' own step
            return Unwrapped(self.cell, xs, None, None)  # dropout is off: the cell
        steps, xs, output_mask = training_steps(self, xs, key)
        # A wrapped cell that runs as it is may draw masks of its own (an AttentionCell's
        # inner layers): it gets a key that training_steps did not use.
        inner_key = jax.random.fold_in(key, len(RATES)) if steps is self.cell else None
        return Unwrapped(steps, xs, output_mask, inner_key)


@params_class
class _TrainingSteps(Cell):
    """A [`Regularized`][jaxrnn.regularization.Regularized] cell's training step, in the form the
    unroll methods run.

    Zoneout draws new masks at every step. They are sampled for all steps up front and
    appended to the input features (``x`` becomes ``[x, keep_h, keep_c]``), so that every
    unroll method, which scans over one input array, runs this cell unchanged.
    """

    regularized: Regularized
    recurrent_mask: jax.Array | None  # shape=(*batch, *h_shape): scaled keep mask, or None
    input_size: int = static_field()  # features of x before the appended zoneout masks
    zoneout_sizes: tuple[int, int] = static_field((0, 0))  # features of keep_h, keep_c

    @property
    def input_shape(self) -> tuple[int, ...]:
        spatial = self.regularized.input_shape[:-1]
        return (*spatial, self.input_size + sum(self.zoneout_sizes))

    @property
    def output_size(self) -> int:
        return self.regularized.output_size

    def zero_carry(self, batch_shape: tuple[int, ...], dtype: Any) -> Any:
        return self.regularized.zero_carry(batch_shape, dtype)

    def input_projection(self, x: jax.Array) -> Any:
        size_h = self.zoneout_sizes[0]
        x, keep_h, keep_c = jnp.split(x, [self.input_size, self.input_size + size_h], axis=-1)
        return self.regularized.cell.input_projection(x), keep_h, keep_c

    def recurrence(self, carry: Any, projected: Any) -> tuple[Any, jax.Array]:
        projected, keep_h, keep_c = projected
        return _regularized_recurrence(
            self.regularized, carry, projected, self.recurrent_mask, keep_h, keep_c
        )


def _variational_mask(key: jax.Array, shape: tuple[int, ...], rate: float, dtype: Any):
    """An inverted-dropout mask (0 or ``1 / (1 - rate)``), drawn once, reused at every step."""
    return dropout(key, jnp.ones(shape, dtype), rate)


def training_steps(
    params: Regularized, xs: jax.Array, key: jax.Array
) -> tuple[Any, jax.Array, jax.Array | None]:
    """Sample all masks of one sequence batch: ``(cell to unroll, its xs, output mask)``.

    ``xs`` has shape ``(time, *batch, *input_shape)``; the output mask, when there is
    output dropout, multiplies ``ys``. Without recurrent dropout and zoneout the cell to
    unroll is the wrapped cell itself.
    """
    num_steps, dtype = xs.shape[0], xs.dtype
    batch_shape = xs.shape[1 : xs.ndim - len(params.input_shape)]
    carry = jax.eval_shape(lambda: params.zero_carry(batch_shape, dtype))
    keys = dict(zip(RATES, jax.random.split(key, len(RATES)), strict=True))
    if params.input_dropout:
        m_x = _variational_mask(keys["input_dropout"], xs.shape[1:], params.input_dropout, dtype)
        xs = xs * m_x
    output_mask = None
    if params.output_dropout:
        output_shape = (*batch_shape, *params.input_shape[:-1], params.output_size)
        output_mask = _variational_mask(
            keys["output_dropout"], output_shape, params.output_dropout, dtype
        )
    if not (params.recurrent_dropout or params.zoneout_h or params.zoneout_c):
        return params.cell, xs, output_mask
    recurrent_mask = None
    if params.recurrent_dropout:
        recurrent_mask = _variational_mask(
            keys["recurrent_dropout"], _hidden(carry).shape, params.recurrent_dropout, dtype
        )
    # Zoneout masks (1 keeps the previous value), drawn anew for every step.
    keep_h = keep_c = jnp.zeros((num_steps, *batch_shape, *params.input_shape[:-1], 0), dtype)
    if params.zoneout_h:
        shape = (num_steps, *_hidden(carry).shape)
        keep_h = jax.random.bernoulli(keys["zoneout_h"], params.zoneout_h, shape).astype(dtype)
    if params.zoneout_c:
        shape = (num_steps, *carry.c.shape)
        keep_c = jax.random.bernoulli(keys["zoneout_c"], params.zoneout_c, shape).astype(dtype)
    steps = _TrainingSteps(
        regularized=params,
        recurrent_mask=recurrent_mask,
        input_size=xs.shape[-1],
        zoneout_sizes=(keep_h.shape[-1], keep_c.shape[-1]),
    )
    return steps, jnp.concatenate([xs, keep_h, keep_c], axis=-1), output_mask


def _check_cell(cell: Any, rates: dict[str, float]) -> None:
    if not hasattr(cell, "zero_carry"):
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
            "dataclasses.replace(decoder, cell=jaxrnn.regularize(decoder.cell, ...)))",
            type(cell).__name__,
        )
    carry = jax.eval_shape(lambda: cell.zero_carry((), jnp.float32))
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
    if rates["zoneout_h"] or rates["zoneout_c"]:
        # Zoneout masks ride along as extra input features: spatial dims must agree.
        h_shape = _hidden(carry).shape
        if h_shape[:-1] != cell.input_shape[:-1]:
            fail(
                "regularize",
                "params",
                f"have a state with the input's leading feature dims {cell.input_shape[:-1]}",
                str(h_shape),
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
        return Regularized(cell, **{name: float(rate) for name, rate in rates.items()})

    if not hasattr(params, "zero_carry"):
        fail("regularize", "params", "be jaxrnn params", type(params).__name__, TypeError)
    return map_cells(wrap, params)
