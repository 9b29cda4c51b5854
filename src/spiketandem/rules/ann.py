"""Training the ANN teacher itself (cross-entropy, SGD with momentum): the `teacher` command.

    loss = CE_eps(logits, y) + P * cost

with P = ``--act-penalty`` (0 by default) and cost the share of the teacher's MACs a rate-coded
student spends per time step (``models/activation_cost.py``), logged as ``act_cost`` for every
clipped teacher; CE_eps is the cross-entropy with label smoothing eps = ``--label-smoothing`` (0 by
default: the plain cross-entropy)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models import activation_clip, build_model
from ..models.activation_cost import ActivationCost
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
        self.clip = activation_clip(cfg.arch, cfg.act_clip)

    def loss(self, x, y, epoch):
        if self.clip is None:
            logits = self.model(x)
            return F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing), logits, {}
        with ActivationCost(self.model, self.clip) as cost:
            logits = self.model(x)
        ce = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        loss = ce + self.cfg.act_penalty * cost.value if self.cfg.act_penalty else ce
        return loss, logits, {"ce": float(ce.detach()), "act_cost": float(cost.value.detach())}

    @torch.no_grad()
    def predict(self, x, T=None):
        return self.model(x)
