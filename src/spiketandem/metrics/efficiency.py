"""SynOps, MACs, their ratio and energy per inference of a student against its teacher, at several T."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..choices import SYNOPS_CONVENTIONS
from .energy import EnergyModel
from .synops import OpCounts, count_ops


def teacher_macs(teacher: nn.Module, images: torch.Tensor) -> OpCounts:
    """Dense MACs of an ANN (every conv/matmul counted as multiply-accumulates)."""
    return count_ops(teacher, images, dense=True)[0]


def operation_ratio(student_forward, teacher: nn.Module, images, named: nn.Module | None = None,
                    convention: str = "exact") -> float:
    """(student SynOps + student MACs) / teacher MACs, per sample, on ``images``; SynOps in ``convention``."""
    student_counts, _ = count_ops(student_forward, images, named=named)
    reference = teacher_macs(teacher, images)
    return (student_counts.total_synops(convention) + student_counts.total_macs()) / max(1, reference.total_macs())


def compare_ops(student: OpCounts, teacher: OpCounts, energy: EnergyModel, convention: str = "exact") -> dict:
    """Per-inference figures of one student count against the teacher's:
    ratio = (SynOps + MACs)_student / MACs_teacher, SynOps (and energy) in ``convention``, and the
    ratio in every convention (``synops_ratio_by_convention``)."""
    s_mac, t_mac = student.macs_per_sample(), teacher.macs_per_sample()
    ratios = {c: (student.synops_per_sample(c) + s_mac) / t_mac if t_mac > 0 else None for c in SYNOPS_CONVENTIONS}
    s_syn = student.synops_per_sample(convention)
    return {"synops_convention": convention, "synops_per_sample": s_syn, "student_macs_per_sample": s_mac,
            "teacher_macs_per_sample": t_mac, "synops_ratio": ratios[convention],
            "synops_ratio_by_convention": ratios, "energy": energy.compare(s_mac, s_syn, t_mac)}


def layer_table(student: OpCounts, teacher: OpCounts, convention: str = "exact") -> dict[str, dict]:
    """layer -> {synops (in ``convention``), synops_by_convention, macs (student, per sample), teacher_macs,
    ratio (in ``convention``)}; layers named by module path."""
    t_layers = teacher.per_layer()
    rows = {}
    for name, ops in student.per_layer(convention).items():
        ref = t_layers.get(name, {}).get("macs", 0.0)
        rows[name] = {**ops, "teacher_macs": ref, "ratio": (ops["synops"] + ops["macs"]) / ref if ref else None}
    return rows


def efficiency_by_T(predict: Callable[[torch.Tensor, int], torch.Tensor], named: nn.Module, teacher: nn.Module,
                    images: torch.Tensor, T_list, T_main: int, energy: EnergyModel | None = None,
                    event_frames: bool = False, convention: str = "exact") -> dict:
    """Count the student at every T of ``T_list`` (and ``T_main``) on ``images``, SynOps in ``convention``.

    ``event_frames``: ``images`` are event-count frames ``[B, T, C, H, W]``; the student's input
    layer is then counted as SynOps (events x fan-out) and the teacher sees their time average.

    Returns the summary keys: ``synops_convention``, ``synops_ratio`` (and ``synops_ratio_by_convention``),
    the per-sample counts and energy at ``T_main``, ``synops_ratio_by_T`` and ``energy_ratio_by_T`` (T as
    string keys, like ``acc_by_T``), and ``ops_by_layer`` at ``T_main``."""
    energy = energy or EnergyModel()
    reference = teacher_macs(teacher, images.mean(1) if event_frames else images)
    by_T, main = {}, None
    for T in sorted(set(T_list) | {T_main}):
        counts, _ = count_ops(lambda x: predict(x, T), images, named=named, event_inputs=event_frames)
        by_T[T] = compare_ops(counts, reference, energy, convention)
        if T == T_main:
            main = by_T[T]
            layers = layer_table(counts, reference, convention)
    return {**main, "synops_ratio_by_T": {str(T): r["synops_ratio"] for T, r in by_T.items()},
            "energy_ratio_by_T": {str(T): r["energy"]["ratio"] for T, r in by_T.items()},
            "ops_by_layer": layers}
