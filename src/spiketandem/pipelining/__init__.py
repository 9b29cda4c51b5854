"""Layer-pipelined LTL: ``torchrun --nproc_per_node=S*R -m spiketandem train --pipeline-stages S ...``.

The student's neuron layers are split into S contiguous stages balanced by their measured cost, one stage
per process (rank ``r`` is stage ``r % S`` of replica ``r // S``); each stage trains its layers on batch k
while the one before it already computes batch k+1, with only forward messages (spikes as bits) between
them.  Exact: every layer's input is detached, so the run reproduces the single-process parallel schedule.

- ``graph.py``: cutting the student's and the teacher's fx graphs into segments;
- ``plan.py``: per-layer costs on a warm-up batch, the balanced partition, the teacher's route;
- ``messages.py``: the message of one boundary (bits + amplitudes, float32 tensors);
- ``rule.py``: ``Pipelined``, the rule wrapper the training loop drives.
"""
from __future__ import annotations


def wrap(rule, cfg):
    """``rule`` as ``cfg.pipeline_stages`` pipelined stages (``rule`` itself for 1)."""
    stages = getattr(cfg, "pipeline_stages", 1)
    if stages <= 1:
        return rule
    from .rule import Pipelined
    return Pipelined(rule, stages)


def check_launch(stages: int) -> None:
    """One clear error unless torchrun started a multiple of ``stages`` processes."""
    from .rule import check_launch as check
    check(stages)


def describe(report: dict) -> str:
    """One line per stage for the log: its layers, its teacher route and its measured share of the work."""
    if "layers" not in report:
        return f"{report['stages']} pipeline stages"
    total = sum(report["stage_seconds"]) or 1.0
    lines = [f"{report['stages']} pipeline stages x {report['replicas']} replica(s), balanced by the layers' "
             f"times on a warm-up batch of {report['warmup_batch']}:"]
    for s, (layers, mode, sec) in enumerate(zip(report["layers"], report["teacher"], report["stage_seconds"])):
        route = {"first": "teacher from the batch", "relay": "teacher activations relayed",
                 "recompute": "teacher prefix recomputed"}[mode]
        lines.append(f"  stage {s + 1}: {', '.join(layers)} ({100 * sec / total:.0f}% of the work; {route})")
    return "\n".join(lines)
