"""Where jaxrnn's time over the ``gemm-bound-fused`` proxy goes: the cells' gate math
measured apart from the GEMMs, and the loop structures tried against jaxrnn's own.

The proxy (``../shared/bench/peers.py``, row ``gemm-bound-fused``) runs a cell's GEMMs with
one ``tanh`` per unit in place of the gates: ``XP = xs W_x`` before the loop, ``z = XP_t +
h W_h`` and ``h = tanh(sum of the G gate blocks of z)`` in it, and a hand-scheduled
backward. It is rebuilt here, and timed interleaved with:

- ``jaxrnn``: ``unroll``'s default; forward+backward is ``jax.grad`` of ``sum(ys)`` with
  respect to params and ``xs``, as in the proxy.
- the pointwise work alone, without any GEMM: a loop whose step reads ``P_t`` (prefetched
  into the carry, so the slice is a plain copy) and runs the proxy's ``tanh`` of a sum, or
  the cell's gate math (LSTM ``i, f, g, o``; GRU ``r, z, n``), with ``h`` tiled over the
  gates standing in for ``h W_h``; their forward+backward is ``jax.grad`` of the sum. The
  difference is what the gates cost over the proxy's one ``tanh``, with no GEMM beside them.
- for the LSTM, three other loop structures, each checked against jaxrnn: the cell's math
  in the proxy's structure (projection hoisted, ``h W_h`` in the loop, a hand-scheduled
  backward that stores the gates and ``c`` and forms the weight gradients after the loop);
  the same forward with ``P_{t+1}`` prefetched into the carry; and Haiku's form, one GEMM
  ``[x_t, h] [W_x; W_h]`` per step, differentiated by ``jax.grad``.

Every ratio is taken per round against the proxy of the same round, then summarized as
median (min-max) over rounds (``../shared/BENCHMARKING.md``). Results in
``docs/performance.md``.

    python benchmarks/gate_math_bound.py --out benchmarks/results/gate-math.md
    python benchmarks/gate_math_bound.py --cells lstm --configs 600x8x32x32 --rounds 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

CONFIGS = "600x8x32x32,100x32x64x128,1000x16x32x64,300x8x128x256,200x64x128x256,50x128x256x512"
TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736:glibc.malloc.hugetlb=1"
GATES = {"lstm": 4, "gru": 3}


def proxy_rows(T: int, B: int, D: int, H: int, G: int, key: jax.Array):
    """The ``gemm-bound-fused`` proxy: forward, and forward+backward scheduled by hand."""
    kx, kh = jax.random.split(key)
    params = {
        "w_x": jax.random.normal(kx, (D, G * H)) / D**0.5,
        "w_h": jax.random.normal(kh, (H, G * H)) / H**0.5,
    }
    h0 = jnp.zeros((B, H))

    def forward(p, xs):
        xp = (xs.reshape(T * B, D) @ p["w_x"]).reshape(T, B, G * H)

        def step(h, xp_t):
            h = jnp.tanh((xp_t + h @ p["w_h"]).reshape(B, G, H).sum(1))
            return h, h

        return jax.lax.scan(step, h0, xp)[1]

    def forward_backward(p, xs):
        hs = forward(p, xs)

        def step(dh, h_t):
            dsum = (1.0 + dh) * (1.0 - h_t * h_t)
            dz = jnp.broadcast_to(dsum[:, None, :], (B, G, H)).reshape(B, G * H)
            return dz @ p["w_h"].T, dz

        dz = jax.lax.scan(step, h0, hs, reverse=True)[1].reshape(T * B, G * H)
        h_prev = jnp.concatenate([h0[None], hs[:-1]]).reshape(T * B, H)
        grads = {"w_x": xs.reshape(T * B, D).T @ dz, "w_h": h_prev.T @ dz}
        return grads, (dz @ p["w_x"].T).reshape(T, B, D)

    return params, forward, forward_backward


def pointwise_loop(T: int, B: int, H: int, G: int, update: Callable, num_states: int):
    """A loop with a cell's pointwise work and no GEMM: ``z = P_t + tile(h)``, then ``update``."""

    def run(xp):
        def step(carry, _):
            t, p_t, *state = carry
            state, y = update(p_t + jnp.tile(state[0], G), state)
            p_next = jax.lax.dynamic_index_in_dim(xp, jnp.minimum(t + 1, T - 1), keepdims=False)
            return (t + 1, p_next, *state), y

        zeros = [jnp.zeros((B, H))] * num_states
        return jax.lax.scan(step, (0, xp[0], *zeros), None, length=T)[1]

    return run


def proxy_update(z, state):
    h = jnp.tanh(z.reshape(z.shape[0], -1, state[0].shape[-1]).sum(1))
    return [h], h


def lstm_update(z, state):
    h, c = state
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return [h, c], h


def gru_update(z, state):
    # z stands for both P_t and A_t = h W_h here: the reset gate scales the n block of z.
    (h,) = state
    r, u, a_n = jnp.split(z, 3, axis=-1)
    r, u = jax.nn.sigmoid(r), jax.nn.sigmoid(u)
    n = jnp.tanh(a_n + r * a_n)
    h = n + u * (h - n)
    return [h], h


def lstm_structures(T: int, B: int, D: int, H: int, params):
    """The LSTM's math in other loop structures: ``{name: (forward, forward_backward)}``."""
    zeros = jnp.zeros((B, H))

    def gates(z):
        i, f, g, o = jnp.split(z, 4, axis=-1)
        return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)

    def project(p, xs):
        return (xs.reshape(T * B, D) @ p.w_x + p.b_x).reshape(T, B, 4 * H)

    def hoisted_with_residuals(p, xs):
        def step(carry, xp_t):
            h, c = carry
            i, f, g, o = gates(xp_t + (h @ p.w_h + p.b_h))
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), (h, c, jnp.concatenate([i, f, g, o], -1))

        return jax.lax.scan(step, (zeros, zeros), project(p, xs))[1]

    def hoisted(p, xs):
        return hoisted_with_residuals(p, xs)[0]

    def hoisted_backward(p, xs):
        hs, cs, acts = hoisted_with_residuals(p, xs)
        c_prev = jnp.concatenate([zeros[None], cs[:-1]])

        def step(carry, inputs):
            dh, dc = carry
            c, c_before, act = inputs
            i, f, g, o = jnp.split(act, 4, axis=-1)
            dh = dh + 1.0
            tanh_c = jnp.tanh(c)
            dc = dc + dh * o * (1 - tanh_c * tanh_c)
            dz = jnp.concatenate(
                [
                    dc * g * i * (1 - i),
                    dc * c_before * f * (1 - f),
                    dc * i * (1 - g * g),
                    dh * tanh_c * o * (1 - o),
                ],
                -1,
            )
            return (dz @ p.w_h.T, dc * f), dz

        dz = jax.lax.scan(step, (zeros, zeros), (cs, c_prev, acts), reverse=True)[1]
        dz = dz.reshape(T * B, 4 * H)
        h_prev = jnp.concatenate([zeros[None], hs[:-1]]).reshape(T * B, H)
        db = dz.sum(0)
        grads = dataclasses.replace(
            p, w_x=xs.reshape(T * B, D).T @ dz, w_h=h_prev.T @ dz, b_x=db, b_h=db
        )
        return grads, (dz @ p.w_x.T).reshape(T, B, D)

    def prefetched(p, xs):
        xp = project(p, xs)

        def step(carry, _):
            t, xp_t, h, c = carry
            i, f, g, o = gates(xp_t + (h @ p.w_h + p.b_h))
            c = f * c + i * g
            h = o * jnp.tanh(c)
            xp_next = jax.lax.dynamic_index_in_dim(xp, jnp.minimum(t + 1, T - 1), keepdims=False)
            return (t + 1, xp_next, h, c), h

        return jax.lax.scan(step, (0, xp[0], zeros, zeros), None, length=T)[1]

    def one_gemm(p, xs):
        w, b = jnp.concatenate([p.w_x, p.w_h]), p.b_x + p.b_h

        def step(carry, x_t):
            h, c = carry
            i, f, g, o = gates(jnp.concatenate([x_t, h], -1) @ w + b)
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), h

        return jax.lax.scan(step, (zeros, zeros), xs)[1]

    return {
        "lstm, proxy's structure (hoisted, hand backward)": (hoisted, hoisted_backward),
        "lstm, hoisted + P_{t+1} prefetched": (prefetched, None),
        "lstm, one GEMM per step (Haiku's form)": (one_gemm, grad_of_sum(one_gemm)),
    }


def grad_of_sum(forward):
    return lambda p, xs: jax.grad(lambda p, xs: forward(p, xs).sum(), argnums=(0, 1))(p, xs)


def check_equal(name: str, got, want, mode: str) -> None:
    """Refuse a structure that does not compute jaxrnn's function."""
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    for g, w in zip(got, want, strict=True):
        scale = float(jnp.abs(w).max()) + 1.0
        if not np.allclose(np.asarray(g), np.asarray(w), atol=2e-4 * scale, rtol=2e-4):
            sys.exit(f"{name} ({mode}) differs from jaxrnn by {float(jnp.abs(g - w).max())}")


def sample(fn, args, min_seconds: float) -> float:
    """Seconds per call: back-to-back calls for at least ``min_seconds``."""
    calls, start = 0, time.perf_counter()
    while True:
        jax.block_until_ready(fn(*args))
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def rows_for(cell: str, T: int, B: int, D: int, H: int):
    """``[(name, mode, jitted fn, args)]`` for one cell and config; the proxy first."""
    G = GATES[cell]
    kx, kp, kg = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(kx, (T, B, D))
    params = jaxrnn.init_params(kp, cell, D, H)
    proxy_params, proxy_fwd, proxy_fb = proxy_rows(T, B, D, H, G, kg)

    def ours(p, xs):
        return jaxrnn.unroll(p, None, xs)[1]

    rows = [
        ("proxy (gemm-bound-fused)", "fwd", proxy_fwd, (proxy_params, xs)),
        ("proxy (gemm-bound-fused)", "f+b", proxy_fb, (proxy_params, xs)),
        ("jaxrnn", "fwd", ours, (params, xs)),
        ("jaxrnn", "f+b", grad_of_sum(ours), (params, xs)),
    ]
    xp = jax.random.normal(kg, (T, B, G * H))
    update = {"lstm": (lstm_update, 2), "gru": (gru_update, 1)}[cell]
    loops = {
        "pointwise only: proxy's tanh of a sum": pointwise_loop(T, B, H, G, proxy_update, 1),
        f"pointwise only: the {cell}'s gates": pointwise_loop(T, B, H, G, *update),
    }
    for name, loop in loops.items():
        rows.append((name, "fwd", loop, (xp,)))
        rows.append((name, "f+b", jax.grad(lambda xp, loop=loop: loop(xp).sum()), (xp,)))
    if cell == "lstm":
        for name, (fwd, fb) in lstm_structures(T, B, D, H, params).items():
            rows.append((name, "fwd", fwd, (params, xs)))
            if fb is not None:
                rows.append((name, "f+b", fb, (params, xs)))
    rows = [(name, mode, jax.jit(fn), args) for name, mode, fn, args in rows]
    reference = {mode: fn(*args) for name, mode, fn, args in rows if name == "jaxrnn"}
    for name, mode, fn, args in rows:
        if name.startswith("lstm,"):
            check_equal(name, fn(*args), reference[mode], mode)
    return rows


def interleaved(rows, rounds: int, min_seconds: float) -> list[list[float]]:
    """Seconds per call of each ``(name, mode, fn, args)`` row, one sample per round;
    the rows take turns within a round, in an order rotated from round to round."""
    for _, _, fn, args in rows:
        jax.block_until_ready(fn(*args))  # compile and warm up
    times: list[list[float]] = [[] for _ in rows]
    order = list(range(len(rows)))
    for _ in range(rounds):
        order = order[1:] + order[:1]  # rotate, so that no row always runs first
        for k in order:
            times[k].append(sample(rows[k][2], rows[k][3], min_seconds))
    return times


def run_config(cell: str, config: str, rounds: int, min_seconds: float) -> list[str]:
    T, B, D, H = (int(v) for v in config.split("x"))
    rows = rows_for(cell, T, B, D, H)
    times = interleaved(rows, rounds, min_seconds)
    proxy = {
        mode: times[k] for k, (name, mode, _, _) in enumerate(rows) if name.startswith("proxy")
    }
    lines = []
    for k, (name, mode, _, _) in enumerate(rows):
        ratio = [t / p for t, p in zip(times[k], proxy[mode], strict=True)]
        ms = [1e3 * t for t in times[k]]
        lines.append(
            f"| {cell} ({T}, {B}, {D}, {H}) | {name} | {mode} | {statistics.median(ms):.3g} "
            f"({min(ms):.3g}–{max(ms):.3g}) | {statistics.median(ratio):.2f} "
            f"({min(ratio):.2f}–{max(ratio):.2f}) |"
        )
    return lines


def command_line(
    doc: str, title: str, note: str, columns: list[str], run_config, *, configs: str, rounds: int
):
    """The command line of the interleaved benchmarks in this folder: ``--cells``,
    ``--configs``, ``--rounds``, ``--min-sample-ms``, ``--out``, ``--no-tunables``. Re-runs
    itself with the tuned allocator, then prints a markdown table, one config at a time
    (``run_config(cell, config, rounds, min_seconds) -> rows``), and writes it to ``--out``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--configs", default=configs, help="comma-separated TxBxDxH")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--min-sample-ms", type=float, default=30.0)
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--no-tunables", action="store_true", help="keep glibc's malloc defaults")
    args = parser.parse_args()
    if not args.no_tunables and os.environ.get("GLIBC_TUNABLES") != TUNABLES:
        os.execve(
            sys.executable, [sys.executable, *sys.argv], dict(os.environ, GLIBC_TUNABLES=TUNABLES)
        )
    load = os.getloadavg()
    header = [
        f"# {title} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`python benchmarks/{os.path.basename(sys.argv[0])} --cells {args.cells} "
        f"--configs {args.configs} --rounds {args.rounds}`; jax {jax.__version__}, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average at start {load[0]:.1f}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}.",
        note,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    for cell in args.cells.split(","):
        for config in args.configs.split(","):
            new = run_config(cell, config, args.rounds, args.min_sample_ms / 1e3)
            print("\n".join(new), flush=True)
            lines += new
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


def main() -> None:
    command_line(
        __doc__,
        "Gate math against the gemm-bound-fused proxy",
        "Times in ms, median (min–max) over rounds; ratios per round to the proxy of the same "
        "round and mode. The pointwise-only loops' f+b is jax.grad of their sum.",
        ["cell (T, B, D, H)", "row", "mode", "ms", "÷ proxy"],
        run_config,
        configs=CONFIGS,
        rounds=9,
    )


if __name__ == "__main__":
    main()
