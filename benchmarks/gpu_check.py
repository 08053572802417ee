"""One-shot check of ``unroll(..., method="cudnn")`` on a GPU machine: tests, then timings.

    python benchmarks/gpu_check.py                  # tests + timings, ~2-4 min on one GPU
    python benchmarks/gpu_check.py --no-tests       # timings only
    python benchmarks/gpu_check.py --out results/   # also write gpu_check.json there

1. Runs ``tests/test_cudnn.py`` (on a GPU backend its kernel tests run instead of
   skipping) and reports the pytest summary.
2. Probes what the docs say is unsupported: ``jax.vmap`` over ``method="cudnn"`` (the
   kernel has no batching rule), and reports whether it raised.
3. Times ``"cudnn"`` against ``"sequential"`` (and ``"fused"``) for a 2-layer
   bidirectional LSTM and a 1-layer LSTM: compile time, forward, and forward+backward
   (gradient of a sum w.r.t. params), median of ``--repeats`` timed calls after one
   warm-up, at the default matmul precision (TF32 allowed) and at ``"highest"``. Also
   records the largest output difference from ``"sequential"``.

Exits non-zero if the tests fail or if the default backend is not a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxrnn

ROOT = Path(__file__).resolve().parents[1]
#: (time, batch, input_size, hidden_size, num_layers, bidirectional)
CONFIGS = [(100, 32, 64, 256, 2, True), (500, 64, 128, 512, 1, False)]
METHODS = ("sequential", "fused", "cudnn")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-tests", action="store_true", help="skip the pytest run")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu_check.json")
    return parser.parse_args()


def run_tests() -> dict:
    command = [sys.executable, "-m", "pytest", "tests/test_cudnn.py", "-q", "-rs", "-p",
               "no:cacheprovider"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = result.stdout.strip().splitlines()
    print("\n".join(lines[-15:]))
    return {"returncode": result.returncode, "summary": lines[-1] if lines else ""}


def probe_vmap() -> str:
    params = jaxrnn.init_params(jax.random.key(0), "lstm", 4, 8)
    xs = jnp.ones((3, 5, 4))  # vmapped over axis 0: (time=5, input_size=4) each
    try:
        run = jax.vmap(lambda x: jaxrnn.unroll(params, None, x, method="cudnn")[1])
        jax.block_until_ready(run(xs))
    except Exception as error:  # the probe reports whatever happens
        return f"raised {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return "ran"


def median_time(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_config(config: tuple, precision: str | None, repeats: int) -> list[dict]:
    num_steps, batch, input_size, hidden, num_layers, bidirectional = config
    kp, kx = jax.random.split(jax.random.key(0))
    params = jaxrnn.init_params(
        kp, "lstm", input_size, hidden, num_layers=num_layers, bidirectional=bidirectional
    )
    xs = jax.random.normal(kx, (num_steps, batch, input_size))
    lengths = jnp.full((batch,), num_steps).at[::2].set(num_steps // 2)
    rows, reference = [], None
    for method in METHODS:

        def forward(params, xs, method=method):
            return jaxrnn.unroll(params, None, xs, lengths=lengths, method=method)[1]

        def loss(params, xs, method=method):
            return jnp.sum(forward(params, xs, method) ** 2)

        fwd, train = jax.jit(forward), jax.jit(jax.grad(loss))
        with jax.default_matmul_precision(precision), warnings.catch_warnings():
            warnings.simplefilter("error", jaxrnn.cudnn.CuDNNFallbackWarning)
            start = time.perf_counter()
            ys = jax.block_until_ready(fwd(params, xs))
            compile_s = time.perf_counter() - start
            row = {
                "config": config,
                "precision": precision or "default",
                "method": method,
                "compile_s": compile_s,
                "forward_ms": 1e3 * median_time(fwd, params, xs, repeats=repeats),
                "train_ms": 1e3 * median_time(train, params, xs, repeats=repeats),
            }
        reference = ys if reference is None else reference
        row["max_abs_diff_vs_sequential"] = float(jnp.max(jnp.abs(ys - reference)))
        rows.append(row)
        print(
            f"{config} {row['precision']:>8} {method:>10}: compile {compile_s:6.2f} s, "
            f"forward {row['forward_ms']:8.2f} ms, fwd+bwd {row['train_ms']:8.2f} ms, "
            f"max |diff| {row['max_abs_diff_vs_sequential']:.2e}"
        )
    return rows


def main() -> int:
    args = parse_args()
    report: dict = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
    print(f"backend {report['backend']}: {report['devices']}")
    if jax.default_backend() != "gpu":
        print("not a GPU backend: nothing to check (the CPU tests run in the normal suite)")
        return 1
    if not args.no_tests:
        report["tests"] = run_tests()
    report["vmap"] = probe_vmap()
    print(f"vmap over method='cudnn': {report['vmap']}")
    report["timings"] = [
        row
        for precision in (None, "highest")
        for config in CONFIGS
        for row in time_config(config, precision, args.repeats)
    ]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return int(report.get("tests", {}).get("returncode", 0) != 0)


if __name__ == "__main__":
    sys.exit(main())
