"""Public names of a package imported on first use (PEP 562), so that importing the package — and with it
the command line's ``--help`` and usage errors — does not import torch."""
from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, where: dict[str, str]):
    """The ``__getattr__`` of ``package``: name -> the submodule (relative to the package) that defines it.
    A name is imported once and then stored in the package, so later lookups skip this function."""
    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{where[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value
    return __getattr__
