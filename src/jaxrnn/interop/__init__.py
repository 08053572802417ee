"""Conversion to and from other libraries' weights and modules.

``jaxrnn.interop.torch`` never imports torch (modules are duck-typed, saved files are read
with NumPy). ``jaxrnn.interop.flax`` imports Flax, a dependency of jaxrnn, and is not
imported by ``import jaxrnn``.
"""
