"""Threshold-dependent batch normalisation (tdBN; Zheng et al., AAAI 2021).

For a pre-synaptic current x of one channel, over all time steps, samples and positions:

    y = lambda * (alpha * V_th * (x - E[x]) / sqrt(Var[x] + eps)) + beta

with E and Var taken over (T, B, H, W).  A student built with ``keep_batchnorm=True`` already runs its
BatchNorm layers on the folded ``[T*B, C, H, W]`` batch, so their statistics are exactly tdBN's; this
module adds the ``alpha * V_th`` scale (``lambda`` and ``beta`` are the usual BN weight and bias).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ThresholdBatchNorm(nn.Module):
    """tdBN on ``[N, C, ...]`` inputs, N = T*B folded (statistics over every dim but C)."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, threshold: float, alpha: float = 1.0):
        super().__init__()
        self.num_features, self.eps, self.momentum = bn.num_features, bn.eps, bn.momentum
        self.scale = float(alpha) * float(threshold)
        self.weight = nn.Parameter(bn.weight.detach().clone() if bn.affine else torch.ones(bn.num_features))
        self.bias = nn.Parameter(bn.bias.detach().clone() if bn.affine else torch.zeros(bn.num_features))
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())

    def extra_repr(self) -> str:
        return f"{self.num_features}, scale=alpha*V_th={self.scale:g}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (lambda * alpha * V_th) * x_hat + beta: the scale folds into BN's affine weight
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight * self.scale, self.bias,
                            self.training, self.momentum, self.eps)


def install_tdbn(student, threshold: float, alpha: float = 1.0) -> int:
    """Replace every (kept) BatchNorm of ``student`` by tdBN; returns how many were replaced."""
    gm = student.graph_module
    targets = [name for name, m in gm.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for name in targets:
        gm.add_submodule(name, ThresholdBatchNorm(gm.get_submodule(name), threshold, alpha))
    return len(targets)
