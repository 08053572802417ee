"""MkDocs hook: pages that live outside ``docs/``, and the notebooks executed for the site.

``notebooks/*.ipynb`` are rendered with mkdocs-jupyter, and the benchmark figures that
``docs/performance.md`` links as ``../benchmarks/results/*.png`` (so that the link also
works when the Markdown is read on a forge) are served from ``benchmarks/results/``.

The notebooks are read where they live, never copied into ``docs/``, so the site cannot
drift from what ``tests/test_notebooks.py`` executes. The nav entry ``Notebooks`` (an
empty list in ``mkdocs.yml``) is filled with every notebook, in file-name order, titled
by the notebook's first heading.

Notebooks are committed without outputs. The build executes each one, at its full size,
in a kernel that runs the interpreter running mkdocs (as the test does), and renders the
executed copy, so the site shows the outputs and figures that the text describes. A cell
that raises fails the build, and the notebooks end with ``assert``s on their results: this
is where the full-size runs are checked (the test suite runs them on small budgets, with
``JAXRNN_NOTEBOOK_QUICK=1``). That variable passes through to the kernels, so
``JAXRNN_NOTEBOOK_QUICK=1 mkdocs serve`` previews the site with quick outputs;
``JAXRNN_DOCS_EXECUTE=0`` renders the notebooks unexecuted (tests/test_docs.py does, as it
checks the build and not the notebooks).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from html import escape
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.notebooks")

_NAV_TITLE = "Notebooks"
_FIGURES = "benchmarks/results"
#: A guard against a hung kernel, not a time budget: the longest cell needs well under a
#: minute on a quiet 2-core CPU; a loaded machine is slower, never 30 times slower.
HANG_GUARD_S = 30 * 60

# The executed copies live here for one build (made in on_files, removed after the build).
_executed_dir: Path | None = None

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _notebooks(config) -> list[Path]:
    root = Path(config.config_file_path).parent
    return sorted((root / "notebooks").glob("*.ipynb"))


def _title(path: Path) -> str:
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def _should_execute() -> bool:
    return os.environ.get("JAXRNN_DOCS_EXECUTE", "1") != "0"


def _widgets_as_html(notebook) -> None:
    """Show each widget output (``jaxrnn.train.fit``'s tqdm progress bars) as its final state.

    A widget output is a view of a model stored in the notebook's metadata, drawn by a
    widget manager that nbconvert would load from a CDN. A finished progress bar needs no
    script: its box of labels and bar becomes that HTML, with a plain ``<progress>``.
    """
    models = notebook.metadata.pop("widgets", {}).get(_WIDGET_STATE, {}).get("state", {})

    def html(model_id: str) -> str:
        model = models.get(model_id.removeprefix("IPY_MODEL_"), {})
        name, state = model.get("model_name", ""), model.get("state", {})
        if name in ("HBoxModel", "VBoxModel", "BoxModel"):
            return " ".join(html(child) for child in state.get("children", []))
        if name in ("FloatProgressModel", "IntProgressModel"):
            value, maximum = state.get("value", 0), state.get("max", 1)
            return f'<progress value="{value}" max="{maximum}"></progress>'
        if name == "HTMLModel":
            return state.get("value", "")
        if name == "LabelModel":
            return escape(state.get("value", ""))
        return ""

    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(_WIDGET_VIEW)
            if view is not None:
                output["data"] = {"text/html": f"<div>{html(view['model_id'])}</div>"}


def _execute(notebooks: list[Path], out_dir: Path) -> None:
    """Execute each notebook in a fresh kernel of this interpreter; write it to out_dir."""
    # The `notebooks` extra (part of `dev`); imported here so that a build without
    # execution does not need it.
    import nbclient
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    kernels = out_dir / "kernels"
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    argv.append("--IPKernelApp.log_level=ERROR")  # not its notices about ports and exits
    write_kernel_spec(kernels / "python3", overrides={"argv": argv})
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)
    for path in notebooks:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            notebook,
            km=AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs),
            timeout=HANG_GUARD_S,
            startup_timeout=HANG_GUARD_S,
            iopub_timeout=60,  # waits for a cell's last outputs (figures) on a busy machine
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        except Exception as error:  # a cell that raised, a dead kernel, the hang guard
            raise PluginError(f"notebooks/{path.name} failed: {error}") from error
        _widgets_as_html(notebook)
        nbformat.write(notebook, out_dir / "notebooks" / path.name)
        log.info(f"Executed notebooks/{path.name} in {time.perf_counter() - start:.0f} s")


def on_page_markdown(markdown, page, config, files):
    # A page at the top of docs/ links ../benchmarks/...; in the site it is benchmarks/...
    if "/" not in page.file.src_uri:
        markdown = markdown.replace(f"](../{_FIGURES}/", f"]({_FIGURES}/")
    return markdown


def on_config(config):
    for entry in config.nav or []:
        if isinstance(entry, dict) and _NAV_TITLE in entry:
            entry[_NAV_TITLE] = [
                {_title(path): f"notebooks/{path.name}"} for path in _notebooks(config)
            ]
    return config


# Before mkdocs-jupyter's own on_files, which turns .ipynb files into pages.
@event_priority(100)
def on_files(files, config):
    global _executed_dir
    root = Path(config.config_file_path).parent
    notebooks = _notebooks(config)
    notebooks_root = root
    if _should_execute():
        _executed_dir = Path(tempfile.mkdtemp(prefix="jaxrnn-notebooks-"))
        (_executed_dir / "notebooks").mkdir()
        _execute(notebooks, _executed_dir)
        notebooks_root = _executed_dir
    for path in notebooks:
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(notebooks_root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    for path in sorted((root / _FIGURES).glob("*.png")):
        files.append(
            File(
                f"{_FIGURES}/{path.name}",
                src_dir=str(root),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


def _remove_executed() -> None:
    global _executed_dir
    if _executed_dir is not None:
        shutil.rmtree(_executed_dir, ignore_errors=True)
        _executed_dir = None


def on_post_build(config):
    _remove_executed()


def on_build_error(error):
    _remove_executed()
