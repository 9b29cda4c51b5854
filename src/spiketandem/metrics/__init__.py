"""Metrics: operation counts (SynOps / MACs) and their ratio, energy per inference, firing statistics."""
from __future__ import annotations

from .efficiency import compare_ops, efficiency_by_T, layer_table, operation_ratio, teacher_macs
from .energy import AC_PJ, MAC_PJ, EnergyModel
from .firing import FiringStats, record_activity, spike_raster
from .synops import OpCounts, conv_synapses, count_ops, is_spike_tensor

__all__ = ["OpCounts", "count_ops", "conv_synapses", "is_spike_tensor", "operation_ratio", "teacher_macs",
           "compare_ops", "layer_table", "efficiency_by_T", "EnergyModel", "MAC_PJ", "AC_PJ", "FiringStats",
           "record_activity", "spike_raster"]
