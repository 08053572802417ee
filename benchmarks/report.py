"""Markdown tables and a plot from the JSON that ``run.py`` writes.

``python benchmarks/report.py results/<date>.json`` re-renders a saved run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

TARGETS = {  # (mode, against) -> largest acceptable ratio, from the speed issue
    ("train", "jax"): 0.7,
    ("forward", "jax"): 0.8,
    ("train", "torch-lstm"): 1.0,
    ("forward", "torch-lstm"): 1.0,
    ("train", "torch-gru"): 0.6,
}
GATES = {"lstm": 4, "gru": 3}


def _flops(cell, shape, mode):
    T, B, D, H = shape
    forward = 2.0 * T * B * (D + H) * GATES[cell] * H
    return forward if mode == "forward" else 3.0 * forward


def _groups(result):
    """``(cell, shape) -> {"samples": {(name, mode): [ms]}, "compile": {...}, "rate": [...]}``."""
    groups: dict = {}
    for record in result["records"]:
        key = (record["cell"], tuple(record["shape"]))
        group = groups.setdefault(key, {"samples": {}, "compile": {}, "rate": []})
        if record["name"] == "gemm_rate":
            group["rate"] = record["flops_per_s"]
        else:
            group["samples"][(record["name"], record["mode"])] = np.array(record["ms"])
            group["compile"][(record["name"], record["mode"])] = record["compile_s"]
    return groups


def _span(values) -> str:
    return f"{np.median(values):.3g} ({np.min(values):.3g}–{np.max(values):.3g})"


def _ratio(ours, theirs) -> str:
    """Per-round ratios (samples of one round ran side by side): median (min–max)."""
    return _span(np.asarray(ours) / np.asarray(theirs))


def _check(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return " ✓" if value <= target else f" ✗ (target ≤{target})"


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"# jaxrnn benchmark, {result['started']} UTC",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores; load average at start "
        f"{', '.join(f'{x:.1f}' for x in machine['load_average_at_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])} (1, 5, 15 min).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}; "
        f"Python {machine['python']}.",
        f"- `GLIBC_TUNABLES={machine['glibc_tunables']}` (benchmark process only).",
        f"- {result['args']['rounds']} interleaved rounds, samples of ≥"
        f"{result['args']['min_time'] * 1e3:.0f} ms; float32; times in ms as median "
        "(min–max) over rounds; ratios are per round, then median (min–max).",
        "",
    ]
    groups = _groups(result)
    for cell in dict.fromkeys(c for c, _ in groups):
        for mode, title in (
            ("forward", "forward (all hidden states)"),
            ("train", "forward+backward"),
        ):
            keys = [k for k in groups if k[0] == cell]
            names = list(
                dict.fromkeys(n for k in keys for n, m in groups[k]["samples"] if m == mode)
            )
            lines += [f"## {cell.upper()} {title}", ""]
            lines += ["| (T, B, D, H) | " + " | ".join(names) + " |"]
            lines += ["|---" * (len(names) + 1) + "|"]
            for key in keys:
                samples = groups[key]["samples"]
                cells = [_span(samples[(n, mode)]) if (n, mode) in samples else "" for n in names]
                lines.append(f"| {key[1]} | " + " | ".join(cells) + " |")
            lines += ["", _ratio_table(groups, keys, cell, mode), ""]
    lines += _compile_table(groups)
    lines += _memory_table(result.get("memory", []))
    return "\n".join(lines) + "\n"


def _ratio_table(groups, keys, cell, mode) -> str:
    torch_name = {"lstm": "pytorch nn.LSTM", "gru": "pytorch nn.GRU"}[cell]
    header = (
        "| (T, B, D, H) | jaxrnn / fastest JAX peer | jaxrnn / "
        f"{torch_name} | jaxrnn / each peer | GEMM limit / jaxrnn (GFLOP/s of 1024³ matmul) |"
    )
    rows = [header, "|---|---|---|---|---|"]
    for key in keys:
        samples = groups[key]["samples"]
        ours = samples.get(("jaxrnn", mode))
        if ours is None:
            continue
        peers = [
            v
            for (n, m), v in samples.items()
            if m == mode and not n.startswith(("jaxrnn", "pytorch"))
        ]
        fastest = np.min(np.stack(peers), axis=0) if peers else None
        jax_ratio = "" if fastest is None else _ratio(ours, fastest)
        if fastest is not None:
            jax_ratio += _check(np.median(ours / fastest), TARGETS.get((mode, "jax")))
        torch_samples = samples.get((torch_name, mode))
        torch_ratio = ""
        if torch_samples is not None:
            torch_ratio = _ratio(ours, torch_samples)
            torch_ratio += _check(
                np.median(ours / torch_samples), TARGETS.get((mode, f"torch-{cell}"))
            )
        each = ", ".join(
            f"{n}: {np.median(ours / v):.2f}"
            for (n, m), v in samples.items()
            if m == mode and n != "jaxrnn"
        )
        rate = np.array(groups[key]["rate"])
        limit_ms = _flops(cell, key[1], mode) / rate * 1e3
        fraction = f"{np.median(limit_ms / ours):.2f} ({np.median(rate) / 1e9:.0f})"
        rows.append(f"| {key[1]} | {jax_ratio} | {torch_ratio} | {each} | {fraction} |")
    return "\n".join(rows)


def _compile_table(groups) -> list[str]:
    keys = list(groups)
    names = list(dict.fromkeys(n for k in keys for n, _ in groups[k]["compile"]))
    lines = ["## Compile time (first call, seconds): forward / forward+backward", ""]
    lines.append("| implementation | " + " | ".join(f"{c} {s}" for c, s in keys) + " |")
    lines.append("|---" * (len(keys) + 1) + "|")
    for name in names:
        cells = []
        for key in keys:
            compiled = groups[key]["compile"]
            f, t = compiled.get((name, "forward")), compiled.get((name, "train"))
            cells.append("" if f is None else f"{f:.2f} / {t:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _memory_table(rows) -> list[str]:
    if not rows:
        return []
    steps = rows[0]["steps"]
    lines = [
        "## Peak memory of an LSTM training step (B=8, D=32, H=128)",
        "",
        f"Peak resident set of a fresh process at T={steps[0]} and T={steps[1]}; the slope "
        "is per 1,000 steps. Step time at the larger T.",
        "",
        "| implementation | MiB per 1k steps | peak MiB at each T | step time (s) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        peaks = " / ".join(
            f"{p['peak_mib']:.0f}" if "peak_mib" in p else f"error: {p['error']}"
            for p in row["points"]
        )
        slope = row.get("mib_per_1k_steps")
        slope_text = "" if slope is None else f"{slope:.1f}"
        step = row.get("step_s")
        step_text = "" if step is None else f"{step:.2f}"
        lines.append(f"| {row['name']} | {slope_text} | {peaks} | {step_text} |")
    return [*lines, ""]


def plot(result: dict, path: Path) -> None:
    """Per config: each implementation's median time relative to jaxrnn (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _groups(result)
    modes = ("forward", "train")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=True):
        labels, names = [], []
        for key in groups:
            labels.append(f"{key[0]}\n{key[1]}")
            names += [n for n, m in groups[key]["samples"] if m == mode and n not in names]
        width = 0.8 / max(len(names), 1)
        for i, name in enumerate(names):
            values = []
            for key in groups:
                samples = groups[key]["samples"]
                ours = samples.get(("jaxrnn", mode))
                theirs = samples.get((name, mode))
                ok = ours is not None and theirs is not None
                values.append(np.median(theirs) / np.median(ours) if ok else np.nan)
            positions = np.arange(len(labels)) + (i - len(names) / 2 + 0.5) * width
            ax.bar(positions, values, width, label=name)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(labels)), labels, fontsize=7)
        ax.set_ylabel("time / jaxrnn's time (higher = jaxrnn faster)")
        ax.set_title({"forward": "forward", "train": "forward+backward"}[mode])
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"jaxrnn vs peers, {result['started']} UTC, {result['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    data = json.loads(source.read_text())
    print(markdown(data))
    plot(data, source.with_suffix(".png"))
