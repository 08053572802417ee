"""Training in 2 processes of 2 CPU devices each equals training on 1 device.

Two processes on this machine form one ``jax.distributed`` job (coordinator and gloo
collectives on 127.0.0.1 only) and run ``tests/multiprocess_worker.py``: a bidirectional
2-layer LSTM with ``lengths`` and ``examples/data_parallel.py``'s model, each with the
batch split over all 4 devices and each process feeding only its own rows, then a
tensor-parallel run whose ``"model"`` axis spans the two processes. A third process, with
1 device and no ``jax.distributed``, runs the same worker for the reference. The three
run at once; each writes its results to ``tmp_path``, has a deadline and is killed by its
PID if it outlives it.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np

WORKER = pathlib.Path(__file__).resolve().parent / "multiprocess_worker.py"
TIMEOUT_S = 240
#: Float32 rounding: the 4 devices sum the gradient in another order than the 1 device.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 (the OS picks it; a race is unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_workers(tmp: pathlib.Path) -> None:
    """The 2-process job and the 1-device reference, at once; results under ``tmp``."""
    port = free_port()
    job = [f"--port={port}", "--num-processes=2"]
    commands = {
        "reference": (1, [tmp / "reference"]),
        "process-0": (2, [tmp / "job", *job, "--process-id=0"]),
        "process-1": (2, [tmp / "job", *job, "--process-id=1"]),
    }
    running: dict[str, subprocess.Popen] = {}
    try:
        for name, (devices, args) in commands.items():
            args[0].mkdir(exist_ok=True)
            env = dict(
                os.environ,
                JAX_PLATFORMS="cpu",
                XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            )
            with open(tmp / f"{name}.log", "w") as log:  # a file: a full pipe would block
                running[name] = subprocess.Popen(
                    [sys.executable, str(WORKER), *map(str, args)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        deadline = time.monotonic() + TIMEOUT_S
        for name, process in running.items():
            returncode = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            log = (tmp / f"{name}.log").read_text()
            assert returncode == 0, f"{name} exited with {returncode}:\n{log[-3000:]}"
    finally:
        for process in running.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def load(path: pathlib.Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return dict(arrays)


def assert_same_training(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    """Equal losses at every step and equal final params, to float32 rounding."""
    np.testing.assert_allclose(got["losses"], want["losses"], **TOLERANCE)
    params = sorted(name for name in want if name.startswith("param"))
    assert params == sorted(name for name in got if name.startswith("param"))
    for name in params:
        np.testing.assert_allclose(got[name], want[name], **TOLERANCE, err_msg=name)


# One test, so that the processes start once: pytest-xdist could send separate tests
# (and their module-scoped fixtures) to two workers.
def test_two_processes_train_like_one_device(tmp_path):
    run_workers(tmp_path)
    reference = {
        name: load(tmp_path / "reference" / f"{name}-0.npz")
        for name in ("bidirectional", "example")
    }
    for process in (0, 1):
        job = {
            name: load(tmp_path / "job" / f"{name}-{process}.npz")
            for name in ("bidirectional", "example", "tensor_parallel")
        }
        assert_same_training(job["bidirectional"], reference["bidirectional"])
        assert_same_training(job["example"], reference["example"])
        # The same training as "bidirectional", with the gates split.
        assert_same_training(job["tensor_parallel"], reference["bidirectional"])

        # Adam's scalar step count lives on all 4 devices, not on one device per process.
        example, tensor_parallel = job["example"], job["tensor_parallel"]
        assert (example["devices"], example["replicated"]) == (4, True)
        assert (tensor_parallel["count_devices"], tensor_parallel["count_replicated"]) == (
            4,
            True,
        )
        # w_h is (hidden=4, 4 gates * 4): process p holds columns 8p to 8p + 8, and the
        # optimizer's moments are split the same way.
        assert list(tensor_parallel["w_h_shard"]) == [4, 8]
        assert list(tensor_parallel["w_h_local_columns"]) == [8 * process]
        assert str(tensor_parallel["mu_w_h_spec"]) == str(tensor_parallel["w_h_spec"])
        assert str(tensor_parallel["w_h_spec"]) == "P(None, 'model')"

    # The example's main, as its command line runs it: only process 0 prints.
    printed = (tmp_path / "job" / "main-0.txt").read_text()
    assert "4 devices (cpu) in 2 process(es), global batch 8" in printed
    assert "test accuracy" in printed
    assert (tmp_path / "job" / "main-1.txt").read_text() == ""
