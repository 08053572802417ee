"""Summarize runs of the peer benchmark (``../shared/bench/peers.py --json FILE``) against
the speed targets: jaxrnn's time over the fastest JAX peer's, and over the
``gemm-bound-fused`` proxy's, forward and forward+backward, per config.

Ratios are taken per round (the samples that ran side by side), then summarized as the
median (min-max) over rounds; "fastest JAX peer" is the fastest of Flax linen, Flax NNX,
Haiku and Equinox in that round.

    python benchmarks/peer_summary.py before.json after.json   # one column pair per run
"""

from __future__ import annotations

import argparse
import json
import statistics

PEERS = ("flax-linen/", "flax-nnx/", "haiku/", "equinox/")
MODES = (("fwd", "forward"), ("bwd", "forward+backward"))


def ratios(config: dict, mode: str) -> tuple[list[float], list[float]]:
    """Per-round ``jaxrnn / fastest peer`` and ``jaxrnn / gemm-bound-fused``."""
    impls = {i["name"]: i["samples_ms"][mode] for i in config["impls"] if not i["failed"]}
    ours = impls["jaxrnn"]
    peers = [s for name, s in impls.items() if name.startswith(PEERS)]
    proxy = impls["gemm-bound-fused"]
    to_peer = [t / min(p[r] for p in peers) for r, t in enumerate(ours)]
    to_proxy = [t / proxy[r] for r, t in enumerate(ours)]
    return to_peer, to_proxy


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="JSON files written by peers.py --json")
    args = parser.parse_args()
    runs = []
    for path in args.runs:
        with open(path) as f:
            runs.append(json.load(f))
    names = " | ".join(args.runs)
    for mode, title in MODES:
        print(f"\n#### {title}: jaxrnn / fastest JAX peer, jaxrnn / gemm-bound-fused ({names})\n")
        header = " | ".join(f"÷ peer ({i + 1}) | ÷ proxy ({i + 1})" for i in range(len(runs)))
        print(f"| cell (T, B, D, H) | {header} |")
        print("|---" * (1 + 2 * len(runs)) + "|")
        for k, config in enumerate(runs[0]["configs"]):
            key = f"{config['cell']} ({config['T']}, {config['B']}, {config['D']}, {config['H']})"
            row = []
            for run in runs:
                to_peer, to_proxy = ratios(run["configs"][k], mode)
                row += [cell(to_peer), cell(to_proxy)]
            print(f"| {key} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
