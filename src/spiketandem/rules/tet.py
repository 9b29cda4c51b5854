"""TET, temporal efficient training (Deng et al., ICLR 2022).

The loss acts on the output at every step instead of on its mean over time:

    L = (1 - lambda) * (1/T) sum_t CE(O[t], y)  +  lambda * (1/T) sum_t MSE(O[t], phi)

with phi = V_th = 1 (the MSE term keeps the outputs from drifting) and lambda = 1e-3 (the authors' code).
Prediction is from the mean output ``mean_t O[t]``, as in STBP.  BatchNorm over (T, B, H, W) is kept
by default (the paper's networks use it; ``--no-tdbn`` removes it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import SpiketandemError
from .catalog import CATALOG
from .direct import DirectRule


def tet_loss(out: torch.Tensor, y: torch.Tensor, lam: float, phi: float = 1.0) -> torch.Tensor:
    """(1 - lam) * mean_t CE(out[t], y) + lam * mean_t MSE(out[t], phi) for out [T, B, classes]."""
    T = out.shape[0]
    per_step_ce = F.cross_entropy(out.flatten(0, 1), y.repeat(T))  # mean over (t, b) = mean_t of per-step CE
    mse = ((out - phi) ** 2).mean()
    return (1 - lam) * per_step_ce + lam * mse


class TET(DirectRule):
    name = "tet"
    paper_tdbn = True
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher, calibration)
        if self.voting:
            raise SpiketandemError("tet acts on the output current at every step; drop --voting (a stbp option)")

    def objective(self, out, ctx, y, epoch):
        loss = tet_loss(out, y, self.option("tet_lambda"), self.option("tet_phi"))
        return loss, out.mean(0), {}
