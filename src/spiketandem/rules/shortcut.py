"""Shortcut back-propagation (Guo et al., NeurIPS 2024, "Take a shortcut back").

Auxiliary heads take intermediate spiking layers straight to the loss, so shallow layers get a gradient
that does not pass through every deeper surrogate.  A head is global average pooling over space and
time of the layer's spikes followed by one Linear to the classes; heads live in the rule, not in the
student, so the inference graph is the plain student.  The loss at epoch e (0-based, of E) is

    L = CE(mean_t O[t], y) + lambda(e) * sum_k CE(head_k, y)

where the balance coefficient lambda moves the weight from the auxiliary losses to the main loss:
    linear:   lambda(e) = lambda0 * (1 - e / (E - 1))
    cosine:   lambda(e) = lambda0 * (1 + cos(pi * e / (E - 1))) / 2
    constant: lambda(e) = lambda0            (plain shortcut back-propagation)
(lambda(0) = lambda0; lambda(E-1) = 0 for linear and cosine.)  The paper's exact schedule is not
public in our sources, so both forms are offered; cosine is the default.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpiketandemError
from .catalog import CATALOG
from .direct import DirectRule, record_shapes


def balance_coefficient(epoch: int, epochs: int, schedule: str, start: float = 1.0) -> float:
    """lambda(e) of the module docstring."""
    if schedule == "constant" or epochs <= 1:
        return start
    progress = min(1.0, epoch / (epochs - 1))
    if schedule == "linear":
        return start * (1 - progress)
    return start * (1 + math.cos(math.pi * progress)) / 2


def stage_ends(shapes: dict[str, tuple]) -> list[str]:
    """Convolutional spiking layers that end a resolution stage (the next spiking layer has another
    spatial size, or none is convolutional): the usual places for shortcut branches."""
    names = list(shapes)
    ends = []
    for i, name in enumerate(names):
        if len(shapes[name]) != 3:
            continue
        following = shapes[names[i + 1]] if i + 1 < len(names) else None
        if following is None or len(following) != 3 or following[1:] != shapes[name][1:]:
            ends.append(name)
    return [n for n in ends if n != names[-1]]


class ShortcutHead(nn.Module):
    """Spikes [T, B, C, (H, W)] -> logits [B, classes]: mean over time and space, then Linear."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.linear = nn.Linear(channels, classes)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        pooled = spikes.mean(0)
        if pooled.dim() > 2:
            pooled = pooled.flatten(2).mean(2)
        return self.linear(pooled)


class Shortcut(DirectRule):
    name = "shortcut"
    paper_tdbn = True
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher, calibration)
        device = calibration.device if calibration is not None else torch.device("cpu")
        shapes = record_shapes(self.model, info, device)
        self.head_names = self._choose_layers(shapes)
        self.heads = nn.ModuleDict({n: ShortcutHead(shapes[n][0], info.num_classes) for n in self.head_names}).to(device)
        self.balance = balance_coefficient(0, cfg.epochs, self.option("shortcut_schedule"), self.option("shortcut_lambda"))

    def _choose_layers(self, shapes: dict) -> list[str]:
        spec = self.option("shortcut_layers").strip()
        names = list(shapes)
        if spec == "stages":
            chosen = stage_ends(shapes)
        elif spec == "all":
            chosen = names[:-1]
        else:
            chosen = [s.strip() for s in spec.split(",") if s.strip()]
            unknown = [s for s in chosen if s not in shapes]
            if unknown:
                raise SpiketandemError(f"--shortcut-layers: no spiking layer named {', '.join(unknown)}; the layers are "
                                       f"{', '.join(names)}")
        if not chosen:
            raise SpiketandemError(f"--shortcut-layers {spec!r} selects no layer of this architecture (spiking layers: "
                                   f"{', '.join(names)}); name some with --shortcut-layers NAME,NAME")
        return chosen

    def modules(self):
        return {"model": self.model, "heads": self.heads}

    def on_epoch_start(self, epoch):
        self.balance = balance_coefficient(epoch, self.cfg.epochs, self.option("shortcut_schedule"),
                                           self.option("shortcut_lambda"))

    def run_settings(self):
        return {"records": {}, "record_names": set(self.head_names)}

    def objective(self, out, ctx, y, epoch):
        scores = self.scores(out)
        main = self.main_loss(scores, y)
        aux = sum(F.cross_entropy(self.heads[n](ctx.records[n]), y) for n in self.head_names)
        return main + self.balance * aux, scores, {"main": float(main.detach()), "aux": float(aux.detach()),
                                                   "balance": self.balance}
