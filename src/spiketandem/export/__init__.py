"""Export trained students to other tools: NIR (the Neuromorphic Intermediate Representation).

The names below are imported on first use, so that the command line (``export/command.py``) can build
its parser without importing torch."""
from __future__ import annotations

from ..lazy import lazy_exports

from .options import DEFAULT_DT, FLAVOURS, IMPORTERS

_WHERE = {"student_to_nir": "nir_export", "write_nir": "nir_export", "neuron_node_names": "nir_export",
          "neuron_layers": "nir_export", "simulate_nir": "nir_reference", "verify_nir": "verify",
          "verify_table": "verify"}

__all__ = ["DEFAULT_DT", "FLAVOURS", "IMPORTERS", *_WHERE]


__getattr__ = lazy_exports(__name__, _WHERE)
