"""Training the ANN teacher itself (cross-entropy, SGD with momentum): the `teacher` command."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import build_model
from .base import Rule


class ANNRule(Rule):
    name = "ann"
    needs_teacher = False
    spiking = False
    default_optimizer = "sgd"
    default_lr = 0.05
    default_weight_decay = 5e-4

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, None)
        self.model = build_model(cfg.arch, info.num_classes, info.in_channels, info.image_size, cfg.width, cfg.act_clip,
                                 cfg.act_levels)

    def loss(self, x, y, epoch):
        logits = self.model(x)
        return F.cross_entropy(logits, y), logits, {}

    @torch.no_grad()
    def predict(self, x, T=None):
        return self.model(x)
