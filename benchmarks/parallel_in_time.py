"""Sequential vs parallel-in-time unrolling: where does the parallel scan (or DEER) pay?

Times ``jax.jit``-compiled calls (compilation excluded; median of repeats) of

- a cell linear in its state (minGRU; LRU with ``--cells``) with ``method="sequential"``,
  ``method="parallel"`` with the tree (``associative_scan``) and the chunked strategy,
  forward and forward+backward (``jax.grad`` of a sum);
- a nonlinear GRU with ``method="sequential"``, ``"deer"`` (full Jacobians, only where the
  ``time x n x n`` Jacobians fit in memory) and ``"quasi_deer"`` (diagonal), and their
  trust-region versions ``"elk"`` and ``"quasi_elk"`` (at ``T <= 10,000``, ``n <= 64``),
  forward only,

over sequence lengths ``T`` and state sizes ``n``, with one sequence (batch 1), which is
where parallelism over time is supposed to help most. Results go to a JSON file and a plot.

    python benchmarks/parallel_in_time.py            # full: T = 100 ... 100,000; n = 1 ... 256
    python benchmarks/parallel_in_time.py --quick    # a few points, about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn
import jaxrnn.parallel as par

INPUT_SIZE = 16
#: Skip DEER configurations whose Jacobians alone would exceed this many bytes, and full
#: DEER where T * n^3 (the cost of one scan of n x n matrices) exceeds this many flops.
JACOBIAN_BYTES_LIMIT = 2**28
FULL_DEER_FLOPS_LIMIT = 2e10
#: ELK's Kalman scans cost a few times DEER's: time them on the smaller problems only.
ELK_MAX_STEPS, ELK_MAX_SIZE = 10_000, 64
#: method -> (variant, trust_region) of the equivalent deer_unroll call.
SOLVERS = {
    "deer": ("full", None),
    "quasi_deer": ("diagonal", None),
    "elk": ("full", par.DEFAULT_TRUST_REGION),
    "quasi_elk": ("diagonal", par.DEFAULT_TRUST_REGION),
}


def timed(fn, *args, repeats: int) -> float:
    """Best wall time in seconds of ``fn(*args)`` after one compiling call (the minimum,
    not the median: on a machine shared with other jobs, noise only ever adds time)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def with_strategy(strategy: str, fn):
    """Trace ``fn`` with ``method="parallel"`` using ``strategy`` (the default is per backend)."""

    def traced(*args):
        saved = dict(par.DEFAULT_STRATEGY)
        par.DEFAULT_STRATEGY[jax.default_backend()] = strategy
        try:
            return fn(*args)
        finally:
            par.DEFAULT_STRATEGY.clear()
            par.DEFAULT_STRATEGY.update(saved)

    return traced


def linear_cell_rows(cell: str, num_steps: int, size: int, repeats: int) -> list[dict]:
    params = jaxrnn.init_params(jax.random.key(0), cell, INPUT_SIZE, size)
    xs = jax.random.normal(jax.random.key(1), (num_steps, 1, INPUT_SIZE))
    rows = []
    variants = {
        "sequential": ("sequential", None),
        "parallel (tree)": ("parallel", "tree"),
        "parallel (chunked)": ("parallel", "chunked"),
    }
    for label, (method, strategy) in variants.items():

        def forward(params, xs, method=method):
            return jaxrnn.unroll(params, None, xs, method=method)[1]

        def loss(params, xs, method=method):
            return jnp.sum(jaxrnn.unroll(params, None, xs, method=method)[1])

        grad = jax.grad(loss)
        if strategy is not None:
            forward, grad = with_strategy(strategy, forward), with_strategy(strategy, grad)
        for mode, fn in (("forward", forward), ("grad", grad)):
            seconds = timed(jax.jit(fn), params, xs, repeats=repeats)
            rows.append(dict(cell=cell, method=label, mode=mode, T=num_steps, n=size, s=seconds))
    return rows


def deer_rows(num_steps: int, size: int, repeats: int) -> list[dict]:
    params = jaxrnn.init_params(jax.random.key(0), "gru", INPUT_SIZE, size)
    xs = jax.random.normal(jax.random.key(1), (num_steps, 1, INPUT_SIZE))
    rows = []
    jacobian_bytes = 4 * num_steps * size * size
    for method in ("sequential", *SOLVERS):
        variant, trust_region = SOLVERS.get(method, ("full", None))
        if method != "sequential" and variant == "full":
            if jacobian_bytes > JACOBIAN_BYTES_LIMIT:
                continue
            if num_steps * size**3 > FULL_DEER_FLOPS_LIMIT:
                continue
        if trust_region is not None and (num_steps > ELK_MAX_STEPS or size > ELK_MAX_SIZE):
            continue

        def forward(params, xs, method=method):
            return jaxrnn.unroll(params, None, xs, method=method)[1]

        seconds = timed(jax.jit(forward), params, xs, repeats=repeats)
        row = dict(cell="gru", method=method, mode="forward", T=num_steps, n=size, s=seconds)
        if method != "sequential":
            solve = jax.jit(
                lambda p, x, v=variant, tr=trust_region: par.deer_unroll(
                    p, None, x, variant=v, trust_region=tr, max_iter=500
                )[2]
            )
            row["iterations"] = int(solve(params, xs).iterations.max())
        rows.append(row)
    return rows


def crossovers(rows: list[dict], baseline: str = "sequential") -> list[str]:
    """Plain sentences: at each (cell, mode, n), the smallest T where a method beats baseline."""
    lines = []
    keys = sorted({(r["cell"], r["mode"], r["n"]) for r in rows})
    for cell, mode, size in keys:
        group = [r for r in rows if (r["cell"], r["mode"], r["n"]) == (cell, mode, size)]
        base = {r["T"]: r["s"] for r in group if r["method"] == baseline}
        for method in sorted({r["method"] for r in group} - {baseline}):
            wins = sorted(r["T"] for r in group if r["method"] == method and r["s"] < base[r["T"]])
            tried = sorted(r["T"] for r in group if r["method"] == method)
            ratios = ", ".join(
                f"T={r['T']}: {base[r['T']] / r['s']:.2g}x"
                for r in sorted(group, key=lambda r: r["T"])
                if r["method"] == method
            )
            verdict = f"faster from T={wins[0]}" if wins else "never faster"
            if wins and wins != [t for t in tried if t >= wins[0]]:
                verdict = f"faster only at T in {wins}"
            lines.append(f"{cell} {mode} n={size}: {method} {verdict} (speed-up {ratios})")
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["cell"], r["mode"]) for r in rows})
    sizes = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(
        len(panels), len(sizes), figsize=(3.2 * len(sizes), 2.6 * len(panels)), squeeze=False
    )
    for i, (cell, mode) in enumerate(panels):
        for j, size in enumerate(sizes):
            ax = axes[i][j]
            group = [r for r in rows if (r["cell"], r["mode"], r["n"]) == (cell, mode, size)]
            for method in sorted({r["method"] for r in group}):
                points = sorted((r["T"], r["s"]) for r in group if r["method"] == method)
                ax.plot(*zip(*points, strict=True), marker="o", label=method)
            ax.set(xscale="log", yscale="log", title=f"{cell} {mode}, n={size}")
            ax.set_xlabel("T")
            if j == 0:
                ax.set_ylabel("seconds")
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=72)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few points, small sizes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--cells", nargs="+", default=["mingru"], help="linear cells to time")
    parser.add_argument("--no-deer", action="store_true", help="only the linear cells")
    parser.add_argument("--lengths", type=int, nargs="+", help="T values (default by --quick)")
    parser.add_argument("--tag", default="", help="suffix of the results' file names")
    args = parser.parse_args()
    if args.quick:
        lengths, sizes, repeats = [100, 1_000, 10_000], [1, 64], 3
    else:
        lengths, sizes, repeats = [100, 1_000, 10_000, 100_000], [1, 16, 64, 256], 3
    lengths = args.lengths or lengths
    rows = []
    for num_steps in lengths:
        for size in sizes:
            new = [r for c in args.cells for r in linear_cell_rows(c, num_steps, size, repeats)]
            new += [] if args.no_deer else deer_rows(num_steps, size, repeats)
            for row in new:
                print(json.dumps(row), flush=True)
            rows += new
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"parallel_in_time_{jax.default_backend()}{'_quick' if args.quick else ''}"
    name += f"_{args.tag}" if args.tag else ""
    meta = dict(
        backend=jax.default_backend(),
        device=str(jax.devices()[0]),
        cpu_count=os.cpu_count(),
        machine=platform.machine(),
        jax=jax.__version__,
        input_size=INPUT_SIZE,
        batch=1,
    )
    (args.out / f"{name}.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    plot(rows, args.out / f"{name}.png")
    print("\n".join(crossovers(rows)))


if __name__ == "__main__":
    main()
