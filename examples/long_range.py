"""Associative recall over a long gap: which recurrent cells remember more, at equal size?

    python examples/long_range.py            # every cell there is: about 3 minutes on 2 CPU cores
    python examples/long_range.py --plot long_range.png --results long_range.json
    python examples/long_range.py --cells lstm mlstm --num-pairs 16 --seq-len 256 --seeds 0 1 2

The task is multi-query associative recall (MQAR; Arora et al. 2023, "Zoology: Measuring
and Improving Recall in Efficient Language Models"), generated here from a seed. A sequence
of ``seq_len`` steps opens with ``num_pairs`` key-value pairs, then a gap of blank steps,
then the same keys again in a shuffled order; at each of those last ``num_pairs`` steps the
model must output the value that went with the key:

    step:   0      1      ...  N-1      N ...  T-N-1   T-N     ...  T-1
    key:    k1     k2     ...  kN       -  ...  -       k7      ...  k2
    value:  v1     v2     ...  vN       -  ...  -       ?       ...  ?     -> predict v7 ... v2

Each step reads one key token and one value token (the blank is a token of its own), and
the model's input is their embeddings side by side. Zoology writes the key and its value
as two successive tokens instead; a pair per step spares the model the one-token shift
that binding them would need (the job of the short convolution in front of Hawk's and
xLSTM's cells), so the task measures what the cells themselves do: keep ``num_pairs``
associations across the gap and look one up by its key. With a blank gap the recall spans
at least ``seq_len - 2 num_pairs`` steps.

Every model is: the two embeddings, the recurrent layer(s), a linear readout of the last
``num_pairs`` outputs (:func:`jaxrnn.heads.readout`), trained with softmax cross-entropy
on those steps (:func:`jaxrnn.losses.sequence_softmax_cross_entropy`) by
:func:`jaxrnn.train.make_train_step` (Adam with a cosine-decayed learning rate, gradients
clipped to norm 1). Each model's hidden size is chosen so that its number of parameters,
embeddings and readout included, is the nearest to ``--num-params``; all models see the
same batches and the same test set, for each seed in ``--seeds``. The models of
``--cells`` whose cells this version of jaxrnn lacks (not in ``jaxrnn.cells.CELL_INITS``)
are skipped, with a line that says so.

Test accuracy (the fraction of queries answered right, on sequences never trained on) is
measured every ``--eval-every`` steps. ``--plot`` writes its curves and the training loss
to a PNG; ``--results`` writes everything as JSON and the table as Markdown beside it
(same name, ``.md``). ``docs/guide/long-range.md`` shows and reads the results of the
default run; ``tests/test_long_range_example.py`` runs ``main`` at tiny sizes.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn

#: Model name -> its recurrent layers as ``(cell, options)``, first layer first. Each model
#: is repeated ``num_layers`` times and stacked with ``jaxrnn.stack``.
MODELS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "lstm": [("lstm", {})],
    "gru": [("gru", {})],
    "mingru": [("mingru", {})],
    "rglru": [("rglru", {})],
    # Hawk's recurrent branch: a causal depthwise convolution over 4 steps, then the RG-LRU.
    "conv1d+rglru": [("conv1d", {"temporal_width": 4}), ("rglru", {})],
    "slstm": [("slstm", {"num_heads": 4})],  # xLSTM's default of 4 heads
    "mlstm": [("mlstm", {"num_heads": 4})],
}
#: ``unroll``'s method for a model, when not ``"sequential"`` (a ``lax.scan`` of its steps).
#: The mLSTM's parallel form gives the outputs of its recurrence and trains faster here:
#: the recurrence keeps a ``head_size x head_size`` memory per step for the backward pass.
METHODS = {"mlstm": "parallel"}


class Task(NamedTuple):
    """The sizes of an associative-recall task."""

    num_keys: int  # keys are tokens 0..num_keys-1; num_keys is the blank
    num_values: int  # values are tokens 0..num_values-1; num_values is the blank
    num_pairs: int  # pairs stored, then queried, per sequence
    seq_len: int  # steps per sequence, pairs and queries included


class Batch(NamedTuple):
    keys: np.ndarray  # shape=(seq_len, batch), int: the pairs' keys, blanks, the queried keys
    values: np.ndarray  # shape=(seq_len, batch), int: the pairs' values, then blanks
    answers: np.ndarray  # shape=(num_pairs, batch), int: the values the last steps ask for


class Model(NamedTuple):
    key_embedding: jax.Array  # shape=(num_keys + 1, embed_size // 2)
    value_embedding: jax.Array  # shape=(num_values + 1, embed_size - embed_size // 2)
    rnn: Any  # a cell's params, or a jaxrnn.Stack of them
    readout: jaxrnn.heads.ReadoutParams  # hidden_size -> num_values


def make_batch(rng: np.random.Generator, batch_size: int, task: Task) -> Batch:
    """``batch_size`` sequences: ``num_pairs`` pairs of distinct keys and random values, a
    gap of blanks, then the same keys in a random order."""
    num_keys, num_values, num_pairs, seq_len = task
    # num_pairs distinct keys per sequence: the first columns of a random permutation.
    stored = np.argsort(rng.random((batch_size, num_keys)), axis=1)[:, :num_pairs]
    values = rng.integers(0, num_values, (batch_size, num_pairs))
    order = np.argsort(rng.random((batch_size, num_pairs)), axis=1)
    keys = np.full((seq_len, batch_size), num_keys)
    keys[:num_pairs] = stored.T
    keys[-num_pairs:] = np.take_along_axis(stored, order, axis=1).T
    step_values = np.full((seq_len, batch_size), num_values)
    step_values[:num_pairs] = values.T
    return Batch(keys, step_values, np.take_along_axis(values, order, axis=1).T)


def init_model(
    key: jax.Array, name: str, hidden_size: int, task: Task, *, embed_size: int, num_layers: int
) -> Model:
    """Embeddings (normal, variance 1), ``num_layers`` copies of ``MODELS[name]``'s
    layers stacked, and a readout to the values."""
    layers = MODELS[name] * num_layers
    k_keys, k_values, k_readout, *k_layers = jax.random.split(key, 3 + len(layers))
    cells, size = [], embed_size
    for layer_key, (cell, options) in zip(k_layers, layers, strict=True):
        cells.append(jaxrnn.init_params(layer_key, cell, size, hidden_size, **options))
        size = cells[-1].output_size
    return Model(
        key_embedding=jax.random.normal(k_keys, (task.num_keys + 1, embed_size // 2)),
        value_embedding=jax.random.normal(
            k_values, (task.num_values + 1, embed_size - embed_size // 2)
        ),
        rnn=cells[0] if len(cells) == 1 else jaxrnn.stack(cells),
        readout=jaxrnn.heads.init_readout(k_readout, size, task.num_values),
    )


def num_floats(tree: Any) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def matched_hidden_size(
    name: str, target: int, task: Task, *, embed_size: int, num_layers: int
) -> tuple[int, int]:
    """``(hidden_size, num_params)`` of the model ``name`` whose number of parameters is
    the nearest to ``target``; hidden sizes step by the layers' ``num_heads``, which must
    divide them. Shapes only: ``jax.eval_shape`` allocates nothing."""
    step = math.lcm(*(options.get("num_heads", 1) for _, options in MODELS[name]))

    @functools.cache
    def count(multiple: int) -> int:
        init = functools.partial(
            init_model,
            name=name,
            hidden_size=multiple * step,
            task=task,
            embed_size=embed_size,
            num_layers=num_layers,
        )
        return num_floats(jax.eval_shape(init, jax.random.key(0)))

    # The count grows with the hidden size: double, then bisect to the first multiple
    # at or above the target, and keep it or the one below, whichever is nearer.
    high = 1
    while count(high) < target:
        high *= 2
    low = high // 2 + 1 if high > 1 else 1
    while low < high:
        middle = (low + high) // 2
        if count(middle) < target:
            low = middle + 1
        else:
            high = middle
    best = min({max(high - 1, 1), high}, key=lambda m: abs(count(m) - target))
    return best * step, count(best)


def logits(
    model: Model, keys: jax.Array, values: jax.Array, num_queries: int, method: str
) -> jax.Array:
    """Logits ``(num_queries, batch, num_values)`` at the last ``num_queries`` steps."""
    xs = jnp.concatenate([model.key_embedding[keys], model.value_embedding[values]], axis=-1)
    _, ys = jaxrnn.unroll(model.rnn, None, xs, method=method)
    return jaxrnn.heads.readout(model.readout, ys[-num_queries:])


def loss_fn(
    model: Model, keys: jax.Array, values: jax.Array, answers: jax.Array, *, method: str
) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy of the answers, and their accuracy as ``aux``."""
    predicted = logits(model, keys, values, answers.shape[0], method)
    loss = jaxrnn.losses.sequence_softmax_cross_entropy(predicted, answers)
    return loss, jnp.mean(jnp.argmax(predicted, -1) == answers)


@functools.cache
def trainer(method: str, num_steps: int, learning_rate: float) -> tuple[Any, Callable]:
    """The train step (jitted by ``make_train_step``) and the jitted test loss of models
    run by ``method``: jit compiles them once per model, the seeds reuse them."""
    loss = functools.partial(loss_fn, method=method)
    schedule = optax.cosine_decay_schedule(learning_rate, num_steps, alpha=0.1)
    train = jaxrnn.train.make_train_step(
        loss, optax.adam(schedule), max_grad_norm=1.0, has_aux=True
    )
    return train, jax.jit(loss)


def train_one(
    model: Model,
    task: Task,
    test: Batch,
    *,
    seed: int,
    method: str,
    num_steps: int,
    eval_every: int,
    batch_size: int,
    learning_rate: float,
) -> dict[str, list[float]]:
    """Train ``model`` on the batches drawn from ``seed``; return its training losses
    (every step) and test accuracies (every ``eval_every`` steps, and at the end)."""
    train, evaluate = trainer(method, num_steps, learning_rate)
    rng = np.random.default_rng(seed)  # the same batches for every model
    state, curves = train.init(model), {"step": [], "test_accuracy": [], "train_loss": []}
    for step in range(1, num_steps + 1):
        state, metrics = train.step(state, *make_batch(rng, batch_size, task))
        curves["train_loss"].append(float(metrics.loss))
        if step % eval_every == 0 or step == num_steps:
            _, accuracy = evaluate(state.params, *test)
            curves["step"].append(step)
            curves["test_accuracy"].append(float(accuracy))
    return curves


def markdown_table(results: dict[str, Any]) -> str:
    """One row per model: sizes, parameters, state, test accuracy over the seeds, time."""
    rows = [
        "| model | hidden size | parameters | state (floats) | test accuracy | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["models"].items():
        accuracies = r["test_accuracy"]
        spread = f" ({min(accuracies):.3f}-{max(accuracies):.3f})" if len(accuracies) > 1 else ""
        rows.append(
            f"| {name} | {r['hidden_size']} | {r['num_params']:,} | {r['state_size']:,} "
            f"| {np.mean(accuracies):.3f}{spread} | {r['seconds']:.0f} |"
        )
    return "\n".join(rows)


def plot(results: dict[str, Any], path: str) -> None:
    """Test accuracy (mean over seeds, and their range) and smoothed training loss (mean
    over seeds) against the step."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    config = results["config"]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, r in results["models"].items():
        curves = r["curves"]
        label = f"{name} ({r['num_params'] / 1000:.1f}k)"
        steps, accuracies = curves[0]["step"], np.array([c["test_accuracy"] for c in curves])
        (line,) = ax_acc.plot(steps, accuracies.mean(0), label=label)
        if len(curves) > 1:  # the seeds' range
            ax_acc.fill_between(
                steps, accuracies.min(0), accuracies.max(0), color=line.get_color(), alpha=0.2
            )
        window = max(1, config["num_steps"] // 50)
        loss = np.mean([c["train_loss"] for c in curves], axis=0)
        smoothed = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax_loss.plot(np.arange(window, len(loss) + 1), smoothed, color=line.get_color())
    ax_acc.axhline(1 / config["num_values"], color="0.5", ls="--", lw=1, label="chance")
    ax_acc.set(xlabel="training step", ylabel="test accuracy", ylim=(0, 1.02))
    ax_loss.set(xlabel="training step", ylabel="training loss (cross-entropy)", ylim=(0, None))
    ax_acc.legend(fontsize=8)
    seeds = len(config["seeds"])
    fig.suptitle(
        f"Associative recall: {config['num_pairs']} pairs, {config['seq_len']} steps, "
        f"~{config['num_params']:,} parameters, {seeds} seed{'s' * (seeds > 1)}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(
    cells: Sequence[str] = tuple(MODELS),
    num_params: int = 20_000,
    num_pairs: int = 8,
    seq_len: int = 64,
    num_keys: int = 64,
    num_values: int = 64,
    embed_size: int = 32,
    num_layers: int = 1,
    num_steps: int = 1000,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    eval_every: int = 50,
    num_test: int = 512,
    seeds: Sequence[int] = (0,),
    plot_path: str | None = None,
    results_path: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every model of ``cells`` that this jaxrnn has; return the results (the JSON)."""
    config = {k: v for k, v in locals().items() if k not in ("log",)}
    config.update(cells=list(cells), seeds=list(seeds))
    if seq_len < 2 * num_pairs or num_pairs > num_keys:
        raise ValueError(
            "main: need num_pairs <= num_keys and seq_len >= 2 * num_pairs; got "
            f"num_pairs={num_pairs}, num_keys={num_keys}, seq_len={seq_len}"
        )
    unknown = [name for name in cells if name not in MODELS]
    if unknown:
        raise ValueError(f"main: cells must be among {', '.join(MODELS)}; got {unknown}")
    available = [n for n in cells if all(c in jaxrnn.cells.CELL_INITS for c, _ in MODELS[n])]
    skipped = [name for name in cells if name not in available]
    if skipped:
        log(f"skipped (not in jaxrnn.cells.CELL_INITS): {', '.join(skipped)}")
    task = Task(num_keys, num_values, num_pairs, seq_len)
    sizes = {"embed_size": embed_size, "num_layers": num_layers}
    test = make_batch(np.random.default_rng([seeds[0], 1]), num_test, task)  # never trained on
    results: dict[str, Any] = {"config": config, "skipped": skipped, "models": {}}
    start, cpu_start = time.perf_counter(), time.process_time()
    for name in available:
        hidden_size, count = matched_hidden_size(name, num_params, task, **sizes)
        init = functools.partial(init_model, name=name, hidden_size=hidden_size, task=task, **sizes)
        rnn = jax.eval_shape(init, jax.random.key(0)).rnn
        state_size = num_floats(jax.eval_shape(jaxrnn.init_carry, rnn))
        log(f"{name}: hidden size {hidden_size}, {count:,} parameters, state {state_size:,}")
        model_start, curves = time.perf_counter(), []
        for seed in seeds:
            curves.append(
                train_one(
                    init(jax.random.key(seed)),
                    task,
                    test,
                    seed=seed,
                    method=METHODS.get(name, "sequential"),
                    num_steps=num_steps,
                    eval_every=eval_every,
                    batch_size=batch_size,
                    learning_rate=learning_rate,
                )
            )
            log(f"  seed {seed}: test accuracy {curves[-1]['test_accuracy'][-1]:.3f}")
        results["models"][name] = {
            "cells": [cell for cell, _ in MODELS[name]],
            "hidden_size": hidden_size,
            "num_params": count,
            "state_size": state_size,
            "test_accuracy": [c["test_accuracy"][-1] for c in curves],
            "seconds": time.perf_counter() - model_start,
            "curves": curves,
        }
    results["seconds"] = time.perf_counter() - start
    results["cpu_seconds"] = time.process_time() - cpu_start  # all threads' time
    table = markdown_table(results)
    log(
        f"\n{table}\n\n{len(available)} models in {results['seconds']:.0f} s "
        f"({results['cpu_seconds']:.0f} s of CPU time)"
    )
    if plot_path is not None:
        plot(results, plot_path)
    if results_path is not None:
        path = pathlib.Path(results_path)
        path.write_text(json.dumps(results, indent=1) + "\n")
        path.with_suffix(".md").write_text(table + "\n")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--num-params", type=int, default=20_000, help="each model's target")
    parser.add_argument("--num-pairs", type=int, default=8, help="key-value pairs to recall")
    parser.add_argument("--seq-len", type=int, default=64, help="steps, pairs and queries in")
    parser.add_argument("--num-keys", type=int, default=64)
    parser.add_argument("--num-values", type=int, default=64)
    parser.add_argument("--embed-size", type=int, default=32, help="both embeddings together")
    parser.add_argument("--num-layers", type=int, default=1, help="copies of each model's layers")
    parser.add_argument("--num-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--num-test", type=int, default=512, help="test sequences")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--plot", dest="plot_path", help="write the curves to this PNG")
    parser.add_argument("--results", dest="results_path", help="write JSON here, Markdown beside")
    main(**vars(parser.parse_args()))
