"""Time two versions of jaxrnn side by side: before and after a refactor, in one run.

    git worktree add /tmp/jaxrnn-before <commit>
    python benchmarks/compare_versions.py /tmp/jaxrnn-before/src src

Each version runs in its own worker process (``PYTHONPATH`` set to its ``src``), which
compiles ``unroll``'s forward and forward+backward for LSTM and GRU cells at two configs
(default method, as a user calls it) and reports XLA's compile-time memory analysis of a
``remat=True`` training step. The parent then interleaves samples in rounds, alternating
which version goes first, and prints medians, min-max and the after/before ratio of each
row (a ratio within one run is stable to a few percent; absolute times are not).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CONFIGS = [(100, 32, 64, 128), (1000, 16, 32, 64)]  # (time, batch, input, hidden)
CELLS = ("lstm", "gru")
MODES = ("forward", "train")

WORKER = r"""
import json, sys, time
import jax, jax.numpy as jnp
import jaxrnn

configs = json.loads(sys.argv[1])
fns = {}
for cell in ("lstm", "gru"):
    for t, b, d, h in configs:
        params = jaxrnn.init_params(jax.random.key(0), cell, d, h)
        xs = jax.random.normal(jax.random.key(1), (t, b, d))
        fwd = jax.jit(lambda p, x: jaxrnn.unroll(p, None, x)[1])
        loss = lambda p, x: jnp.sum(jaxrnn.unroll(p, None, x)[1] ** 2)
        train = jax.jit(jax.grad(loss))
        for mode, fn in (("forward", fwd), ("train", train)):
            jax.block_until_ready(fn(params, xs))
            fns[f"{cell} {(t, b, d, h)} {mode}"] = (fn, params, xs)
remat_loss = lambda p, x: jnp.sum(jaxrnn.unroll(p, None, x, remat=True)[1] ** 2)
params = jaxrnn.init_params(jax.random.key(0), "lstm", 32, 64)
xs = jnp.ones((4000, 16, 32))
memory = jax.jit(jax.grad(remat_loss)).lower(params, xs).compile().memory_analysis()
print(json.dumps({"ready": sorted(fns), "remat_temp_bytes": memory.temp_size_in_bytes}), flush=True)
for line in sys.stdin:
    fn, params, xs = fns[line.strip()]
    start, count = time.perf_counter(), 0
    while True:
        jax.block_until_ready(fn(params, xs))
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed > 0.03:
            break
    print(json.dumps(elapsed / count), flush=True)
"""


def start(src: str) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(src)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(CONFIGS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def sample(proc: subprocess.Popen, row: str) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(row + "\n")
    proc.stdin.flush()
    return float(json.loads(proc.stdout.readline()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", help="src folder of the version before")
    parser.add_argument("after", help="src folder of the version after")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    (proc_a, info_a), (proc_b, info_b) = start(args.before), start(args.after)
    rows = info_a["ready"]
    times: dict[str, dict[str, list[float]]] = {row: {"before": [], "after": []} for row in rows}
    for r in range(args.rounds):
        order = [("before", proc_a), ("after", proc_b)]
        for row in rows:
            for name, proc in order if r % 2 == 0 else order[::-1]:
                times[row][name].append(sample(proc, row))
    for proc in (proc_a, proc_b):
        proc.terminate()
    print(f"| row (T, B, D, H) | before ms | after ms | after/before | ({args.rounds} rounds) |")
    print("|---|---|---|---|---|")
    for row in rows:
        b, a = times[row]["before"], times[row]["after"]
        ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
        print(
            f"| {row} | {1e3 * statistics.median(b):.2f} ({1e3 * min(b):.2f}-{1e3 * max(b):.2f})"
            f" | {1e3 * statistics.median(a):.2f} ({1e3 * min(a):.2f}-{1e3 * max(a):.2f})"
            f" | {ratio:.3f} | |"
        )
    mib = 2**20
    print(
        f"\nremat=True training step, LSTM (4000, 16, 32, 64), XLA temp memory: "
        f"before {info_a['remat_temp_bytes'] / mib:.2f} MiB, "
        f"after {info_b['remat_temp_bytes'] / mib:.2f} MiB"
    )


if __name__ == "__main__":
    main()
