"""Conversion to and from other libraries' weights. Nothing here imports those libraries."""
