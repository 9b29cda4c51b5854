"""On-chip calibration of a trained student, and the hardware-in-the-loop (HIL) baseline.

Both start from the same trained student imprinted on the same chip and get the same budget (epochs,
optimizer, learning rate, data); both run through the shared training loop ``train.fit``, whose
per-epoch test accuracy is measured on the chip.

- ``ltl``: online LTL (rules/ltl_online.py) on the noisy student: every layer learns from its local
  loss against the unchanged teacher targets, computed from the chip's own (noisy) spikes; updates land
  through the chip's write mismatch; quantized weights learn through a straight-through estimator.
  ``onchip_gate`` uses the rule's gated form sign(error) x boxcar(U).
- ``hil`` (Cramer et al. 2022): the forward pass runs on the chip; the host backpropagates the global
  cross-entropy through an ideal model fed with the chip's values: BPTT through the neuron equations
  with the chip's membrane potentials and spikes, the noise injections passed straight through
  (dead neurons and current noise are invisible to the host's gradient).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..errors import SpiketandemError
from ..rules.base import Rule
from ..rules.ltl_online import LTLOnline
from ..rules.wrapper import RuleWrapper
from ..choices import CALIBRATION_METHODS as METHODS
from ..data.feeding import evaluation_batches
from ..student import Student
from ..train import evaluate, fit
from .chip import Chip


class OnChip(RuleWrapper):
    """Lets ``fit``/``evaluate`` train and score a rule's student as it runs on a chip: the rule's updates land
    through the chip's writes, and its forwards carry the chip's noise hooks."""

    def __init__(self, inner: Rule, chip: Chip):
        super().__init__(inner)
        self.chip = chip
        self.name = f"{inner.name}@chip"

    def setup(self, data, device):
        return data  # the inner rule was set up when it was trained; calibration starts from its state

    def train_step(self, x, y, optimizer, epoch):
        return self.inner.train_step(x, y, self.chip.writes(optimizer), epoch)

    def context(self, batch, T=None, **fields):
        return self.chip.context(self.model, T or self.cfg.T, batch, **fields)

    @torch.no_grad()
    def predict(self, x, T=None):
        return self.chip.predict(self.model, x, T or self.cfg.T)


class HIL(Rule):
    """Hardware-in-the-loop training: chip forward, ideal-model backward, global cross-entropy."""

    name = "hil"
    needs_teacher = False

    def __init__(self, cfg, info, student: Student, chip: Chip):
        super().__init__(cfg, info)
        self.model, self.chip = student, chip

    def loss(self, x, y, epoch):
        logits = self.chip.run(self.model, x, self.cfg.T, straight_through=True).mean(0)
        loss = F.cross_entropy(logits, y)
        return loss, logits, {}


def calibration_rule(method: str, trained: Rule, chip: Chip, cfg, info, calibration_images, onchip_gate=False) -> Rule:
    """The rule that calibrates ``trained``'s student on ``chip`` (a fresh imprinted copy; ``trained``
    is left untouched)."""
    if method not in METHODS:
        raise SpiketandemError(f"calibration method {method!r} is not one of {', '.join(METHODS)}")
    if not isinstance(getattr(trained, "model", None), Student):
        raise SpiketandemError(f"the run's rule {trained.name!r} has no spiking student; noise applies to spiking runs")
    if method == "hil":
        student = chip.imprint(copy.deepcopy(trained.model))
        for p in student.parameters():
            p.requires_grad_(True)
        return HIL(cfg, info, student, chip)
    if trained.teacher is None:
        raise SpiketandemError(f"LTL calibration needs the run's teacher, but rule {trained.name!r} trained without "
                               "one; calibrate with --method hil, or use a run of an LTL-style rule")
    options = {**cfg.options, "onchip_gate": bool(onchip_gate)}
    options = {k: v for k, v in options.items() if LTLOnline.option_named(k) is not None}  # e.g. drop --schedule
    online_cfg = cfg.replace(rule="ltl-online", options=options, surrogate="boxcar" if onchip_gate else cfg.surrogate)
    online = LTLOnline(online_cfg, info, trained.teacher, calibration_images)
    online.model.to(calibration_images.device)
    online.model.load_state_dict(trained.model.state_dict())
    online.load_extra_state({"targets": trained.extra_state().get("targets", online.targets.state_dict())})
    chip.imprint(online.model)
    currents, outputs = chip.hooks(online.model)
    online.current_hooks, online.output_hooks = currents, outputs
    return online


def chip_accuracy(rule: Rule, chip: Chip, data, cfg, device) -> float:
    """Test accuracy of ``rule``'s student running on ``chip`` at the run's T."""
    return evaluate(OnChip(rule, chip), evaluation_batches(data, cfg, device), [cfg.T])[cfg.T]


def uncalibrated_accuracy(trained: Rule, chip: Chip, cfg, info, data, device, calibration_images) -> float:
    """Test accuracy of ``trained``'s student imprinted (a copy) on ``chip``, without calibration."""
    return chip_accuracy(calibration_rule("hil", trained, chip, cfg, info, calibration_images), chip, data, cfg, device)


def calibrate(method: str, trained: Rule, chip: Chip, cfg, info, data, device, calibration_images, *, epochs: int,
              lr: float | None = None, onchip_gate: bool = False, log=lambda *a, **k: None) -> dict:
    """Imprint ``trained`` on ``chip`` and calibrate it for ``epochs`` epochs by ``method``.

    Returns {"before": accuracy on the chip before calibration, "epochs": [accuracy after each epoch]}.
    """
    rule = calibration_rule(method, trained, chip, cfg, info, calibration_images, onchip_gate)
    train_cfg = rule.cfg.replace(epochs=epochs, lr=lr if lr is not None else (cfg.lr or 1e-3),
                                 lr_schedule="constant", progress=False, tensorboard=False)
    rule.cfg = train_cfg
    chipped = OnChip(rule, chip)
    before = chip_accuracy(rule, chip, data, train_cfg, device)
    rows = fit(chipped, train_cfg, data, device, log=log, label=f"{method} on {chip!r}").rows  # in memory
    return {"before": before, "epochs": [row["test_acc"] for row in rows]}
