"""Offline Local Tandem Learning (LTL paper, Eq. 4-7).

Every neuron layer's output goes downstream detached, so each layer learns only from its own loss
    L_l = mean( (clamp(y_l / y_norm_l, 0, 1) - C_l[T] / T)^2 )
by BPTT through that layer's T steps, and the readout (the layers after the last neuron) from
cross-entropy on the mean output current (optionally plus distillation to the teacher's logits).
``--schedule parallel`` trains all layers at once; ``sequential`` trains one layer per stage of the
epoch budget (memory of one layer).  ``--bptt``: ``full`` (default) is true BPTT inside each layer;
``per-step`` detaches the state between steps (dL/dI[t] = dL/dS[t] s'(U[t]): step t's gradient flows
through step t's current only); ``printed`` is the paper's Eq. 6-7 as printed (the reset path through
delta, one step of the leak; ``neuron._PrintedEq67``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..student import TeacherTaps, activation_scales
from ..data.feeding import calibration_images
from .base import Rule, cross_entropy_with_kd, make_student
from .catalog import CATALOG
from .ltl_targets import LocalTargets


class LTLOffline(Rule):
    name = "ltl-offline"
    default_optimizer = "adam"
    default_lr = 1e-3
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher)
        self.require_teacher(teacher, "learns every layer from the teacher's activations", teacher_init=False)
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.model = make_student(cfg, info, teacher, calibration, membrane_init=self.membrane_init())
        device = next(teacher.parameters()).device
        self.taps = TeacherTaps(teacher, info.example_input(device=device))
        self.targets = LocalTargets(self.option("ynorm"), cfg.percentile,
                                    clips={i.name: i.ceiling for i in self.model.layers if i.levels is not None})
        self.active = [info.name for info in self.model.layers]

    def setup(self, data, device):
        """``--ynorm fixed``: y_norm of every layer measured once, on the first training images."""
        if self.targets.mode == "fixed":
            self.targets.fix(activation_scales(self.taps, calibration_images(data, device), self.cfg.percentile))
        return data

    def on_epoch_start(self, epoch: int) -> None:
        if self.option("schedule") == "parallel":
            return
        names = [info.name for info in self.model.layers]
        stage = min(len(names) - 1, epoch * len(names) // max(1, self.cfg.epochs))
        self.active = [names[stage]]
        for name in names:
            for p in self.model.layer_parameters(name):
                p.requires_grad_(name == names[stage])

    def on_distributed(self, comm) -> None:
        self.targets.gather = comm.gather_flat  # y_norm is the percentile of the global batch

    def readout_loss(self, logits, y, teacher_logits):
        """Cross-entropy at the readout, plus distillation with weight ``--kd``."""
        return cross_entropy_with_kd(logits, y, teacher_logits, self.option("kd"), self.option("kd_temperature"))

    def target(self, name: str, activation: torch.Tensor, T: int, update: bool = True) -> torch.Tensor:
        """clamp(y / y_norm, 0, 1), as a whole number of spikes out of T with ``--target-rounding``."""
        target = self.targets.target(name, activation, update)
        rounding = self.option("target_rounding") if self.option_named("target_rounding") else "none"  # ltl-online
        if rounding == "floor":
            return torch.floor(target * T) / T
        if rounding == "round":
            return torch.floor(target * T + 0.5) / T
        return target

    def local_losses(self, records: dict, acts: dict, update: bool = True) -> dict[str, torch.Tensor]:
        """L_l = mean((target_l - C_l[T] / T)^2) + rate_penalty * mean(C_l[T] / T) for each active layer
        (spikes ``[T, B, ...]``)."""
        # C/T as sum(0) / T rather than mean(0): the same value, but the backward of sum is a stride-0
        # expand that the fused neuron kernel reads in place; mean's backward writes a [T, B, ...] tensor
        penalty = self.option("rate_penalty")
        losses = {}
        for name in self.active:
            T = records[name].shape[0]
            rate = records[name].sum(0) / T
            losses[name] = F.mse_loss(rate, self.target(name, acts[name], T, update))
            if penalty:
                losses[name] = losses[name] + penalty * rate.mean()
        return losses

    def run_context(self, batch: int, record_names=None):
        """The context of one training forward, recording the active layers (or ``record_names``); the
        pipelined stages (``pipelining/``) run their segments of the student in it too."""
        return self.context(batch, detach=True, records={}, bptt=self.option("bptt"),
                            record_names=set(self.active if record_names is None else record_names))

    def loss(self, x, y, epoch):
        with torch.no_grad():
            teacher_logits, acts = self.taps(x)
        ctx = self.run_context(x.shape[0])
        logits = self.model.run(x, ctx).mean(0)
        local = self.local_losses(ctx.records, acts)
        ce = self.readout_loss(logits, y, teacher_logits)
        total = ce + sum(local.values())
        return total, logits, {"ce": float(ce.detach()), "local": float(sum(local.values()).detach())}

    def extra_state(self):
        return {"targets": self.targets.state_dict()}

    def load_extra_state(self, state):
        if "targets" in state:
            self.targets.load_state_dict(state["targets"])
