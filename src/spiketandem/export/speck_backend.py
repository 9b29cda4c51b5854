"""Loading sinabs' DYNAP-CNN backend (``sinabs.backend.dynapcnn``) whether or not samna is usable.

The backend's mapping, discretization, memory accounting and software forward are plain PyTorch, but its
package imports ``samna`` (SynSense's hardware runtime) when it loads.  samna is published on PyPI only as an
installer: every version there (checked from 0.21.8.0 to 0.48.6) is a small ``py3-none-any`` wheel whose
``import samna`` runs ``pip install --force-reinstall samna==X --index-url=<SynSense's GitLab index>``, which
changes the environment and fails without access to that index.  So samna is never imported unless it is the
real package (:func:`samna_status`); otherwise the backend is loaded with a stand-in ``samna`` module whose every
use (``make_config``, opening a device, samna's simulator) raises one line naming how to install the real one.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

from ..errors import SpiketandemError

SAMNA_INDEX = "https://gitlab.com/api/v4/projects/27423070/packages/pypi/simple"
_STAND_IN_ROOTS = ("samna", "samnagui")


def samna_status() -> dict:
    """Whether samna can be used, found without importing it: {"usable": bool, "version": str | None,
    "why": str}.  PyPI's installer wheel (``PYPI_SAMNA = True`` in its ``__init__``) counts as unusable."""
    try:
        spec = importlib.util.find_spec("samna")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return {"usable": False, "version": None,
                "why": f"samna is not installed (pip install samna --index-url {SAMNA_INDEX}; PyPI's samna is "
                       "an installer that fetches it from there on first import)"}
    try:
        from importlib.metadata import version
        found = version("samna")
    except Exception:
        found = None
    origin = spec.origin or ""
    text = ""
    if origin.endswith(".py"):
        try:
            with open(origin, encoding="utf-8", errors="replace") as f:
                text = f.read(20000)
        except OSError:
            text = ""
    if "PYPI_SAMNA" in text or "install_real_samna" in text:
        return {"usable": False, "version": found,
                "why": f"samna {found} installed from PyPI is SynSense's installer shim, which on import runs "
                       f"`pip install --force-reinstall samna=={found} --index-url={SAMNA_INDEX}`; install the real "
                       "package from that index to generate chip configurations"}
    return {"usable": True, "version": found, "why": ""}


class _Missing(type):
    """A stand-in for any samna class or module attribute: usable in annotations, refused when called."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing(f"{cls.__name__}.{name}")

    def __call__(cls, *args, **kwargs):
        raise SpiketandemError(f"{cls.__name__} needs SynSense's samna runtime, which is not usable here: "
                               f"{samna_status()['why']}")


def _missing(name: str):
    return _Missing(name, (), {})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _missing(f"{self.__name__}.{name}")


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in _STAND_IN_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


def dynapcnn_backend() -> tuple[types.ModuleType, dict]:
    """``(sinabs.backend.dynapcnn, samna_status())``; refuses in one line when sinabs is not installed."""
    status = samna_status()
    try:
        importlib.import_module("sinabs")
    except ImportError as e:
        raise SpiketandemError(f"--target speck needs sinabs (SynSense's PyTorch library): pip install --no-deps "
                               f"sinabs pbr (sinabs pins nir<=1.0.4, older than the NIR export needs); {e}") from None
    if "sinabs.backend.dynapcnn" in sys.modules:
        return sys.modules["sinabs.backend.dynapcnn"], status
    if status["usable"]:
        return importlib.import_module("sinabs.backend.dynapcnn"), status
    finder = _StandInFinder()
    before = set(sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        backend = importlib.import_module("sinabs.backend.dynapcnn")
    finally:
        sys.meta_path.remove(finder)
        # sinabs' modules keep their references; nobody else is handed the stand-in by name
        for name in set(sys.modules) - before:
            if name.split(".")[0] in _STAND_IN_ROOTS:
                del sys.modules[name]
    return backend, status
