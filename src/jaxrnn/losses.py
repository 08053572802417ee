"""Sequence losses masked by ``lengths``, on top of optax's per-element losses.

Every loss here is computed in three steps, so its meaning is visible:

    valid = sequence_mask(lengths, time)               # (time, *batch)
    logits, labels = where(valid, logits, 0), where(valid, labels, 0)
    per_step = <optax loss>(logits, labels)           # (time, *batch), one number per step
    loss = reduce(where(valid, per_step, 0))          # "sum", "mean" or "none"

Padding steps (``t >= lengths[b]``) contribute neither to the value nor to the gradient,
whatever the padded predictions or labels are (even NaN: padded inputs are replaced
before any arithmetic, because the gradient of ``where(valid, f(x), 0)`` is still NaN
where ``f'(x)`` is). ``"mean"`` divides by the number of valid
steps, not by ``time * batch``, so a batch of short sequences is not down-weighted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax  # type: ignore[import-untyped]
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_choice,
    check_floating,
    check_lengths,
    fail,
    shape_text,
    time_first,
)
from jaxrnn.core.unrolling import sequence_mask

__all__ = [
    "REDUCTIONS",
    "masked_reduce",
    "sequence_binary_cross_entropy",
    "sequence_mean_squared_error",
    "sequence_softmax_cross_entropy",
]

REDUCTIONS = ("sum", "mean", "none")


def masked_reduce(
    per_step: ArrayLike,
    lengths: ArrayLike | None = None,
    reduction: str = "mean",
    *,
    time_major: bool = True,
) -> jax.Array:
    """Mask per-step losses by ``lengths`` and reduce them.

    $$
    m_{t,b} = [t < \\mathrm{lengths}_b], \\qquad
    \\text{sum} = \\sum_{t,b} m_{t,b}\\, \\ell_{t,b}, \\qquad
    \\text{mean} = \\frac{\\sum_{t,b} m_{t,b}\\, \\ell_{t,b}}{\\max(1, \\sum_{t,b} m_{t,b})}
    $$

    Args:
      per_step: losses ``(time, *batch)`` (``(*batch, time)`` with ``time_major=False``).
      lengths: integer ``batch`` shape, or ``None`` when every step is valid.
      reduction: ``"sum"`` (total over valid steps and the batch: the classic BPTT loss
        of a sequence is its sum over time), ``"mean"`` (average over valid steps), or
        ``"none"`` (the masked ``(time, *batch)`` array, zero at padding; sum it over
        axis 0 for one loss per sequence).
      time_major: ``False`` for batch-major losses, as ``unroll(..., time_major=False)``
        gives them; ``"none"`` then returns ``(*batch, time)``.

    Returns:
      A scalar, or ``(time, *batch)`` for ``"none"``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> per_step = jnp.ones((4, 2))           # (time, batch)
      >>> float(jaxrnn.losses.masked_reduce(per_step, jnp.array([4, 1]), "sum"))
      5.0
      >>> float(jaxrnn.losses.masked_reduce(per_step, jnp.array([4, 1]), "mean"))
      1.0
    """
    where = "masked_reduce"
    per_step = check_array(where, "per_step", per_step)
    check_choice(where, "reduction", reduction, REDUCTIONS)
    check_bool(where, "time_major", time_major)
    if per_step.ndim < 1:
        expected = "(time, ...)" if time_major else "(..., time)"
        fail(where, "per_step", f"have shape {expected}", shape_text(per_step.shape))
    per_step = time_first(per_step, time_major, 0)
    valid = _valid(where, lengths, per_step.shape[1:], per_step.shape[0])
    return _reduce(where, per_step, valid, reduction, time_major)


def _valid(where: str, lengths, batch_shape: tuple[int, ...], num_steps: int):
    """The ``(time, *batch)`` mask of valid steps, or ``None`` when ``lengths`` is."""
    if lengths is None:
        return None
    lengths = check_lengths(where, lengths, batch_shape, num_steps)
    return sequence_mask(lengths, num_steps)


def _zero_padding(valid, x: jax.Array) -> jax.Array:
    if valid is None:
        return x
    mask = valid.reshape(valid.shape + (1,) * (x.ndim - valid.ndim))
    return jnp.where(mask, x, jnp.zeros_like(x))


def _reduce(
    where: str, per_step: jax.Array, valid, reduction: str, time_major: bool = True
) -> jax.Array:
    if valid is None:
        valid = jnp.ones(per_step.shape, bool)
    per_step = jnp.where(valid, per_step, jnp.zeros_like(per_step))
    if reduction == "none":
        return per_step if time_major else jnp.moveaxis(per_step, 0, -1)
    total = per_step.sum()
    if reduction == "sum":
        return total
    return total / jnp.maximum(valid.sum(), 1).astype(per_step.dtype)


def _check_pair(
    where: str, a, a_name: str, b, b_name: str, time_major: bool
) -> tuple[jax.Array, jax.Array]:
    """Two arrays of one shape ``(time, ..., num_outputs)`` (``(..., time, num_outputs)``
    batch-major), returned time-major."""
    a, b = check_array(where, a_name, a), check_array(where, b_name, b)
    check_floating(where, a_name, a)
    check_bool(where, "time_major", time_major)
    if a.ndim < 2:
        expected = "(time, ..., num_outputs)" if time_major else "(..., time, num_outputs)"
        fail(where, a_name, f"have shape {expected}", shape_text(a.shape))
    if b.shape != a.shape:
        fail(
            where, b_name, f"have the shape of {a_name} {shape_text(a.shape)}", shape_text(b.shape)
        )
    return time_first(a, time_major, 1), time_first(b, time_major, 1)


def sequence_binary_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
    reduction: str = "sum",
    time_major: bool = True,
) -> jax.Array:
    """Binary cross-entropy of every output at every valid step, summed over outputs.

    With ``p = sigmoid(logits)`` (computed stably by
    ``optax.losses.sigmoid_binary_cross_entropy``):

    $$
    \\ell_{t,b} = -\\sum_k \\big[ y_{t,b,k} \\log p_{t,b,k}
                  + (1 - y_{t,b,k}) \\log (1 - p_{t,b,k}) \\big],
    \\qquad L = \\sum_b \\sum_{t < \\mathrm{lengths}_b} \\ell_{t,b}
    $$

    The default ``reduction="sum"`` is the classic BPTT loss ``L = sum_t L_t``.

    Args:
      logits: ``(time, *batch, num_outputs)``, pre-sigmoid scores (a readout with
        ``activation="identity"``).
      labels: same shape, targets in ``[0, 1]`` (any real dtype: integer 0/1 labels are
        promoted to the logits' dtype).
      lengths: integer ``batch`` shape; steps ``t >= lengths`` are ignored.
      reduction: ``"sum"``, ``"mean"`` (over valid steps) or ``"none"`` (see
        [`masked_reduce`][jaxrnn.losses.masked_reduce]).

      time_major: ``False`` for batch-major arrays ``(..., time, ...)``, as
        ``unroll(..., time_major=False)`` gives them (``"none"`` then returns
        ``(*batch, time)``).

    Returns:
      A scalar, or ``(time, *batch)`` per-step losses for ``"none"``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> logits = jnp.zeros((3, 2, 1))          # p = 0.5 everywhere
      >>> loss = jaxrnn.losses.sequence_binary_cross_entropy(
      ...     logits, jnp.ones((3, 2, 1)), lengths=jnp.array([3, 1]))
      >>> round(float(loss), 4) == round(4 * float(jnp.log(2.0)), 4)   # 4 valid steps
      True
    """
    where = "sequence_binary_cross_entropy"
    logits, labels = _check_pair(where, logits, "logits", labels, "labels", time_major)
    check_choice(where, "reduction", reduction, REDUCTIONS)
    valid = _valid(where, lengths, logits.shape[1:-1], logits.shape[0])
    logits, labels = _zero_padding(valid, logits), _zero_padding(valid, labels)
    per_step = optax.losses.sigmoid_binary_cross_entropy(logits, labels).sum(-1)
    return _reduce(where, per_step, valid, reduction, time_major)


def sequence_softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
    reduction: str = "mean",
    time_major: bool = True,
) -> jax.Array:
    """Softmax cross-entropy with integer class labels at every valid step.

    Computed by ``optax.losses.softmax_cross_entropy_with_integer_labels``:

    $$
    \\ell_{t,b} = -\\log \\mathrm{softmax}(z_{t,b})_{y_{t,b}}
    = \\log \\sum_k e^{z_{t,b,k}} - z_{t,b,y_{t,b}}
    $$

    Padded labels may hold anything in ``[0, num_classes)`` (e.g. a padding token): they
    are masked out.

    Args:
      logits: ``(time, *batch, num_classes)``.
      labels: integer ``(time, *batch)``.
      lengths: integer ``batch`` shape; steps ``t >= lengths`` are ignored.
      reduction: ``"mean"`` (the usual per-token average), ``"sum"`` or ``"none"``.

      time_major: ``False`` for batch-major arrays ``(..., time, ...)``, as
        ``unroll(..., time_major=False)`` gives them (``"none"`` then returns
        ``(*batch, time)``).

    Returns:
      A scalar, or ``(time, *batch)`` per-step losses for ``"none"``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> logits = jnp.zeros((3, 2, 4))          # uniform over 4 classes
      >>> labels = jnp.zeros((3, 2), int)
      >>> loss = jaxrnn.losses.sequence_softmax_cross_entropy(
      ...     logits, labels, lengths=jnp.array([3, 1]))
      >>> bool(jnp.isclose(loss, jnp.log(4.0)))
      True
    """
    where = "sequence_softmax_cross_entropy"
    logits = check_array(where, "logits", logits)
    check_floating(where, "logits", logits)
    labels = check_array(where, "labels", labels)
    check_bool(where, "time_major", time_major)
    if logits.ndim < 2:
        expected = "(time, ..., num_classes)" if time_major else "(..., time, num_classes)"
        fail(where, "logits", f"have shape {expected}", shape_text(logits.shape))
    if labels.shape != logits.shape[:-1]:
        axes = "(time, ...)" if time_major else "(..., time)"
        expected = f"have shape {axes} = {shape_text(logits.shape[:-1])}"
        fail(where, "labels", expected, shape_text(labels.shape))
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        fail(where, "labels", "have an integer dtype", str(labels.dtype), TypeError)
    check_choice(where, "reduction", reduction, REDUCTIONS)
    logits, labels = time_first(logits, time_major, 1), time_first(labels, time_major, 0)
    valid = _valid(where, lengths, labels.shape[1:], labels.shape[0])
    logits, labels = _zero_padding(valid, logits), _zero_padding(valid, labels)
    per_step = optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    return _reduce(where, per_step, valid, reduction, time_major)


def sequence_mean_squared_error(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    lengths: ArrayLike | None = None,
    reduction: str = "mean",
    time_major: bool = True,
) -> jax.Array:
    """Squared error averaged over the outputs of every valid step.

    Computed by ``optax.losses.squared_error``:

    $$
    \\ell_{t,b} = \\frac{1}{K} \\sum_{k=1}^{K} (\\hat y_{t,b,k} - y_{t,b,k})^2
    $$

    so ``reduction="mean"`` is the mean squared error over every valid element.

    Args:
      predictions: ``(time, *batch, num_outputs)``.
      targets: same shape, any real dtype (promoted to the predictions' dtype).
      lengths: integer ``batch`` shape; steps ``t >= lengths`` are ignored.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

      time_major: ``False`` for batch-major arrays ``(..., time, ...)``, as
        ``unroll(..., time_major=False)`` gives them (``"none"`` then returns
        ``(*batch, time)``).

    Returns:
      A scalar, or ``(time, *batch)`` per-step losses for ``"none"``.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> predictions = jnp.array([[[1.0]], [[3.0]], [[100.0]]])   # (time=3, batch=1, 1)
      >>> float(jaxrnn.losses.sequence_mean_squared_error(
      ...     predictions, jnp.zeros((3, 1, 1)), lengths=jnp.array([2])))
      5.0
    """
    where = "sequence_mean_squared_error"
    predictions, targets = _check_pair(
        where, predictions, "predictions", targets, "targets", time_major
    )
    check_choice(where, "reduction", reduction, REDUCTIONS)
    valid = _valid(where, lengths, predictions.shape[1:-1], predictions.shape[0])
    predictions, targets = _zero_padding(valid, predictions), _zero_padding(valid, targets)
    per_step = optax.losses.squared_error(predictions, targets).mean(-1)
    return _reduce(where, per_step, valid, reduction, time_major)
