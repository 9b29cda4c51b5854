"""Export trained students to other tools: NIR (the Neuromorphic Intermediate Representation)."""
from __future__ import annotations

from .nir_export import DEFAULT_DT, neuron_node_names, student_to_nir, write_nir
from .nir_reference import simulate_nir

__all__ = ["DEFAULT_DT", "student_to_nir", "write_nir", "simulate_nir", "neuron_node_names"]
