"""The energy and firing figures `spiketandem eval` and `train` add to a run's summary."""
from __future__ import annotations

import torch
from torch import nn

from .efficiency import efficiency_by_T
from .energy import EnergyModel
from .firing import record_activity

COUNT_SAMPLES = 64       # images the operation counts run on (counts are per sample)
ACTIVITY_SAMPLES = 512   # images the firing statistics run on


def counted_module(model: nn.Module) -> nn.Module:
    """The module whose layer names label the counts: a Student's traced graph (its conv/linear
    paths are the teacher's, so student and teacher layers line up), else the model itself."""
    return getattr(model, "graph_module", model)


def student_metrics(rule, reference: nn.Module, test_batches, T_list, T: int, energy: EnergyModel | None = None,
                    count_samples: int = COUNT_SAMPLES,
                    activity_samples: int = ACTIVITY_SAMPLES, convention: str = "exact") -> tuple[dict, dict | None]:
    """Summary keys of a spiking rule at window ``T`` (and SynOps/energy ratios at every ``T_list``
    window, SynOps counted in ``convention``), and its activity record (firing statistics, histograms,
    a raster; None when the rule's model is not a student that records spikes).

    Summary keys: synops_convention, synops_ratio, synops_ratio_by_convention, synops_per_sample,
    student_macs_per_sample, teacher_macs_per_sample, energy, synops_ratio_by_T, energy_ratio_by_T,
    ops_by_layer, layer_rates."""
    images = next(iter(test_batches))[0][:count_samples]
    was_training = rule.model.training
    rule.train(False)
    try:
        extra = efficiency_by_T(lambda x, t: rule.predict(x, t), counted_module(rule.model), reference, images, T_list,
                                T, energy, event_frames=getattr(rule.model, "encoding", None) == "frames",
                                convention=convention)
        activity = None
        if hasattr(rule.model, "run") and hasattr(rule.model, "neurons"):
            activity = record_activity(rule.model, test_batches, T, activity_samples)
            extra["layer_rates"] = {name: {"rate": s["rate"], "silent": s["silent"], "path": s["path"]}
                                    for name, s in activity["layers"].items()}
    finally:
        rule.train(was_training)
    return extra, activity


@torch.no_grad()
def layer_rates(student, images: torch.Tensor, T: int) -> dict[str, float]:
    """Mean firing rate (spikes per neuron per step) of every neuron layer on one batch."""
    layers = record_activity(student, [(images, None)], T, images.shape[0], 0)["layers"]
    return {name: s["rate"] for name, s in layers.items()}
