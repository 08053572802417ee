"""The documentation of the cells is checked against the code: ``init_params``' docstring
and the cells guide list every cell of ``jaxrnn.cells.CELL_INITS`` with the options its
init function takes, no more and no fewer."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import jaxrnn
from jaxrnn.cells import CELL_INITS

GUIDE = Path(__file__).parents[1] / "docs" / "guide" / "cells.md"
#: Options every cell with weights shares; the guide's table lists the others.
COMMON = {"bias", "kernel_init", "recurrent_init", "bias_init", "dtype"}


def options(cell: str) -> set[str]:
    signature = inspect.signature(CELL_INITS[cell])
    return {name for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}


def docstring_entries() -> dict[str, str]:
    """``cell name -> its bullet`` in ``init_params``' docstring."""
    text = inspect.getdoc(jaxrnn.init_params) or ""
    cells_part = text.split("Args:")[0]
    bullets = re.split(r"\n- ", cells_part)[1:]
    bullets = [b.split("\n\n")[0] for b in bullets]  # the last ends at a blank line
    return {re.match(r'``"(\w+)"``', b).group(1): b for b in bullets}  # type: ignore[union-attr]


def test_init_params_docstring_lists_every_cell_once():
    assert sorted(docstring_entries()) == sorted(CELL_INITS)


@pytest.mark.parametrize("cell", list(CELL_INITS))
def test_init_params_docstring_lists_each_cells_options(cell):
    entry = docstring_entries()[cell]
    listed = re.search(r"Options: (.*?)\.\s*$", entry, re.S)
    assert listed, f"no 'Options:' in the entry of {cell!r}"
    names = set(re.findall(r"``(\w+)``", listed.group(1)))
    assert names == options(cell)


def guide_rows() -> dict[str, str]:
    rows = re.findall(r'^\| `"(\w+)"` \|(.*)$', GUIDE.read_text(), re.M)
    return dict(rows)


@pytest.mark.parametrize("cell", list(CELL_INITS))
def test_cells_guide_has_a_row_with_the_cells_own_options(cell):
    row = guide_rows().get(cell)
    assert row is not None, f"docs/guide/cells.md has no table row for {cell!r}"
    *_, options_column = row.rstrip(" |").split(" | ")
    own = options(cell) - COMMON
    mentioned = set(re.findall(r"`(\w+)`", options_column))
    assert own <= mentioned, f"{cell!r}: {sorted(own - mentioned)} missing"


def test_cells_guide_lists_no_cell_that_does_not_exist():
    assert set(guide_rows()) == set(CELL_INITS)
