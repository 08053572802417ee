"""Open every page of the built docs site in headless Chromium and check what a reader sees.

    python .ci/check_site.py SITE_DIR

The site is served on 127.0.0.1 and each page is loaded by Chromium, which runs its
scripts (MathJax included) and dumps the resulting DOM. Then, for every page:

- nothing is loaded from another host (scripts, stylesheets, fonts, images): the site
  works offline;
- every equation is typeset: each ``arithmatex`` element (Markdown pages, docstrings)
  holds MathJax output, MathJax reports no TeX error, and no raw TeX (``$...$``,
  ``\\(``, ``\\begin``, ``\\frac``...) is left in the text outside code and program output;
- every equation is visible: each character that MathJax drew has its glyph in MathJax's
  stylesheet (a character without one shows blank);

and for every notebook page (``notebooks/NAME/``, from ``notebooks/NAME.ipynb``):

- every code cell was executed (its prompt has a number; a cell that raised has already
  failed the build);
- every code cell that calls ``plt.show()`` has as many figures, each a PNG that decodes
  to a non-empty image.

Needs Chromium (Debian: ``apt-get install chromium``; another binary: ``CHROMIUM=...``).
Exits non-zero with one line per failure.
"""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import http.server
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Virtual time runs as fast as the page lets it: the budget is a bound on the page's
    # own timers (MathJax's loading and typesetting), not a wall-clock wait.
    "--virtual-time-budget=30000",
]
# Raw TeX in what a reader sees: delimiters, environments, or a control word.
RAW_TEX = re.compile(r"\$[^$\s][^$]*\$|\$\$|\\[(\[]|\\begin\{|\\[a-zA-Z]{2,}")
# Text in these elements is code, program output or machinery, not prose.
NOT_PROSE = {"code", "pre", "script", "style", "textarea", "mjx-container", "svg", "title"}
NOT_PROSE_CLASSES = {"jp-CodeCell", "clipboard-copy-txt"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}
VOID |= {"track", "wbr"}


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    sys.exit("check_site: no Chromium found (apt-get install chromium, or set CHROMIUM=...)")


def png_size(src: str) -> tuple[int, int] | None:
    """(width, height) of a ``data:image/png;base64,`` URL, None if it is no PNG."""
    prefix = "data:image/png;base64,"
    if not src.startswith(prefix):
        return None
    data = base64.b64decode(src[len(prefix) :])
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


class Page(HTMLParser):
    """What one rendered page shows: its math, its external resources, its notebook cells."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, set[str], bool]] = []  # (tag, classes and "#id", prose)
        self.arithmatex = 0
        self.arithmatex_typeset = 0
        self.equations = 0
        self.tex_errors = 0
        self.raw_tex: list[str] = []
        self.glyphs: set[str] = set()  # the mjx-c classes of the characters drawn
        self.styles = ""  # MathJax's stylesheet, where each glyph is a ::before rule
        self.external: list[str] = []
        self.cells: list[dict] = []  # notebook cells, in order: id, prompt, figures
        self._arithmatex_open: list[bool] = []  # per open arithmatex: typeset inside?

    def _prose(self) -> bool:
        return not self.stack or self.stack[-1][2]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        prose = self._prose() and tag not in NOT_PROSE and not classes & NOT_PROSE_CLASSES
        if tag == "mjx-container" and not any(t == "mjx-container" for t, _, _ in self.stack):
            self.equations += 1
            self._arithmatex_open = [True] * len(self._arithmatex_open)
        if tag == "mjx-merror":
            self.tex_errors += 1
        if tag == "mjx-c":
            self.glyphs |= {c for c in classes if re.fullmatch(r"mjx-c[0-9A-F]+", c)}
        for attr in ("src", "href"):
            url = attrs.get(attr) or ""
            if re.match(r"(https?:)?//", url) and (tag != "a"):
                self.external.append(f"<{tag} {attr}={url}>")
        if "jp-Cell" in classes and (attrs.get("id") or "").startswith("cell-id="):
            cell_id = attrs["id"].removeprefix("cell-id=")
            self.cells.append({"id": cell_id, "prompt": "", "figures": []})
        if tag == "img" and any("jp-Cell" in open_classes for _, open_classes, _ in self.stack):
            self.cells[-1]["figures"].append(png_size(attrs.get("src") or ""))
        if tag in VOID:
            return
        if "arithmatex" in classes:
            self.arithmatex += 1
            self._arithmatex_open.append(False)
        if attrs.get("id"):
            classes.add("#" + attrs["id"])
        self.stack.append((tag, classes, prose))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack:
            open_tag, classes, _ = self.stack.pop()
            if "arithmatex" in classes:
                self.arithmatex_typeset += self._arithmatex_open.pop()
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self.stack and self.stack[-1][0] == "style" and "#MJX-CHTML-styles" in self.stack[-1][1]:
            self.styles += data
        if self.stack and "jp-InputPrompt" in self.stack[-1][1] and self.cells:
            self.cells[-1]["prompt"] += data
        if self._prose():
            self.raw_tex += [m.group() for m in RAW_TEX.finditer(data)]


def render(url: str, binary: str) -> str:
    """The DOM of ``url`` after its scripts ran, serialized by Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=600,  # a hang guard; a page takes a few seconds
        )
    if result.returncode != 0 or "</html>" not in result.stdout:
        raise RuntimeError(f"chromium failed on {url}: {result.stderr[-2000:]}")
    return result.stdout


def notebook_cells(notebook: Path) -> dict[str, tuple[str, int]]:
    """Each cell of ``notebook`` by id: its kind and how many figures it shows."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return {c["id"]: (c["cell_type"], "".join(c["source"]).count("plt.show()")) for c in cells}


def check_page(site: Path, page: Path, base_url: str, binary: str) -> tuple[str, list[str]]:
    """A summary line and the failures of one page."""
    path = page.relative_to(site).as_posix().removesuffix("index.html")
    name, url = path or "/", base_url + path
    parsed = Page()
    parsed.feed(render(url, binary))
    failures = [f"{name}: loads {item} from another host" for item in parsed.external]
    if parsed.arithmatex_typeset < parsed.arithmatex:
        untypeset = parsed.arithmatex - parsed.arithmatex_typeset
        failures.append(f"{name}: {untypeset} of {parsed.arithmatex} equations not typeset")
    drawn = set(re.findall(r"(mjx-c[0-9A-F]+)[.\w-]*::before", parsed.styles))
    if blank := parsed.glyphs - drawn:
        failures.append(
            f"{name}: {len(blank)} of {len(parsed.glyphs)} characters of the math blank"
        )
    if parsed.tex_errors:
        failures.append(f"{name}: {parsed.tex_errors} TeX errors (mjx-merror)")
    if parsed.raw_tex:
        failures.append(f"{name}: raw TeX in the text: {sorted(set(parsed.raw_tex))[:8]}")
    summary = f"{name:40s} {parsed.equations:4d} equations typeset"
    relative = page.relative_to(site).parts
    if relative[0] == "notebooks" and len(relative) == 3:
        notebook = ROOT / "notebooks" / f"{relative[1]}.ipynb"
        expected = notebook_cells(notebook)
        shown = {cell["id"]: cell for cell in parsed.cells}
        if list(shown) != list(expected):
            failures.append(
                f"{name}: shows cells {list(shown)}, {notebook.name} has {list(expected)}"
            )
        figures = 0
        for cell_id, (kind, shows) in expected.items():
            if kind != "code":
                continue
            cell = shown.get(cell_id, {"prompt": "", "figures": []})
            if not re.fullmatch(r"\s*In\s*\[\d+\]:\s*", cell["prompt"]):
                failures.append(f"{name}: cell {cell_id} was not executed ({cell['prompt']!r})")
            images = [size for size in cell["figures"] if size and min(size) > 0]
            figures += len(images)
            if len(images) < shows:
                failures.append(
                    f"{name}: cell {cell_id} calls plt.show() {shows} times, shows "
                    f"{len(images)} figures"
                )
        total = sum(shows for _, shows in expected.values())
        summary += f", {figures} figures ({total} plt.show() in the notebook)"
    return summary, failures


def main(site: Path) -> int:
    binary = chromium()
    pages = sorted(p for p in site.rglob("*.html") if "assets" not in p.parts)
    handler = functools.partial(_QuietHandler, directory=str(site))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base_url = f"http://127.0.0.1:{server.server_address[1]}/"
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda p: check_page(site, p, base_url, binary), pages))
        server.shutdown()
    failures = [failure for _, page_failures in results for failure in page_failures]
    for summary, _ in results:
        print(summary)
    for failure in failures:
        print("FAILED", failure)
    print(f"check_site: {len(pages)} pages, {len(failures)} failures")
    return 1 if failures else 0


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
