"""Quantized ANN baseline (the "quantized ANN" curve of the LTL paper's Fig. 2a).

The teacher (BN folded) with every ReLU replaced by a T-level quantizer of its activation,

    q(z) = s * floor(clamp(z / s, 0, 1) * T + 1/2) / T    (clip to [0, s], round to T + 1 levels 0, s/T, ..., s)

trained from the teacher's weights by a straight-through estimator (dq/dz = 1 on (0, s), 0 outside).
The scale s of each layer is the ``--percentile`` of its teacher activation, i.e. the threshold and
spike amplitude a converted IF layer would get: q is the most a rate code with T steps can express,
so the curve is the upper bound a T-step SNN is measured against.  Evaluated as an ANN at T levels
(``spiking = False``); compare runs at different ``--T``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.quantized import quantize_activation
from .base import Rule, make_student
from .hybrid import run_hybrid


class QAT(Rule):
    name = "qat"
    needs_teacher = True
    spiking = False
    default_optimizer = "adam"
    default_lr = 1e-4

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher)
        self.require_teacher(teacher, "fine-tunes the teacher's weights", teacher_init=False)
        self.model = make_student(cfg, info, teacher, calibration)

    def modes(self, levels: int) -> dict:
        return {name: ("ann", lambda z, s=neuron.amplitude: quantize_activation(z, s, levels))
                for name, neuron in self.model.neurons.items()}

    def loss(self, x, y, epoch):
        logits = run_hybrid(self.model, x, 1, self.modes(self.cfg.T))
        return F.cross_entropy(logits, y), logits, {}

    @torch.no_grad()
    def predict(self, x, T=None):
        """The quantized ANN's scores with T levels per activation (default: the training T)."""
        return run_hybrid(self.model, x, 1, self.modes(T or self.cfg.T))
