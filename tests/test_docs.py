"""The documentation cannot drift from the code: its examples run and its claims hold.

Conventions for code blocks in ``README.md`` and ``docs/**/*.md``:

- `````python`` blocks are executed, in order, in one fresh namespace per file (a page
  reads as one script); a block that fails fails the test for that page;
- `````pycon`` blocks, and `````python`` blocks that start with ``>>>``, are doctests
  (``NORMALIZE_WHITESPACE`` and ``ELLIPSIS``, as in ``pyproject.toml``), run in the same
  namespace after the page's script blocks: the printed output, or the exception message
  after ``Traceback (most recent call last):``, must match;
- any other info string (`````py``, `````bash``, `````text``) is shown, not run: sketches
  that need torch, several devices or files on disk.

``docs/errors.md`` is the error catalogue: every entry is a ``pycon`` block whose call
raises, so the doctest checks that the message on the page is the one the code produces.

The API reference is built by mkdocstrings from docstrings; a missing docstring would not
fail ``mkdocs build --strict`` by itself, so it is checked here.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxrnn
import jaxrnn.interop.flax
import jaxrnn.interop.torch
import jaxrnn.parallel
import jaxrnn.precision
import jaxrnn.sharding

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def code_blocks(page: Path) -> list[tuple[str, str, int]]:
    """``(info string, code, line number)`` of every fenced block of ``page``."""
    text = page.read_text(encoding="utf-8")
    return [
        (m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def is_doctest(info: str, code: str) -> bool:
    return info == "pycon" or (info == "python" and code.lstrip().startswith(">>>"))


def run_page(page: Path) -> int:
    """Run ``page``'s blocks in the page's order, as a reader would; return how many ran."""
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    parser = doctest.DocTestParser()
    ran = 0
    for info, code, line in code_blocks(page):
        name = f"{page.relative_to(ROOT)}:{line}"
        if is_doctest(info, code):
            test = parser.get_doctest(code, namespace, name, str(page), line)
            runner.run(test, clear_globs=False)
            ran += 1
        elif info == "python":
            exec(compile(code, name, "exec"), namespace)
            ran += 1
    failed, _ = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} doctest example(s) failed in {page.name} (see stdout)"
    return ran


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(page):
    run_page(page)


def test_every_guide_page_has_running_code():
    """The pages written as runnable guides keep at least one executed block each."""
    guides = [ROOT / "docs" / "getting-started.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
    for page in guides:
        runnable = [b for b in code_blocks(page) if b[0] in ("python", "pycon")]
        assert runnable, f"{page.name} has no executed code block"


def test_error_catalogue_checks_every_entry():
    """Each entry of docs/errors.md shows a call and the exact error it raises."""
    blocks = [b for b in code_blocks(ROOT / "docs" / "errors.md") if b[0] == "pycon"]
    assert len(blocks) >= 15
    for _, code, line in blocks:
        assert "Traceback (most recent call last):" in code, f"errors.md:{line}"
        message = code.rstrip().splitlines()[-1]
        # MethodError is the ValueError of methods that cannot run the params.
        errors = r"ValueError|TypeError|jaxrnn\.core\.methods\.MethodError"
        assert re.match(rf"^({errors}): \w+: .+ must .+; got .+$", message), (
            f"errors.md:{line}: {message!r} is not in the library's message format"
        )


def _public(module, names) -> list[tuple[str, object]]:
    return [(f"{module.__name__}.{name}", getattr(module, name)) for name in names]


def _module_functions(module) -> list[str]:
    return [name for name in module.__all__ if inspect.isfunction(getattr(module, name, None))]


PUBLIC = [
    *_public(jaxrnn, jaxrnn.__all__),
    *_public(jaxrnn.interop.torch, jaxrnn.interop.torch.__all__),
    *_public(jaxrnn.interop.flax, jaxrnn.interop.flax.__all__),
    *_public(jaxrnn.sharding, jaxrnn.sharding.__all__),
    *_public(jaxrnn.precision, jaxrnn.precision.__all__),
    *_public(jaxrnn.parallel, jaxrnn.parallel.__all__),
    # Every class of jaxrnn.cells that is not a top-level name (new cells' params and states).
    *_public(
        jaxrnn.cells,
        [
            n
            for n in jaxrnn.cells.__all__
            if inspect.isclass(getattr(jaxrnn.cells, n)) and n not in jaxrnn.__all__
        ],
    ),
]


@pytest.mark.parametrize("name, obj", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_public_api_is_documented(name, obj):
    """Every public name has a docstring; every public function has a runnable example."""
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), f"{name} has no docstring"
    if inspect.isfunction(obj):
        example = re.search(r"^Examples?:\s*$(.*)", doc, re.MULTILINE | re.DOTALL)
        assert example and ">>>" in example.group(1), f"{name}: no 'Example:' with >>>"


def _resolve(path: str):
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def test_api_reference_lists_every_public_name():
    """Each public object appears in a ``::: name`` directive of docs/api/*.md."""
    documented = []
    for page in (ROOT / "docs" / "api").glob("*.md"):
        for path in re.findall(r"^::: ([\w.]+)", page.read_text(), re.MULTILINE):
            if path not in ("jaxrnn.parallel", "jaxrnn.precision"):  # module overviews
                documented.append(_resolve(path))
    missing = [name for name, obj in PUBLIC if not any(obj is d for d in documented)]
    assert not missing, f"not in the API reference: {missing}"


def test_site_builds_without_warnings(tmp_path):
    """``mkdocs build --strict``: a broken cross-reference, a bad docstring section or a
    missing page fails it. Needs the ``dev`` extra; skipped without mkdocs.

    The notebooks are rendered unexecuted here (``JAXRNN_DOCS_EXECUTE=0``): this checks the
    build, and tests/test_notebooks.py executes them. CI's docs step builds the site with
    them executed, then ``.ci/check_site.py`` looks at it in a browser."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "JAXRNN_DOCS_EXECUTE": "0"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The equations render offline: MathJax is served by the site, not fetched.
    assert (tmp_path / "site" / "assets" / "mathjax" / "tex-chtml.js").is_file()


# `\begin{aligned}[i, f, g, o] &= ...` reads `[i, f, g, o]` as the environment's optional
# argument (its vertical alignment): the left-hand side vanishes from the rendered
# equation, with no error. Write `\begin{aligned} {[i, f, g, o]} &= ...`.
EATEN_BRACKET = re.compile(r"\\+begin\{(?:aligned|alignedat|gathered|array)\}\s*\[")
MATH_SOURCES = [
    *PAGES,
    *sorted((ROOT / "src" / "jaxrnn").rglob("*.py")),
    *sorted((ROOT / "notebooks").glob("*.ipynb")),
]


def test_no_equation_starts_with_a_bracket():
    """No math environment of the docs, docstrings or notebooks opens with ``[``."""
    eaten = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
        for path in MATH_SOURCES
        for text in [path.read_text(encoding="utf-8")]
        for match in EATEN_BRACKET.finditer(text)
    ]
    assert not eaten, f"an equation's first bracket is read as an option at {eaten}"
