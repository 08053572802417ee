"""MkDocs hook: pages that live outside ``docs/``.

``notebooks/*.ipynb`` are rendered with mkdocs-jupyter, and the benchmark figures that
``docs/performance.md`` links as ``../benchmarks/results/*.png`` (so that the link also
works when the Markdown is read on a forge) are served from ``benchmarks/results/``.

The notebooks are read where they live, never copied into ``docs/``, so the site cannot
drift from what ``tests/test_notebooks.py`` executes. The nav entry ``Notebooks`` (an
empty list in ``mkdocs.yml``) is filled with every notebook, in file-name order, titled
by the notebook's first heading. Notebooks are committed without outputs and are not
executed by the docs build.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

_NAV_TITLE = "Notebooks"


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


_FIGURES = "benchmarks/results"


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
    root = Path(config.config_file_path).parent
    for path in _notebooks(config):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(root),
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
