"""Metrics: operation counts (SynOps / MACs) and their ratio."""
from __future__ import annotations

from torch import nn

from .synops import OpCounts, count_ops, is_spike_tensor


def operation_ratio(student_forward, teacher: nn.Module, images, named: nn.Module | None = None) -> float:
    """Student operations (SynOps + any MACs) / teacher MACs, per sample, on ``images``."""
    student_counts, _ = count_ops(student_forward, images, named=named)
    teacher_counts, _ = count_ops(teacher, images)
    return (student_counts.total_synops() + student_counts.total_macs()) / max(1, teacher_counts.total_macs())


__all__ = ["OpCounts", "count_ops", "is_spike_tensor", "operation_ratio"]
