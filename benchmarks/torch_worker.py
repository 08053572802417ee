"""PyTorch ``nn.LSTM`` / ``nn.GRU`` timed in their own process (sharing a process with
JAX made ``nn.GRU`` stall at times). Driven by ``run.py`` over stdin/stdout, one JSON
request and one JSON answer per line, so its samples interleave with the JAX rounds.

Request: ``{"cell": "lstm", "shape": [T, B, D, H], "mode": "forward", "min_time": 0.015}``.
Answer: ``{"ms": per-call milliseconds}`` (the first request for a shape and mode also
reports ``"compile_s"``: the first call, which allocates and warms oneDNN).
"""

from __future__ import annotations

import json
import sys
import time

import torch

torch.set_num_threads(2)
_built: dict = {}


def _build(cell: str, shape: tuple[int, int, int, int]):
    T, B, D, H = shape
    torch.manual_seed(0)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H)
    xs = torch.randn(T, B, D, requires_grad=True)

    def forward():
        with torch.no_grad():
            module(xs)

    def train():
        module.zero_grad(set_to_none=True)
        xs.grad = None
        module(xs)[0].sum().backward()

    return {"forward": forward, "train": train}


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["cell"], tuple(request["shape"]))
        answer = {}
        if key not in _built:
            _built[key] = _build(*key)
        call = _built[key][request["mode"]]
        if (key, request["mode"]) not in _built:
            start = time.perf_counter()
            call()
            answer["compile_s"] = time.perf_counter() - start
            _built[(key, request["mode"])] = True
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < request["min_time"]:
            call()
            calls += 1
        answer["ms"] = (time.perf_counter() - start) / calls * 1e3
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
