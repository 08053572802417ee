"""Data-parallel training of an LSTM classifier on every local device, with jax.sharding.

    python examples/data_parallel.py                 # all local GPUs/TPU cores, or the CPU
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py
                                                     # 8 simulated CPU devices

The recipe (nothing in it is specific to jaxrnn; the RNN is just a jit-able function):

1. A 1-D :class:`jax.sharding.Mesh` over the devices, with axis ``"data"``.
2. Params and optimizer state **replicated** on every device; each batch **sharded** on
   its batch dimension: dimension 1 of time-major ``xs`` ``(time, batch, features)``,
   dimension 0 of ``lengths`` and ``labels``.
3. ``jax.jit`` with those ``in_shardings`` / ``out_shardings``. XLA partitions the whole
   step: every device runs ``lax.scan`` over its slice of the batch, and the gradient
   (a mean over the batch) is summed across devices by one all-reduce. The batch is
   never gathered onto one device.

On several hosts the same script works after ``jax.distributed.initialize()`` (see
``docs/scaling.md``): ``jax.devices()`` then lists every host's devices, and each host
feeds only its own part of the batch through ``jax.make_array_from_process_local_data``.

The task: does the first feature of a variable-length sequence sum to a positive number?
The classifier reads the LSTM's final state, which ``unroll(..., lengths=...)`` returns
after each sequence's last valid step.
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

import jaxrnn
from jaxrnn.sharding import batch_sharding, replicated

INPUT_SIZE, HIDDEN_SIZE, NUM_CLASSES, TIME = 4, 32, 2, 16


class Batch(NamedTuple):
    xs: jax.Array  # shape=(time, batch, input_size), float32
    lengths: jax.Array  # shape=(batch,), int32
    labels: jax.Array  # shape=(batch,), int32


def make_batch(rng: np.random.Generator, batch_size: int) -> Batch:
    """A batch of the toy task, as NumPy arrays on the host."""
    xs = rng.normal(size=(TIME, batch_size, INPUT_SIZE)).astype(np.float32)
    lengths = rng.integers(TIME // 2, TIME + 1, size=batch_size).astype(np.int32)
    valid = np.arange(TIME)[:, None] < lengths
    labels = ((xs[:, :, 0] * valid).sum(0) > 0).astype(np.int32)
    return Batch(xs, lengths, labels)


def init_model(key: jax.Array) -> dict[str, Any]:
    """A 2-layer LSTM and a linear readout of its final state."""
    k_rnn, k_head = jax.random.split(key)
    return {
        "rnn": jaxrnn.init_params(k_rnn, "lstm", INPUT_SIZE, HIDDEN_SIZE, num_layers=2),
        "head": {
            "w": jax.nn.initializers.lecun_normal()(k_head, (HIDDEN_SIZE, NUM_CLASSES)),
            "b": jnp.zeros((NUM_CLASSES,)),
        },
    }


def loss_fn(model: dict[str, Any], batch: Batch) -> jax.Array:
    """Mean cross-entropy of the classifier over the batch."""
    carry, _ = jaxrnn.unroll(model["rnn"], None, batch.xs, lengths=batch.lengths)
    final_h = carry[-1].h  # last layer's LSTMState.h after each sequence's last valid step
    logits = final_h @ model["head"]["w"] + model["head"]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels).mean()


def batch_shardings(mesh: Mesh) -> Batch:
    """Where each batch array lives: split over ``"data"`` along its batch dimension."""
    return Batch(
        xs=batch_sharding(mesh, "data", batch_dim=1),
        lengths=batch_sharding(mesh, "data", batch_dim=0),
        labels=batch_sharding(mesh, "data", batch_dim=0),
    )


def make_train_step(mesh: Mesh, optimizer: optax.GradientTransformation):
    """``step(model, opt_state, batch) -> (model, opt_state, loss)``, jitted over ``mesh``.

    Params and optimizer state in and out are replicated (a single sharding is a prefix
    for the whole pytree); the batch comes in sharded on ``"data"``.
    """

    def step(model, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(model, batch)
        updates, opt_state = optimizer.update(grads, opt_state, model)
        return optax.apply_updates(model, updates), opt_state, loss

    everywhere = replicated(mesh)
    return jax.jit(
        step,
        in_shardings=(everywhere, everywhere, batch_shardings(mesh)),
        out_shardings=(everywhere, everywhere, everywhere),
        donate_argnums=(0, 1),
    )


def shard_batch(mesh: Mesh, batch: Batch) -> Batch:
    """Put this process's part of the batch onto its devices, as one global array.

    With one process this is ``jax.device_put``; with several, each process passes its
    own rows and the result is the global batch, split over all hosts' devices.
    """
    return jax.tree.map(jax.make_array_from_process_local_data, batch_shardings(mesh), batch)


def accuracy(model: dict[str, Any], batch: Batch) -> jax.Array:
    carry, _ = jaxrnn.unroll(model["rnn"], None, batch.xs, lengths=batch.lengths)
    logits = carry[-1].h @ model["head"]["w"] + model["head"]["b"]
    return jnp.mean(jnp.argmax(logits, -1) == batch.labels)


def main(steps: int = 300, per_device_batch: int = 16, seed: int = 0) -> float:
    devices = jax.devices()
    mesh = Mesh(np.array(devices), ("data",))
    global_batch = per_device_batch * len(devices)
    # Each process makes (here: generates; in practice: reads) only its own rows.
    local_batch = global_batch // jax.process_count()
    print(f"{len(devices)} devices ({devices[0].platform}), global batch {global_batch}")

    optimizer = optax.adam(3e-3)
    model = jax.device_put(init_model(jax.random.key(seed)), replicated(mesh))
    opt_state = jax.device_put(optimizer.init(model), replicated(mesh))
    train_step = make_train_step(mesh, optimizer)
    rng = np.random.default_rng(seed + jax.process_index())
    for step in range(steps):
        batch = shard_batch(mesh, make_batch(rng, local_batch))
        model, opt_state, loss = train_step(model, opt_state, batch)
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {float(loss):.4f}")
    test = shard_batch(mesh, make_batch(np.random.default_rng(10_000), local_batch))
    acc = float(jax.jit(accuracy)(model, test))
    print(f"test accuracy {acc:.3f}")
    return acc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--per-device-batch", type=int, default=16)
    args = parser.parse_args()
    main(args.steps, args.per_device_batch)
