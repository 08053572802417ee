"""Shared test fixtures: the registry of cells under test, padded batches, scoped float64.

A new cell (or a new option worth covering) gets every shared test by adding one line to
``CELLS``. Tests that want it take the ``cell`` fixture. Float64 is never switched on for the
whole session (most tests check float32 behaviour); tests that need it take ``x64``.

The tests' programs are compiled with JAX's ``jax_disable_most_optimizations`` (XLA's backend
optimization level 0), see ``FAST_COMPILE``; tests about the optimized program take
``optimized``.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import pytest


class CellSpec(NamedTuple):
    """One cell under test: the ``init_params`` cell name and its options."""

    name: str
    options: dict[str, Any]

    @property
    def id(self) -> str:
        return "-".join([self.name, *(f"{k}={v}" for k, v in self.options.items())])

    def init(self, key: jax.Array, input_size: int, hidden_size: int, **kwargs: Any) -> Any:
        """``jaxrnn.init_params`` for this cell; ``kwargs`` add to (override) its options."""
        import jaxrnn

        return jaxrnn.init_params(
            key,
            self.name,
            input_size,
            hidden_size,
            **{
                **self.options,
                **kwargs,
            },
        )


#: Every cell and option that the shared tests run on.
CELLS = [
    CellSpec("rnn", {"activation": "tanh"}),
    CellSpec("rnn", {"activation": "relu"}),
    CellSpec("rnn", {"activation": "tanh", "bias": False}),
    CellSpec("lstm", {}),
    CellSpec("lstm", {"proj_size": 3}),
    CellSpec("lstm", {"bias": False}),
    CellSpec("gru", {}),
    CellSpec("gru", {"reset_after": False}),
    CellSpec("gru", {"bias": False}),
]


#: Cells outside PyTorch's family. Their equations are checked against NumPy loops in
#: test_cell_variants.py and test_parallel.py; listed here, they also get every shared
#: invariant test (``any_cell`` and ``model``: gradients, reverse, lengths, jit).
OTHER_CELLS = [
    CellSpec("lstm_ln", {}),
    CellSpec("mgu", {}),
    CellSpec("mingru", {}),
    CellSpec("minlstm", {}),
    CellSpec("lru", {}),
    CellSpec("rglru", {}),
    CellSpec("conv1d", {"temporal_width": 3}),
    CellSpec("slstm", {}),  # one head: test_cells.py has hidden_size 5; heads: test_slstm.py
    CellSpec("mlstm", {}),  # one head: test_cells.py's hidden_size 5 has no other divisor
]

ALL_CELLS = CELLS + OTHER_CELLS

#: Composites that ``init_params`` builds, for tests that hold for any params.
COMPOSITES = [
    CellSpec("lstm", {"num_layers": 2}),
    CellSpec("gru", {"bidirectional": True}),
    CellSpec("lstm", {"num_layers": 2, "bidirectional": True, "proj_size": 2}),
]


@pytest.fixture(params=CELLS, ids=[spec.id for spec in CELLS])
def cell(request: pytest.FixtureRequest) -> CellSpec:
    """Each cell under test in turn (see ``CELLS``)."""
    return request.param


@pytest.fixture(params=ALL_CELLS, ids=[spec.id for spec in ALL_CELLS])
def any_cell(request: pytest.FixtureRequest) -> CellSpec:
    """Each cell of ``CELLS`` and ``OTHER_CELLS`` in turn."""
    return request.param


@pytest.fixture(params=ALL_CELLS + COMPOSITES, ids=[spec.id for spec in ALL_CELLS + COMPOSITES])
def model(request: pytest.FixtureRequest) -> CellSpec:
    """Each cell (``ALL_CELLS``), then each composite (``COMPOSITES``)."""
    return request.param


def random_carry(params: Any, batch_shape: tuple[int, ...], key: jax.Array) -> Any:
    """A carry of ``params``' structure with standard normal entries (a non-zero state).

    The sLSTM's normalizer ``n`` is positive in every state a run can reach, and
    ``h = o c / n`` is ill-conditioned where it crosses zero: it is drawn as
    ``exp(normal)``."""
    import jaxrnn

    leaves, treedef = jax.tree.flatten(jaxrnn.init_carry(params, batch_shape))
    keys = jax.random.split(key, len(leaves))
    carry = treedef.unflatten(
        [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)]
    )

    def positive_normalizer(c: Any) -> Any:
        return c._replace(n=jnp.exp(c.n)) if isinstance(c, jaxrnn.cells.SLSTMState) else c

    return jax.tree.map(
        positive_normalizer, carry, is_leaf=lambda c: isinstance(c, jaxrnn.cells.SLSTMState)
    )


def padded(
    key: jax.Array,
    num_steps: int,
    lengths: Any,
    input_size: int,
    *,
    fill: float = 0.0,
    dtype: Any = jnp.float32,
) -> jax.Array:
    """Random time-major inputs ``(num_steps, *lengths.shape, input_size)`` whose steps
    ``t >= lengths`` hold ``fill`` (use ``nan`` to prove padding is never read)."""
    lengths = jnp.asarray(lengths)
    xs = jax.random.normal(key, (num_steps, *lengths.shape, input_size), dtype)
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * (lengths.ndim + 1))
    return jnp.where(steps < lengths[..., None], xs, jnp.asarray(fill, dtype))


@pytest.fixture
def padded_batch():
    """The :func:`padded` helper, as a fixture."""
    return padded


@pytest.fixture
def random_state():
    """The :func:`random_carry` helper, as a fixture."""
    return random_carry


#: Most of the suite's time is XLA compiling small programs that then run for milliseconds,
#: so the tests' processes compile with ``jax_disable_most_optimizations``: XLA's backend
#: (LLVM) optimization level 0, which JAX provides for exactly this trade. The programs, and
#: every assertion on their values, are the same; only the generated machine code is slower.
#: Measured on the whole suite, same machine, one run after the other: 20:39 -> 15:34 (-25%).
#: ``JAXRNN_TEST_OPTIMIZED=1`` compiles everything at the default level instead. Processes
#: that the tests start (the kernels of the notebooks that train, multi-process and demo
#: runs) compile at the default level: they train for many steps, where optimized code pays
#: for itself; the other notebooks' kernels compile at level 0 too (test_notebooks.py).
FAST_COMPILE = os.environ.get("JAXRNN_TEST_OPTIMIZED") != "1"
jax.config.update("jax_disable_most_optimizations", FAST_COMPILE)

#: With ``FAST_COMPILE``, XLA:CPU also generates its fused loops with its classic LLVM IR
#: emitters instead of the newer MLIR "fusion emitters", which take about twice as long to
#: compile small programs: ``tests/test_unroll.py`` in one process spent 297 s in XLA's
#: backend compile with the new emitters and 102 s with the classic ones; the README test
#: command, same machine, back to back: 10:49 -> 7:38, 1243 -> 862 worker-seconds. The code
#: they generate runs forward loops 1.3-2.6x slower (docs/performance.md), so it is not what
#: users get by default (nor is level 0's), hence the same switch: the test about the
#: optimized program's bits compiles with the default emitters (``optimized``), and so do
#: the kernels of the notebooks that train. XLA reads ``XLA_FLAGS`` when its
#: backend starts, i.e. after this module and before the first computation, and aborts on a
#: flag it does not know, so the flag is set only for the jaxlib series it was measured on.
#: ``ORIGINAL_XLA_FLAGS``, without it: for the processes that the tests start at the default
#: level (an xdist worker inherits the flag from its controller, which ran this module too).
CLASSIC_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
ORIGINAL_XLA_FLAGS = " ".join(
    flag for flag in os.environ.get("XLA_FLAGS", "").split() if flag != CLASSIC_EMITTERS
)
#: The ``compiler_options`` of a ``jax.jit`` that compiles with the default emitters again.
DEFAULT_EMITTERS: dict[str, bool] = {}
if FAST_COMPILE and importlib.metadata.version("jaxlib").startswith("0.10."):
    os.environ["XLA_FLAGS"] = f"{ORIGINAL_XLA_FLAGS} {CLASSIC_EMITTERS}".strip()
    DEFAULT_EMITTERS = {"xla_cpu_use_fusion_emitters": True}


@pytest.fixture
def optimized():
    """XLA's default optimization for the duration of one test, for tests about the
    optimized program itself (e.g. equal bits of two differently written programs). The flag
    is read when a program is compiled, and compiled programs are cached without it: such a
    test must compile its own program (a ``jax.jit`` defined inside the test), and pass it the
    ``compiler_options`` this fixture gives (the default emitters: ``CLASSIC_EMITTERS``)."""
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield DEFAULT_EMITTERS
    finally:
        jax.config.update("jax_disable_most_optimizations", FAST_COMPILE)


@pytest.fixture
def x64():
    """Float64 for the duration of one test (e.g. ``jax.test_util.check_grads``)."""
    with jax.enable_x64(True):
        yield


#: The longest tests (each notebook runs for up to a minute and a half, the docs pages
#: for tens of seconds) are collected first, so that pytest-xdist starts them while the
#: short tests fill the other worker, rather than one worker running them alone at the end.
LONG_FIRST = ("tests/test_notebooks.py", "tests/test_docs.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        starts = [item.nodeid.startswith(prefix) for prefix in LONG_FIRST]
        return starts.index(True) if any(starts) else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the collection order within each group


#: Compiled programs shared through a disk cache by every process of one test run: the
#: xdist workers, the notebooks' kernels and the tests' subprocesses compile many of the same
#: small programs (the same op on the same shapes), and most of the suite's time is XLA
#: compiling. The cache holds exactly what XLA compiled, so results do not change. A cache
#: directory the user set (``JAX_COMPILATION_CACHE_DIR``) is used as it is and kept.
CACHE_SETTINGS = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def pytest_configure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" in os.environ:  # set up by the controller, inherited
        return
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        config._jaxrnn_cache_dir = tempfile.mkdtemp(prefix="jaxrnn-tests-compiled-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config._jaxrnn_cache_dir
    for name, value in CACHE_SETTINGS.items():
        os.environ.setdefault(name, value)
    # jax is imported already (above): set this process's config too, for runs without -n.
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    cache_dir = getattr(config, "_jaxrnn_cache_dir", None)
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)
