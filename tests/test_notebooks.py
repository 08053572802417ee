"""Execute every notebook in notebooks/ and fail if any cell raises.

The notebooks end with loose ``assert``s on their results, so a notebook that runs but
no longer teaches what it says (a model that stops learning, two computations that stop
agreeing) fails here too. Deselect with ``pytest -m "not notebooks"``.
"""

from __future__ import annotations

import pathlib
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebooks extra: jaxrnn[notebooks]")
nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra: jaxrnn[notebooks]")
kernelspec = pytest.importorskip("ipykernel.kernelspec", reason="needs jaxrnn[notebooks]")

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
# A guard against hangs, per notebook. Each notebook needs at most a CPU-minute or two
# (01: ~7 s, 02: ~100 s, 03: ~35 s, 04: ~15 s of CPU time); the margin is for shared machines.
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory):
    """A kernel spec that runs this interpreter, so the notebooks test this environment
    and not whatever ``python3`` kernel happens to be installed for the user."""
    from jupyter_client.kernelspec import KernelSpecManager

    kernels_dir = tmp_path_factory.mktemp("kernels")
    kernelspec.write_kernel_spec(kernels_dir / "python3", overrides={"argv": _kernel_argv()})
    return KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)


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
    deadline = time.monotonic() + TIMEOUT_S
    client = nbclient.NotebookClient(
        notebook,
        # nbclient's timeout is per cell: give each cell what is left of the notebook's budget.
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
        km=AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_spec_manager),
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    # A failing cell raises CellExecutionError, whose message shows the cell and traceback.
    client.execute()
