"""Benchmark jaxrnn against Flax (linen, NNX), Haiku, Equinox and PyTorch on CPU.

    python benchmarks/run.py                 # everything: ~15-30 min on 2 cores
    python benchmarks/run.py --quick         # 3 rounds, short memory runs
    python benchmarks/run.py --cells lstm --configs 0,2 --rounds 9 --no-memory

Protocol (see docs/performance.md): every implementation is compiled first (its first
call, reported as compile time), then timed in interleaved rounds whose order rotates
each round, one sample per implementation per round (a sample repeats calls for at least
``--min-time`` seconds). PyTorch runs in its own process (``torch_worker.py``) but is
driven from here, so its samples interleave with the others. Each round also times one
1024^3 matmul in JAX: the machine's large-GEMM FLOP rate, in the same conditions. Peak
memory comes from fresh processes (``memory_worker.py``) at two sequence lengths.

The process re-executes itself with ``GLIBC_TUNABLES`` set (glibc's malloc keeps freed
memory instead of returning it to the kernel, which on these VMs changes XLA:CPU timings
by up to 2.4x for every library alike) unless ``--no-tunables``; the results record which.
Nothing in jaxrnn sets it.

Writes ``benchmarks/results/<date>.md`` (and ``latest.md``), the raw ``.json`` and a plot.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.hugetlb=1"
CONFIGS = [(100, 32, 64, 128), (200, 64, 128, 256), (1000, 16, 32, 64), (50, 128, 256, 512)]
MODES = ("forward", "train")
MODE_TITLES = {"forward": "forward (all hidden states)", "train": "forward+backward"}
GATES = {"lstm": 4, "gru": 3}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm,gru")
    parser.add_argument("--configs", default="0,1,2,3", help=f"indices into {CONFIGS}")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.015, help="seconds per sample")
    parser.add_argument("--quick", action="store_true", help="3 rounds, short memory runs")
    parser.add_argument("--only", default="", help="comma-separated implementation names")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-steps", default="4000,16000", help="two sequence lengths")
    parser.add_argument("--no-tunables", action="store_true", help="keep glibc's defaults")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 3)
        args.memory_steps = "2000,8000"
    return args


def gemm_flops(cell: str, shape: tuple[int, int, int, int], mode: str) -> float:
    """The config's matmul FLOPs: ``x W_x`` and ``h W_h`` each step; backward twice that."""
    T, B, D, H = shape
    forward = 2.0 * T * B * (D + H) * GATES[cell] * H
    return forward if mode == "forward" else 3.0 * forward


def time_call(call, args, min_time: float) -> float:
    """Milliseconds per call, over back-to-back calls lasting at least ``min_time``."""
    import jax

    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        jax.block_until_ready(call(*args))
        calls += 1
    return (time.perf_counter() - start) / calls * 1e3


class TorchWorker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "torch_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def sample(self, cell: str, shape, mode: str, min_time: float) -> dict:
        request = {"cell": cell, "shape": list(shape), "mode": mode, "min_time": min_time}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def measure_speed(args, names: list[str]) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from implementations import JAX_IMPLEMENTATIONS, LSTM_ONLY

    torch_name = {"lstm": "pytorch nn.LSTM", "gru": "pytorch nn.GRU"}
    torch = None if args.no_torch else TorchWorker()
    big = jax.random.normal(jax.random.key(0), (1024, 1024), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(big))
    records = []
    for cell in args.cells.split(","):
        for index in map(int, args.configs.split(",")):
            shape = CONFIGS[index]
            built, compile_s = {}, {}
            for name in names:
                if cell == "gru" and name in LSTM_ONLY:
                    continue
                forward, train, call_args = JAX_IMPLEMENTATIONS[name](cell, *shape)
                for mode, call in (("forward", forward), ("train", train)):
                    start = time.perf_counter()
                    jax.block_until_ready(call(*call_args))
                    compile_s[(name, mode)] = time.perf_counter() - start
                    built[(name, mode)] = (call, call_args)
            entries = list(built) + (
                [] if torch is None else [(torch_name[cell], m) for m in MODES]
            )
            samples = {entry: [] for entry in entries}
            gemm_rates = []
            for round_index in range(args.rounds):
                shift = round_index % len(entries)
                for entry in entries[shift:] + entries[:shift]:
                    name, mode = entry
                    if name.startswith("pytorch"):
                        answer = torch.sample(cell, shape, mode, args.min_time)
                        if "compile_s" in answer:
                            compile_s[entry] = answer["compile_s"]
                        samples[entry].append(answer["ms"])
                    else:
                        samples[entry].append(time_call(*built[entry], args.min_time))
                    time.sleep(0.005)
                rate = 2 * 1024**3 / (time_call(matmul, (big,), args.min_time) / 1e3)
                gemm_rates.append(rate)
            for (name, mode), values in samples.items():
                records.append(
                    {
                        "cell": cell,
                        "shape": shape,
                        "name": name,
                        "mode": mode,
                        "ms": values,
                        "compile_s": compile_s.get((name, mode)),
                    }
                )
            records.append(
                {"cell": cell, "shape": shape, "name": "gemm_rate", "flops_per_s": gemm_rates}
            )
            print(f"{cell} {shape}: done", file=sys.stderr, flush=True)
            del built
            jax.clear_caches()
    if torch is not None:
        torch.close()
    del np
    return {"records": records}


def measure_memory(args) -> list[dict]:
    from implementations import MEMORY_IMPLEMENTATIONS

    lengths = [int(n) for n in args.memory_steps.split(",")]
    rows = []
    for name in MEMORY_IMPLEMENTATIONS:
        points = []
        for num_steps in lengths:
            result = subprocess.run(
                [sys.executable, str(HERE / "memory_worker.py"), name, str(num_steps)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                points.append({"error": result.stderr.strip().splitlines()[-1:]})
                continue
            points.append(json.loads(result.stdout.strip().splitlines()[-1]))
        row = {"name": name, "steps": lengths, "points": points}
        if all("peak_mib" in p for p in points):
            (t0, t1), (p0, p1) = lengths, points
            row["mib_per_1k_steps"] = (p1["peak_mib"] - p0["peak_mib"]) / (t1 - t0) * 1000
            row["step_s"] = p1["step_s"]
        rows.append(row)
        print(f"memory {name}: {row.get('mib_per_1k_steps')}", file=sys.stderr, flush=True)
    return rows


def machine_description() -> dict:
    import jax
    import jaxlib

    load = os.getloadavg()
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__}
    for module in ("flax", "haiku", "equinox", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "python": platform.python_version(),
        "versions": versions,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "(unset: glibc defaults)"),
    }


def main() -> None:
    args = parse_args()
    if not args.no_tunables and os.environ.get("GLIBC_TUNABLES") != TUNABLES:
        env = dict(os.environ, GLIBC_TUNABLES=TUNABLES)
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)
    from implementations import JAX_IMPLEMENTATIONS

    names = [n for n in JAX_IMPLEMENTATIONS if not args.only or n in args.only.split(",")]
    started = datetime.datetime.now(datetime.UTC)
    result = {"started": started.isoformat(timespec="seconds"), "machine": machine_description()}
    result["args"] = vars(args)
    result.update(measure_speed(args, names))
    result["load_average_at_end"] = os.getloadavg()
    result["memory"] = [] if args.no_memory else measure_memory(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y-%m-%dT%H%M")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    from report import markdown, plot

    text = markdown(result)
    for path in (out / f"{stem}.md", out / "latest.md"):
        path.write_text(text)
    plot(result, out / "latest.png")
    print(text)


if __name__ == "__main__":
    main()
