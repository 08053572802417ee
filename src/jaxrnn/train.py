"""Training helpers: a train step over optax, a loop with a progress bar, checkpoints.

Small on purpose: each function is a few lines that a reader can copy and change. A train
step is::

    loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)   # clipping first
    params = optax.apply_updates(params, updates)

RNNs need gradient clipping (exploding gradients, Pascanu et al. 2013), so
[`make_train_step`][jaxrnn.train.make_train_step] takes ``max_grad_norm`` and chains
``optax.clip_by_global_norm`` in front of the optimizer.

Checkpoints use ``flax.serialization``'s msgpack format. The file stores the arrays under
their pytree paths (``.params.w_x``...); [`restore_checkpoint`][jaxrnn.train.restore_checkpoint]
puts them back into a *template* (e.g. freshly initialised params and optimizer state), so the
restored tree has the template's types: ``LSTMParams`` stays ``LSTMParams``, optax states stay
theirs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax  # type: ignore[import-untyped]
from flax import serialization
from tqdm.auto import tqdm  # type: ignore[import-untyped]

from jaxrnn.core.checks import check_bool, check_callable, check_int, check_key, check_number, fail

__all__ = [
    "StepMetrics",
    "TrainState",
    "TrainStep",
    "fit",
    "make_train_step",
    "restore_checkpoint",
    "save_checkpoint",
]


class TrainState(NamedTuple):
    """Everything a training run updates."""

    params: Any  # the model's params pytree
    opt_state: optax.OptState  # the optimizer's state (with the clipping's, if any)
    step: jax.Array  # shape=(), int32: number of updates done


class StepMetrics(NamedTuple):
    """What one train step reports."""

    loss: jax.Array  # shape=(): the loss before the update
    grad_norm: jax.Array  # shape=(): global norm of the gradient, before clipping
    aux: Any  # loss_fn's auxiliary output with has_aux=True, else None


class TrainStep(NamedTuple):
    """A pair of pure functions, like an optax ``GradientTransformation``."""

    init: Callable[[Any], TrainState]  # params -> TrainState
    step: Callable[..., tuple[TrainState, StepMetrics]]  # (state, *batch) -> (state, metrics)


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: optax.GradientTransformation,
    *,
    max_grad_norm: float | None = None,
    has_aux: bool = False,
    jit: bool = True,
    key: jax.Array | None = None,
    pass_step: bool = False,
) -> TrainStep:
    """Build ``init(params)`` and ``step(state, *batch)`` for ``loss_fn`` and ``optimizer``.

    One step is, with ``c = max_grad_norm``:

    $$
    g = \\nabla_\\theta L(\\theta; \\mathrm{batch}), \\qquad
    \\hat g = g \\cdot \\min\\!\\left(1, \\frac{c}{\\lVert g \\rVert_2}\\right), \\qquad
    (u, s') = \\mathrm{optimizer.update}(\\hat g, s, \\theta), \\qquad
    \\theta' = \\theta + u
    $$

    Args:
      loss_fn: ``loss_fn(params, *batch) -> loss`` (a scalar), or ``-> (loss, aux)``
        with ``has_aux=True`` (e.g. the final carry, for stateful training).
      optimizer: an optax optimizer, e.g. ``optax.adam(1e-3)``.
      max_grad_norm: clip the gradient to this global L2 norm; ``None``: no clipping.
      has_aux: ``loss_fn`` returns ``(loss, aux)``; ``aux`` comes back in the metrics.
      jit: compile ``step`` with ``jax.jit``.
      key: a PRNG key: the loss is then called with ``key=fold_in(key, state.step)``, a
        fresh key at every step that depends only on ``key`` and the step count (for
        dropout: pass it to ``unroll(..., key=key)``; reproducible, also when a run
        is resumed from its ``TrainState``).
      pass_step: call the loss with ``step=state.step`` too (a traced int32 scalar), e.g.
        for a schedule of teacher forcing.

    Returns:
      A [`TrainStep`][jaxrnn.train.TrainStep] ``(init, step)``: ``init(params)`` gives a
      [`TrainState`][jaxrnn.train.TrainState]; ``step(state, *batch)`` gives
      ``(state, StepMetrics(loss, grad_norm, aux))``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 2, 8)
      >>> def loss_fn(params, xs, targets):
      ...     _, ys = jaxrnn.unroll(params, None, xs)
      ...     return jnp.mean((ys[..., 0] - targets) ** 2)
      >>> train = jaxrnn.train.make_train_step(loss_fn, optax.adam(1e-2), max_grad_norm=1.0)
      >>> state = train.init(params)
      >>> xs, targets = jnp.ones((5, 4, 2)), jnp.full((5, 4), 0.5)
      >>> state, metrics = train.step(state, xs, targets)
      >>> int(state.step), metrics.loss.shape
      (1, ())

      With dropout, a key per step (and the step count, e.g. for a schedule):

      >>> deep = jaxrnn.init_params(jax.random.key(0), "gru", 2, 8, num_layers=2, dropout=0.2)
      >>> def noisy_loss(params, xs, targets, *, key, step):
      ...     _, ys = jaxrnn.unroll(params, None, xs, key=key)
      ...     return jnp.mean((ys[..., 0] - targets) ** 2) * (1.0 + 0.0 * step)
      >>> train = jaxrnn.train.make_train_step(noisy_loss, optax.adam(1e-2),
      ...                                      key=jax.random.key(1), pass_step=True)
      >>> state, metrics = train.step(train.init(deep), xs, targets)
      >>> int(state.step)
      1
    """
    where = "make_train_step"
    check_callable(where, "loss_fn", loss_fn)
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        expected = "be an optax optimizer (optax.adam(1e-3), ...)"
        fail(where, "optimizer", expected, type(optimizer).__name__, TypeError)
    if key is not None:
        check_key(where, key)
    check_bool(where, "has_aux", has_aux)
    check_bool(where, "jit", jit)
    check_bool(where, "pass_step", pass_step)
    if max_grad_norm is not None:
        check_number(where, "max_grad_norm", max_grad_norm, "be > 0 or None", lambda c: c > 0)
        optimizer = optax.chain(optax.clip_by_global_norm(max_grad_norm), optimizer)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=has_aux)

    def init(params: Any) -> TrainState:
        return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

    def step(state: TrainState, *batch: Any) -> tuple[TrainState, StepMetrics]:
        extra: dict[str, Any] = {}
        if key is not None:
            extra["key"] = jax.random.fold_in(key, state.step)
        if pass_step:
            extra["step"] = state.step
        value, grads = grad_fn(state.params, *batch, **extra)
        loss, aux = value if has_aux else (value, None)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = StepMetrics(loss=loss, grad_norm=optax.tree.norm(grads), aux=aux)
        return TrainState(params, opt_state, state.step + 1), metrics

    return TrainStep(init=init, step=jax.jit(step) if jit else step)


def fit(
    train: TrainStep,
    state: TrainState,
    batches: Sequence[tuple] | Callable[[int], Iterable[tuple]],
    *,
    num_epochs: int = 1,
    progress: bool = True,
    log_every: int = 10,
    desc: str = "train",
) -> tuple[TrainState, list[float]]:
    """Run ``train.step`` over every batch for ``num_epochs``, with a tqdm progress bar.

    The whole loop, with the progress bar left out:

        history = []
        for epoch in range(num_epochs):
            for batch in (batches(epoch) if callable(batches) else batches):
                state, metrics = train.step(state, *batch)
                history.append(metrics.loss)
        return state, [float(loss) for loss in history]

    The bar shows the mean loss of the last ``log_every`` steps; reading a loss waits for
    the device, so it is done only every ``log_every`` steps.

    Args:
      train: from [`make_train_step`][jaxrnn.train.make_train_step].
      state: from ``train.init(params)`` (or a restored checkpoint).
      batches: a sequence of batches, each a tuple of ``loss_fn``'s arguments after
        ``params``, reused every epoch; or a function ``epoch -> iterable of batches``
        (e.g. a reshuffle with ``jax.random.fold_in(key, epoch)``).
      num_epochs: passes over the batches.
      progress: show the progress bar.
      log_every: steps between updates of the bar's loss.
      desc: the bar's label.

    Returns:
      ``(state, history)``: the final state and the loss of every step, as floats.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxrnn
      >>> params = jaxrnn.heads.init_readout(jax.random.key(0), 3, 1)
      >>> def loss_fn(params, x, y):
      ...     return jnp.mean((jaxrnn.heads.readout(params, x)[:, 0] - y) ** 2)
      >>> x = jax.random.normal(jax.random.key(1), (32, 3))
      >>> batches = [(x, x @ jnp.array([1.0, -2.0, 0.5]))]
      >>> train = jaxrnn.train.make_train_step(loss_fn, optax.adam(0.1))
      >>> state, history = jaxrnn.train.fit(train, train.init(params), batches, num_epochs=100,
      ...                                   progress=False)
      >>> len(history), history[-1] < 0.01 * history[0]
      (100, True)
    """
    if not isinstance(train, TrainStep):
        fail(
            "fit", "train", "be a TrainStep (from make_train_step)", type(train).__name__, TypeError
        )
    if not isinstance(state, TrainState):
        expected = "be a TrainState (from train.init(params))"
        fail("fit", "state", expected, type(state).__name__, TypeError)
    num_epochs = check_int("fit", "num_epochs", num_epochs, minimum=0)
    log_every = check_int("fit", "log_every", log_every)
    check_bool("fit", "progress", progress)
    if not isinstance(desc, str):
        fail("fit", "desc", "be a str", repr(desc), TypeError)
    if not callable(batches) and not isinstance(batches, Sequence):
        fail(
            "fit",
            "batches",
            "be a sequence of batches or a function epoch -> batches (an iterator would "
            "be used up after one epoch)",
            type(batches).__name__,
            TypeError,
        )
    total = None if callable(batches) else num_epochs * len(batches)
    losses: list[jax.Array] = []
    with tqdm(total=total, desc=desc, disable=not progress, dynamic_ncols=True) as bar:
        for epoch in range(num_epochs):
            for batch in batches(epoch) if callable(batches) else batches:
                if not isinstance(batch, tuple):
                    fail(
                        "fit",
                        "each batch",
                        "be a tuple of loss_fn arguments",
                        type(batch).__name__,
                        TypeError,
                    )
                state, metrics = train.step(state, *batch)
                losses.append(metrics.loss)
                bar.update(1)
                if len(losses) % log_every == 0:
                    recent = float(jnp.mean(jnp.stack(losses[-log_every:])))
                    bar.set_postfix(epoch=epoch, loss=f"{recent:.4f}")
    return state, [float(loss) for loss in jax.device_get(losses)]


def _flat_with_paths(tree: Any) -> dict[str, Any]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _check_path(where: str, path: Any) -> str:
    if not isinstance(path, str | os.PathLike):
        fail(where, "path", "be a file path (str or os.PathLike)", type(path).__name__, TypeError)
    return os.fspath(path)


def save_checkpoint(path: str | os.PathLike, tree: Any) -> None:
    """Write a pytree of arrays (params, a [`TrainState`][jaxrnn.train.TrainState]...) to a msgpack
    file.

    Each leaf is stored under its pytree path (``jax.tree_util.keystr``), serialized
    with ``flax.serialization.msgpack_serialize``. The file is written to a temporary
    name and then renamed, so an interrupted save never leaves a half-written checkpoint.

    Args:
      path: file to write.
      tree: a pytree whose leaves are arrays or numbers.

    Returns:
      ``None``.

    Example:
      >>> import os, tempfile, jax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> path = os.path.join(tempfile.mkdtemp(), "params.msgpack")
      >>> jaxrnn.train.save_checkpoint(path, params)
      >>> os.path.getsize(path) > 0
      True
    """
    path = _check_path("save_checkpoint", path)
    flat = {name: np.asarray(leaf) for name, leaf in _flat_with_paths(tree).items()}
    data = serialization.msgpack_serialize(flat)
    temporary = path + ".tmp"
    with open(temporary, "wb") as f:
        f.write(data)
    os.replace(temporary, path)


def restore_checkpoint(path: str | os.PathLike, template: Any) -> Any:
    """Read a checkpoint written by [`save_checkpoint`][jaxrnn.train.save_checkpoint] into the
    structure of ``template``.

    The template (e.g. ``train.init(init_params(...))``) gives the tree's types and
    static configuration; the file gives the values. Every leaf path must be present
    with the template's shape and dtype.

    Args:
      path: file written by [`save_checkpoint`][jaxrnn.train.save_checkpoint].
      template: a pytree with the structure, shapes and dtypes of the saved one (its
        values are not used).

    Returns:
      A pytree of the template's structure and types holding the saved arrays.

    Example:
      >>> import os, tempfile, jax, jaxrnn
      >>> params = jaxrnn.init_params(jax.random.key(0), "lstm", 3, 4)
      >>> path = os.path.join(tempfile.mkdtemp(), "params.msgpack")
      >>> jaxrnn.train.save_checkpoint(path, params)
      >>> template = jaxrnn.init_params(jax.random.key(1), "lstm", 3, 4)
      >>> restored = jaxrnn.train.restore_checkpoint(path, template)
      >>> type(restored).__name__, bool((restored.w_h == params.w_h).all())
      ('LSTMParams', True)
    """
    with open(_check_path("restore_checkpoint", path), "rb") as f:
        saved = serialization.msgpack_restore(f.read())
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(p) for p, _ in leaves]
    missing = sorted(set(names) - set(saved))
    unexpected = sorted(set(saved) - set(names))
    if missing or unexpected:
        fail(
            "restore_checkpoint",
            "template",
            "have the saved tree's leaves",
            f"missing {missing or 'none'}, not in template {unexpected or 'none'}",
        )
    restored = []
    for name, (_, leaf) in zip(names, leaves, strict=True):
        value = np.asarray(saved[name])
        dtype = np.dtype(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        if value.shape != np.shape(leaf) or value.dtype != dtype:
            fail(
                "restore_checkpoint",
                f"template leaf {name}",
                f"match the saved {value.dtype}{list(value.shape)}",
                f"{dtype}{list(np.shape(leaf))}",
            )
        restored.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, restored)
