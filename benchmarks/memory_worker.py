"""Peak resident memory of one LSTM training step, in a fresh process.

``python benchmarks/memory_worker.py NAME T`` prints one JSON line: the process's peak
resident set (``VmHWM``; not ``ru_maxrss``, which survives ``exec`` and so would report
the parent's peak) after compiling and running the step twice, and the time of the
second run. ``run.py`` calls it at two ``T`` and reports the slope per 1k steps,
which cancels what every process holds (the runtime, the compiled program).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax
from implementations import MEMORY_IMPLEMENTATIONS

BATCH, INPUT_SIZE, HIDDEN_SIZE = 8, 32, 128


def main() -> None:
    name, num_steps = sys.argv[1], int(sys.argv[2])
    _, train, args = MEMORY_IMPLEMENTATIONS[name]("lstm", num_steps, BATCH, INPUT_SIZE, HIDDEN_SIZE)
    jax.block_until_ready(train(*args))
    start = time.perf_counter()
    jax.block_until_ready(train(*args))
    seconds = time.perf_counter() - start
    status = Path("/proc/self/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    peak_mib = peak_kib / 1024
    print(json.dumps({"peak_mib": peak_mib, "step_s": seconds}))


if __name__ == "__main__":
    main()
