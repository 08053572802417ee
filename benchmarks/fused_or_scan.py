"""The measurement behind ``method="auto"``: the hand-scheduled derivatives
(``method="fused"``) against autodiff of the plain scan (``method="sequential"``), per cell
and size, interleaved.

``auto`` takes the fused path for LSTM cells at every size and for GRU cells while
``batch * hidden_size <= jaxrnn.core.hand_derivatives.FUSED_MAX_STATE`` (each kernel's
``auto_max_state``), and the plain scan otherwise. This script
times both methods on each config, forward (all hidden states) and forward+backward
(``jax.grad`` of ``sum(ys)`` with respect to params and ``xs``), and reports the fused
path's time over the plain scan's per round, as median (min-max) over rounds, with
``auto``'s choice beside it (``../shared/BENCHMARKING.md``), and the temporary memory XLA
assigns to each compiled training step (``memory_analysis().temp_size_in_bytes``: the
stored residuals and work buffers, without params, inputs and outputs). Results in
``docs/performance.md``.

    python benchmarks/fused_or_scan.py --out benchmarks/results/fused-or-scan.md
    python benchmarks/fused_or_scan.py --cells gru --configs 1000x16x32x64 --rounds 5
"""

from __future__ import annotations

import statistics

import jax
from gate_math_bound import command_line, interleaved  # a sibling script in benchmarks/

import jaxrnn
from jaxrnn.core.hand_derivatives import prefers_fused

CONFIGS = (
    "600x8x32x32,500x16x32x64,1000x16x32x64,2000x16x32x64,100x32x64x128,300x8x128x256,"
    "100x64x64x128,100x128x64x128,200x64x128x256,50x128x256x512"
)
METHODS = ("fused", "sequential")


def rows_for(cell: str, T: int, B: int, D: int, H: int):
    """``[(method, mode, compiled fn, args)]`` for one cell and config: each program
    compiled once, then both timed and asked for its memory."""
    kx, kp = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(kx, (T, B, D))
    params = jaxrnn.init_params(kp, cell, D, H)
    rows = []
    for method in METHODS:

        def forward(p, xs, method=method):
            return jaxrnn.unroll(p, None, xs, method=method)[1]

        def train(p, xs, forward=forward):
            return jax.grad(lambda p, xs: forward(p, xs).sum(), argnums=(0, 1))(p, xs)

        for mode, fn in (("fwd", forward), ("f+b", train)):
            rows.append((method, mode, jax.jit(fn).lower(params, xs).compile(), (params, xs)))
    return rows, prefers_fused(params, xs)


def temp_mib(compiled) -> float:
    """XLA's temporary buffers of a compiled program, in MiB."""
    return compiled.memory_analysis().temp_size_in_bytes / 2**20


def run_config(cell: str, config: str, rounds: int, min_seconds: float) -> list[str]:
    T, B, D, H = (int(v) for v in config.split("x"))
    rows, auto_fused = rows_for(cell, T, B, D, H)
    memory = {(m, mode): temp_mib(fn) for m, mode, fn, _ in rows}
    samples = interleaved(rows, rounds, min_seconds)
    times = {(m, mode): t for (m, mode, _, _), t in zip(rows, samples, strict=True)}
    lines = []
    for mode in ("fwd", "f+b"):
        fused, scan = times["fused", mode], times["sequential", mode]
        ratio = [f / s for f, s in zip(fused, scan, strict=True)]
        ms = [1e3 * statistics.median(t) for t in (fused, scan)]
        mib = [memory[m, mode] for m in METHODS]
        lines.append(
            f"| {cell} ({T}, {B}, {D}, {H}) | {B * H} | {mode} | {ms[0]:.3g} | {ms[1]:.3g} | "
            f"{statistics.median(ratio):.2f} ({min(ratio):.2f}–{max(ratio):.2f}) | "
            f"{mib[0]:.3g} / {mib[1]:.3g} | {'fused' if auto_fused else 'sequential'} |"
        )
    return lines


def main() -> None:
    command_line(
        __doc__,
        "Fused (hand-scheduled) against the plain scan",
        "Times in ms, medians over rounds; the ratio is taken per round, median (min–max).",
        [
            "cell (T, B, D, H)",
            "batch × hidden",
            "mode",
            "fused ms",
            "sequential ms",
            "fused ÷ sequential",
            "temp MiB fused / sequential",
            "auto takes",
        ],
        run_config,
        configs=CONFIGS,
        rounds=7,
    )


if __name__ == "__main__":
    main()
