"""Griffe extension: read a Google-style ``Example:`` section as an examples section.

jaxrnn's docstrings (following Optax) title their doctest section ``Example:``. Griffe's
Google parser knows only ``Examples:`` as a section and would render ``Example:`` as an
admonition of plain text, so the ``>>>`` lines would lose their code formatting.
"""

from __future__ import annotations

import re

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
