"""Conversion to and from other libraries' weights and modules.

``jaxrnn.interop.torch`` never imports torch (modules are duck-typed, saved files are read
with NumPy). ``jaxrnn.interop.flax`` imports Flax, a dependency of jaxrnn, and is not
imported by ``import jaxrnn``.
"""

import importlib
from typing import Any

SUBMODULES = ("flax", "torch")


def __getattr__(name: str) -> Any:
    """``jaxrnn.interop.flax`` and ``.torch`` on first use, as ``jaxrnn``'s submodules."""
    if name in SUBMODULES:
        return importlib.import_module(f"jaxrnn.interop.{name}")
    raise AttributeError(f"module 'jaxrnn.interop' has no attribute {name!r}")
