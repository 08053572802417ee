"""Execute every notebook in notebooks/, on small budgets, and fail if any cell raises.

The notebooks end with loose ``assert``s on their results, so a notebook that runs but
no longer teaches what it says (a model that stops learning, two computations that stop
agreeing) fails here too. Deselect with ``pytest -m "not notebooks"``.

The kernels run with ``JAXRNN_NOTEBOOK_QUICK=1``, which the notebooks with long runs read:
they train for fewer epochs, on fewer sequence lengths, time fewer sizes. Every cell still
runs, and the final asserts hold on those budgets too. The full-size runs, whose outputs
the docs site shows, are executed (and their asserts checked) by the docs build
(``docs/_hooks/notebooks.py``), once per CI run.

There is no time budget: a busy machine is slower, not wrong. ``HANG_GUARD_S`` only turns a
hung kernel into a failure.

The kernels of notebooks that do not train (no ``optax`` in their code) compile with XLA's
backend optimization level 0, as the test processes do (``tests/conftest.py``): they compile
many programs and run each briefly, and took about a third less time so (05: 73 -> 48 s,
04: 22 -> 15 s; 01 the same). The notebooks that train compile at the default level: 03 took 32 s
optimized against 51 s unoptimized.
"""

from __future__ import annotations

import pathlib
import sys

import pytest
from conftest import FAST_COMPILE, ORIGINAL_XLA_FLAGS

nbformat = pytest.importorskip("nbformat", reason="needs the notebooks extra: jaxrnn[notebooks]")
nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra: jaxrnn[notebooks]")
kernelspec = pytest.importorskip("ipykernel.kernelspec", reason="needs jaxrnn[notebooks]")

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# Per cell, and for a kernel to start. Not a budget: in quick mode the longest cell needs
# about 20 s of CPU time (whole notebooks: 01 ~8 s, 02 ~70 s, 03 ~30 s, 04 ~16 s, 05 ~50 s).
HANG_GUARD_S = 30 * 60


#: The kernel of the notebooks that do not train (see ``trains``).
FAST_COMPILE_KERNEL = "python3-fast-compile"


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """Kernel specs that run this interpreter, so the notebooks test this environment
    and not whatever ``python3`` kernel happens to be installed for the user; in quick mode.
    ``python3`` compiles at XLA's default level, ``FAST_COMPILE_KERNEL`` at level 0."""
    from jupyter_client.kernelspec import KernelSpecManager

    kernels_dir = tmp_path_factory.mktemp("kernels")
    quick = {"JAXRNN_NOTEBOOK_QUICK": "1"}
    level_0 = {"JAX_DISABLE_MOST_OPTIMIZATIONS": "1"} if FAST_COMPILE else {}
    default_level = {"XLA_FLAGS": ORIGINAL_XLA_FLAGS}  # not conftest's CLASSIC_EMITTERS
    for name, env in [("python3", quick | default_level), (FAST_COMPILE_KERNEL, quick | level_0)]:
        kernelspec.write_kernel_spec(
            kernels_dir / name, overrides={"argv": _kernel_argv(), "env": env}
        )
    return KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)


def trains(notebook) -> bool:
    """Whether a notebook trains a model (its code uses ``optax``)."""
    return any("optax" in cell.source for cell in notebook.cells if cell.cell_type == "code")


def _kernel_argv() -> list[str]:
    return [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 4, f"expected the 4 teaching notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    stale = [
        i for i, c in enumerate(notebook.cells) if c.get("outputs") or c.get("execution_count")
    ]
    assert not stale, f"{path.name}: strip outputs before committing (cells {stale})"


@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_spec_manager):
    # The async manager, as nbclient's default: with a blocking one, cell timeouts never fire.
    from jupyter_client.manager import AsyncKernelManager

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=HANG_GUARD_S,
        startup_timeout=HANG_GUARD_S,
        km=AsyncKernelManager(
            kernel_name="python3" if trains(notebook) else FAST_COMPILE_KERNEL,
            kernel_spec_manager=kernel_spec_manager,
        ),
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    # A failing cell raises CellExecutionError, whose message shows the cell and traceback.
    client.execute()
