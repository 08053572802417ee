"""One process of the trainings that ``tests/test_multiprocess.py`` compares.

    python tests/multiprocess_worker.py OUT                     # the reference: 1 process
    python tests/multiprocess_worker.py OUT --port PORT --num-processes 2 --process-id I

With ``--port`` this is process ``I`` of one ``jax.distributed`` job whose coordinator
listens on ``127.0.0.1:PORT`` (the test gives each process 2 CPU devices); without, it is
the 1-process run that the job must equal (the test gives it 1 device). Each process
runs these trainings on meshes over all the job's devices, and writes
``OUT/<training>-<I>.npz`` (the losses and the final params, gathered):

- ``bidirectional``: a bidirectional 2-layer LSTM with variable ``lengths``, the batch
  split over every device (data parallelism);
- ``example``: ``examples/data_parallel.py``'s model and train step, the same way;
- ``tensor_parallel``: the ``bidirectional`` training with the gates split over a mesh
  axis ``"model"`` whose two halves are the two processes (``gate_sharding``), the batch
  over ``"data"``, the optimizer state placed by ``optimizer_sharding``;

and then the example's ``main`` for two steps, its output in ``OUT/main-<I>.txt``. The
reference runs the first two only: its ``bidirectional`` is ``tensor_parallel``'s
reference too. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, Sharding

import jaxrnn
from jaxrnn.sharding import gate_sharding, optimizer_sharding, replicated

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "data_parallel.py"
spec = importlib.util.spec_from_file_location("data_parallel", EXAMPLE)
dp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dp)

#: The global batch is CHUNKS chunks of CHUNK sequences; chunk c of step s is generated
#: from the seed (s, c), so it is the same data however the chunks are spread.
CHUNKS, CHUNK, STEPS, HIDDEN_SIZE = 4, 2, 3, 4


def bind_gloo_to_loopback() -> None:
    """Make gloo, the CPU collectives, listen on 127.0.0.1 only.

    ``jax.distributed.initialize`` has no option for it: gloo listens on the address of
    the machine's host name, which may be a public interface. JAX's CPU client takes the
    collectives as an argument, so build them here, bound to loopback, and register that
    client before anything starts the CPU backend (private JAX API: test-only).
    """
    import jax.extend.backend
    from jax._src import distributed, xla_bridge
    from jax._src.lib import _jax

    def cpu_client() -> Any:
        collectives = _jax.make_gloo_tcp_collectives(
            distributed_client=distributed.global_state.client, hostname="127.0.0.1"
        )
        return xla_bridge.make_cpu_client(collectives)

    jax.extend.backend.register_backend_factory("cpu", cpu_client, fail_quietly=False)


def rows(chunks: Sequence[int], step: int) -> Any:
    """This process's rows of step ``step``'s global batch: the chunks ``chunks``."""
    parts = [dp.make_batch(np.random.default_rng([step, c]), CHUNK) for c in chunks]
    return dp.Batch(
        xs=np.concatenate([part.xs for part in parts], axis=1),
        lengths=np.concatenate([part.lengths for part in parts]),
        labels=np.concatenate([part.labels for part in parts]),
    )


def bidirectional_loss(params: Any, batch: Any) -> jax.Array:
    """Mean square of the valid outputs: reaches every weight of both directions."""
    _, ys = jaxrnn.unroll(params, None, batch.xs, lengths=batch.lengths)
    valid = jaxrnn.sequence_mask(batch.lengths, ys.shape[0])[..., None]
    return jnp.sum(jnp.where(valid, ys, 0.0) ** 2) / (jnp.sum(valid) * ys.shape[-1])


def init_bidirectional(key: jax.Array) -> Any:
    return jaxrnn.init_params(
        key, "lstm", dp.INPUT_SIZE, HIDDEN_SIZE, num_layers=2, bidirectional=True
    )


def make_step(
    loss_fn: Callable, optimizer: optax.GradientTransformation, shardings: tuple, mesh: Mesh
) -> Callable:
    """A jitted train step; ``shardings`` = (params', optimizer state's, batch's)."""

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, in_shardings=shardings, out_shardings=(*shardings[:2], replicated(mesh)))


def train(step: Callable, params: Any, opt_state: Any, mesh: Mesh, chunks: Sequence[int]):
    losses = []
    for i in range(STEPS):
        batch = dp.shard_batch(mesh, rows(chunks, i))
        params, opt_state, loss = step(params, opt_state, batch)
        losses.append(float(loss))
    return params, opt_state, np.array(losses)


def save(path: pathlib.Path, mesh: Mesh, losses: np.ndarray, params: Any, **facts: Any) -> None:
    """Write the losses, the params (gathered onto every device first) and ``facts``."""
    params = jax.jit(lambda tree: tree, out_shardings=replicated(mesh))(params)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    arrays = {"param" + jax.tree_util.keystr(key): np.asarray(leaf) for key, leaf in leaves}
    np.savez(path, losses=losses, **arrays, **facts)


def describe(sharding: Sharding) -> dict[str, Any]:
    return {"devices": len(sharding.device_set), "replicated": sharding.is_fully_replicated}


def main(out: pathlib.Path) -> None:
    devices = jax.devices()
    assert [d.process_index for d in devices] == sorted(d.process_index for d in devices)
    processes, me = jax.process_count(), jax.process_index()
    # In a 1-D mesh over `devices`, process p holds the p-th block of the batch.
    my_chunks = range(me * CHUNKS // processes, (me + 1) * CHUNKS // processes)
    optimizer = optax.adam(0.05)
    key = jax.random.key(0)

    # Data parallelism over every device: params and state replicated.
    mesh = Mesh(np.array(devices), ("data",))
    everywhere = replicated(mesh)
    shardings = (everywhere, everywhere, dp.batch_shardings(mesh))
    # Made eagerly, then placed: jit would compile the initializers, for seconds.
    bidirectional = init_bidirectional(key)
    params = jax.device_put(bidirectional, everywhere)
    opt_state = jax.jit(optimizer.init, out_shardings=everywhere)(params)
    step = make_step(bidirectional_loss, optimizer, shardings, mesh)
    params, _, losses = train(step, params, opt_state, mesh, my_chunks)
    save(out / f"bidirectional-{me}.npz", mesh, losses, params)

    # The example's model, state and train step.
    model, opt_state = dp.init_state(mesh, optimizer, key)
    step = dp.make_train_step(mesh, optimizer)
    model, opt_state, losses = train(step, model, opt_state, mesh, my_chunks)
    count = opt_state[0].count
    save(out / f"example-{me}.npz", mesh, losses, model, **describe(count.sharding))

    if processes == 1:
        return  # the reference: tensor_parallel must equal bidirectional

    # Tensor parallelism: process p holds block p of the gates, for all of the batch.
    tp_mesh = Mesh(np.array(devices).reshape(processes, -1), ("model", "data"))
    params_sharding = gate_sharding(bidirectional, tp_mesh)
    params = jax.device_put(bidirectional, params_sharding)
    state_sharding = optimizer_sharding(optimizer, params, params_sharding, tp_mesh)
    opt_state = jax.jit(optimizer.init, out_shardings=state_sharding)(params)
    shardings = (params_sharding, state_sharding, dp.batch_shardings(tp_mesh))
    step = make_step(bidirectional_loss, optimizer, shardings, tp_mesh)
    params, opt_state, losses = train(step, params, opt_state, tp_mesh, range(CHUNKS))
    w_h = params.layers[0].forward.w_h
    mu_w_h = opt_state[0].mu.layers[0].forward.w_h
    facts = {
        **{f"count_{k}": v for k, v in describe(opt_state[0].count.sharding).items()},
        "w_h_shard": w_h.addressable_shards[0].data.shape,
        "w_h_local_columns": sorted({shard.index[-1].start for shard in w_h.addressable_shards}),
        "mu_w_h_spec": str(mu_w_h.sharding.spec),
        "w_h_spec": str(w_h.sharding.spec),
    }
    save(out / f"tensor_parallel-{me}.npz", tp_mesh, losses, params, **facts)

    # The example as its command line runs it, printing on process 0 only.
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        dp.main(steps=2, per_device_batch=2)
    (out / f"main-{me}.txt").write_text(printed.getvalue())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--port", type=int)
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args()
    if args.port is not None:
        address = f"127.0.0.1:{args.port}"
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=address,
            num_processes=args.num_processes,
            process_id=args.process_id,
            coordinator_bind_address=address,
            initialization_timeout=60,
        )
        bind_gloo_to_loopback()
    main(args.out)
    if args.port is not None:
        jax.distributed.shutdown()
