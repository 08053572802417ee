"""MkDocs hook: one MathJax for every page, served by the site itself.

MathJax 3 comes from the ``django-static-mathjax`` distribution of the ``dev`` extra, a
plain copy of MathJax 3.2.2's files (Django is neither needed nor imported). Its combined
TeX component, ``tex-chtml.js``, is what ``mkdocs.yml`` loads, and the files it loads
on demand come along: TeX extensions (``input/``), the CommonHTML fonts
(``output/chtml/``), the menu and the accessibility tools. So the site typesets its
equations without a network, and ``docs/javascripts/mathjax.js`` configures it for both
kinds of page (arithmatex's ``\\(...\\)`` and the notebooks' ``$...$``).

mkdocs-jupyter puts nbconvert's own MathJax 2 loader (configured with no URL) on notebook
pages; it is removed, so that nothing but the site's MathJax 3 looks at a page.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

_DISTRIBUTION = "django-static-mathjax"
_PACKAGE_DIR = "mathjax/static/mathjax"
#: Where the files go in the site; mkdocs.yml loads ``{_SITE_DIR}/tex-chtml.js``.
_SITE_DIR = "assets/mathjax"
#: The component that pages load, then what it loads on demand (relative to ``es5/``).
_PARTS = ("tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre")

_NBCONVERT_MATHJAX = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.DOTALL
)


def _mathjax_root() -> Path:
    try:
        distribution = metadata.distribution(_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise PluginError(
            f"the site serves MathJax from the {_DISTRIBUTION!r} package, which is not "
            "installed: pip install -e '.[dev]'"
        ) from None
    return Path(str(distribution.locate_file(_PACKAGE_DIR)))


def on_files(files, config):
    root = _mathjax_root()
    es5 = root / "es5"
    paths = []
    for part in _PARTS:
        path = es5 / part
        paths += [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for path in paths:
        uri = f"{_SITE_DIR}/{path.relative_to(es5).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, f"{_SITE_DIR}/LICENSE", abs_src_path=str(root / "LICENSE")))
    return files


def on_page_content(html, page, config, files):
    if page.file.src_uri.endswith(".ipynb"):
        html = _NBCONVERT_MATHJAX.sub("", html)
    return html
