"""The mLSTM's three forms on this machine: where do the parallel forms pay?

Times ``jax.jit``-compiled calls (compilation excluded; best of ``--repeats``) of
``unroll`` on ``"mlstm"`` params with

- ``method="sequential"``: ``lax.scan`` of the stabilized recurrence, ``T`` steps;
- ``method="parallel"``: the quadratic form, all steps at once (``O(T²)`` per head);
- ``Parallel(strategy="chunked", chunk_size=L)``: the chunkwise form, ``T/L`` steps of a
  ``lax.scan`` over chunk ends and the quadratic form inside chunks,

forward and forward+backward (``jax.grad`` of a sum), over sequence lengths ``T``, at two
sizes, one sequence (batch 1, where parallelism over time should help most) and 8. Prints
a Markdown table of times and writes JSON.

    python benchmarks/mlstm_parallel.py            # T = 16 ... 4096, about 10 minutes on 2 cores
    python benchmarks/mlstm_parallel.py --quick    # a few points, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
from parallel_in_time import timed  # a sibling script: benchmarks/ is on sys.path

import jaxrnn
from jaxrnn.parallel import Parallel

INPUT_SIZE = 32
#: (hidden_size, num_heads): head sizes 16 and 64.
SIZES = [(64, 4), (256, 4)]
CHUNK_SIZE = 64
#: The quadratic form's T x T matrices (and their gradients) grow as T²: stop before the
#: memory does.
QUADRATIC_MAX_STEPS = 2048


def methods(num_steps: int) -> dict:
    chosen = {"sequential": "sequential"}
    if num_steps <= QUADRATIC_MAX_STEPS:
        chosen["quadratic"] = "parallel"
    if num_steps > CHUNK_SIZE:
        chosen[f"chunkwise L={CHUNK_SIZE}"] = Parallel(strategy="chunked", chunk_size=CHUNK_SIZE)
    return chosen


def rows(num_steps: int, batch: int, hidden: int, heads: int, repeats: int) -> list[dict]:
    params = jaxrnn.init_params(jax.random.key(0), "mlstm", INPUT_SIZE, hidden, num_heads=heads)
    xs = jax.random.normal(jax.random.key(1), (num_steps, batch, INPUT_SIZE))
    out = []
    for name, method in methods(num_steps).items():

        def forward(params, xs, method=method):
            return jaxrnn.unroll(params, None, xs, method=method)[1]

        def loss(params, xs, method=method):
            return jnp.sum(jaxrnn.unroll(params, None, xs, method=method)[1])

        for pass_name, fn in (("forward", jax.jit(forward)), ("grad", jax.jit(jax.grad(loss)))):
            seconds = timed(fn, params, xs, repeats=repeats)
            row = dict(T=num_steps, batch=batch, hidden=hidden, heads=heads, method=name)
            out.append({**row, "pass": pass_name, "seconds": seconds})
            print(f"  {row} {pass_name}: {seconds * 1e3:.2f} ms", flush=True)
    return out


def table(results: list[dict]) -> str:
    """Markdown: one row per (size, batch, pass, method), one column per T, milliseconds."""
    steps = sorted({r["T"] for r in results})
    lines = [
        "| hidden/heads, batch, pass | method | " + " | ".join(f"T={t}" for t in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    keys = []
    for r in results:
        key = (r["hidden"], r["heads"], r["batch"], r["pass"], r["method"])
        if key not in keys:
            keys.append(key)
    for hidden, heads, batch, pass_name, method in keys:
        cells = []
        for t in steps:
            match = [
                r
                for r in results
                if (r["hidden"], r["heads"], r["batch"], r["pass"], r["method"], r["T"])
                == (hidden, heads, batch, pass_name, method, t)
            ]
            cells.append(f"{match[0]['seconds'] * 1e3:.3g}" if match else "–")
        label = f"{hidden}/{heads}, {batch}, {pass_name}"
        lines.append(f"| {label} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few points only")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "mlstm_parallel_cpu.json"
    )
    args = parser.parse_args()
    steps = [64, 512] if args.quick else [16, 64, 256, 1024, 4096]
    batches = [1] if args.quick else [1, 8]
    results = []
    for hidden, heads in SIZES:
        for batch in batches:
            for num_steps in steps:
                results.extend(rows(num_steps, batch, hidden, heads, args.repeats))
    info = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}",
        "jax": jax.__version__,
        "load_average_at_end": os.getloadavg(),
        "input_size": INPUT_SIZE,
        "chunk_size": CHUNK_SIZE,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"info": info, "results": results}, indent=1))
    print(json.dumps(info))
    print(table(results))


if __name__ == "__main__":
    main()
