"""Data-parallel training of an LSTM classifier on every device, with jax.sharding.

    python examples/data_parallel.py                 # all local GPUs/TPU cores, or the CPU
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/data_parallel.py
                                                     # 8 simulated CPU devices

Several processes (one per host, or several on one host) run the same script, each with
its process id; the flags are the arguments of ``jax.distributed.initialize``:

    export XLA_FLAGS=--xla_force_host_platform_device_count=2   # 2 CPU devices each
    python examples/data_parallel.py --coordinator-address 127.0.0.1:1234 \
        --coordinator-bind-address 127.0.0.1:1234 --num-processes 2 --process-id 0 &
    python examples/data_parallel.py --coordinator-address 127.0.0.1:1234 \
        --coordinator-bind-address 127.0.0.1:1234 --num-processes 2 --process-id 1

On several hosts, give every process process 0's reachable address and leave out
``--coordinator-bind-address`` (process 0 then listens on all interfaces). ``--distributed``
alone calls ``jax.distributed.initialize()`` without arguments, which detects them on TPU
pods and under SLURM or Open MPI. On CPUs the processes' collectives go through gloo.

The recipe (nothing in it is specific to jaxrnn; the RNN is just a jit-able function):

1. A 1-D :class:`jax.sharding.Mesh` over the devices, with axis ``"data"``.
2. Params and optimizer state **replicated** on every device; each batch **sharded** on
   its batch dimension: dimension 1 of time-major ``xs`` ``(time, batch, features)``,
   dimension 0 of ``lengths`` and ``labels``.
3. ``jax.jit`` with those ``in_shardings`` / ``out_shardings``. XLA partitions the whole
   step: every device runs ``lax.scan`` over its slice of the batch, and the gradient
   (a mean over the batch) is summed across devices by one all-reduce. The batch is
   never gathered onto one device.

With several processes (see ``docs/scaling.md``) ``jax.devices()`` lists every process's
devices, so the mesh spans them all; each process builds only its own rows of every batch
and ``jax.make_array_from_process_local_data`` assembles the global batch from them. Only
process 0 prints.

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


def init_state(
    mesh: Mesh, optimizer: optax.GradientTransformation, key: jax.Array
) -> tuple[dict[str, Any], optax.OptState]:
    """The model and its optimizer state, replicated on every device of ``mesh``.

    Every process computes the same model from ``key`` and puts it on its devices. The
    state is created in place by ``jit`` with ``out_shardings``, so that every leaf,
    optax's scalar step ``count`` included, is one array on all of ``mesh``'s devices:
    ``optimizer.init(model)`` alone would put ``count`` on one device of each process.
    """
    everywhere = replicated(mesh)
    model = jax.device_put(init_model(key), everywhere)
    opt_state = jax.jit(optimizer.init, out_shardings=everywhere)(model)
    return model, opt_state


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


def report(message: str) -> None:
    """Print on process 0 only: every process runs this script, one should talk."""
    if jax.process_index() == 0:
        print(message)


def main(steps: int = 300, per_device_batch: int = 16, seed: int = 0) -> float:
    devices = jax.devices()  # every process's devices
    mesh = Mesh(np.array(devices), ("data",))
    global_batch = per_device_batch * len(devices)
    # Each process makes (here: generates; in practice: reads) only its own rows: its
    # share of the batch, from a random stream of its own.
    local_batch = global_batch // jax.process_count()
    train_rng = np.random.default_rng([seed, jax.process_index()])
    test_rng = np.random.default_rng([10_000, jax.process_index()])
    report(
        f"{len(devices)} devices ({devices[0].platform}) in {jax.process_count()} "
        f"process(es), global batch {global_batch}"
    )

    optimizer = optax.adam(3e-3)
    model, opt_state = init_state(mesh, optimizer, jax.random.key(seed))
    train_step = make_train_step(mesh, optimizer)
    for step in range(steps):
        batch = shard_batch(mesh, make_batch(train_rng, local_batch))
        model, opt_state, loss = train_step(model, opt_state, batch)
        if step % 50 == 0 or step == steps - 1:
            report(f"step {step:4d}  loss {float(loss):.4f}")
    test = shard_batch(mesh, make_batch(test_rng, local_batch))
    acc = float(jax.jit(accuracy, out_shardings=replicated(mesh))(model, test))
    report(f"test accuracy {acc:.3f}")
    return acc


def initialize_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` from the command line, before JAX starts a backend."""
    # Cross-process collectives on CPU (the default since JAX 0.5.1; earlier it was off).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=args.coordinator_address,
        num_processes=args.num_processes,
        process_id=args.process_id,
        coordinator_bind_address=args.coordinator_bind_address,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--per-device-batch", type=int, default=16)
    distributed = parser.add_argument_group(
        "several processes", "any of these calls jax.distributed.initialize"
    )
    distributed.add_argument(
        "--distributed", action="store_true", help="detect the rest (TPU, SLURM, Open MPI)"
    )
    distributed.add_argument("--coordinator-address", help="process 0's host:port")
    distributed.add_argument(
        "--coordinator-bind-address", help="where process 0 listens (default: [::]:port)"
    )
    distributed.add_argument("--num-processes", type=int)
    distributed.add_argument("--process-id", type=int)
    args = parser.parse_args()
    given = (args.coordinator_address, args.coordinator_bind_address, args.num_processes)
    if args.distributed or any(value is not None for value in (*given, args.process_id)):
        initialize_distributed(args)
    main(args.steps, args.per_device_batch)
