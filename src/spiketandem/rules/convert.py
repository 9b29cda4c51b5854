"""ANN-to-SNN conversion: ``convert`` (no training) and ``qcfs`` (quantized ANN fine-tuned, then converted).

``convert`` (Rueckauer et al. 2017): the teacher's weights copied with BN folded, every ReLU replaced
by IF neurons (reset by subtraction) whose threshold and spike amplitude equal the ``--percentile``
of that layer's teacher activation on calibration images (99.9 by default; 100 is the maximum).  An
IF neuron driven by a constant current z fires at rate clamp(z / s, 0, 1) up to an error of 1/T, so
amplitude * rate approaches clamp(z, 0, s) as T grows.  Nothing is trained: run it with
``--epochs 0``.  ``--membrane-init 0.5`` starts every membrane at half the threshold, which turns
the flooring of the spike count into rounding (Bu et al. 2022).

``qcfs`` (Bu et al., ICLR 2022): the teacher's ReLUs are replaced by the quantization-clip-floor-shift
activation with a learnable scale lambda per layer,

    h(z) = lambda * clamp(floor(z * L / lambda + phi) / L, 0, 1),

the network is fine-tuned from the teacher's weights for ``--epochs`` (h is ``models.quantized.quantize_activation``
with a learnable scale; straight-through, dh/dz = 1 and dh/dlambda = (h - z)/lambda inside the clip
range, dh/dlambda = 1 above it), and then converted: threshold = amplitude = lambda, membranes start
at phi * lambda.  With constant input and T = L the IF rates then equal h exactly.  The paper trains
the QCFS network from scratch (``--init random`` here); by default it starts from the teacher, with
lambda initialised to the teacher's percentile.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpiketandemError
from .base import Rule, make_student
from .catalog import CATALOG
from .hybrid import require_if_neurons, run_hybrid
from ..models.quantized import MIN_CLIP, quantize_activation


class Convert(Rule):
    name = "convert"
    needs_teacher = True
    spiking = True
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher)
        self.require_teacher(teacher, "converts a trained teacher")
        require_if_neurons(cfg, self.name)
        if cfg.epochs != 0:
            raise SpiketandemError("rule convert trains nothing: pass --epochs 0 (to fine-tune a quantized ANN and "
                                   "then convert it, use --rule qcfs)")
        self.model = make_student(cfg, info, teacher, calibration, membrane_init=self.membrane_init())


class QCFS(Rule):
    name = "qcfs"
    needs_teacher = True
    spiking = True
    # Bu et al. train with SGD (lr 0.1 from scratch, weight decay 5e-4); from scratch here at 0.01.  Fine-tuning
    # the teacher's BN-folded weights (no normalisation left) needs 10x less: at 0.01 the folded ResNet-20 on
    # CIFAR-10 fell from 80 % to chance within 5 steps; at 1e-3 it held and improved (docs/results/cifar10-resnet20.md)
    default_optimizer = "sgd"
    default_lr = 0.01
    fine_tune_lr = 1e-3
    default_weight_decay = 5e-4
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    @classmethod
    def optimizer_settings(cls, cfg) -> dict:
        settings = super().optimizer_settings(cfg)
        if cfg.lr is None and cfg.init == "teacher":
            settings["lr"] = cls.fine_tune_lr
        return settings

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher)
        if cfg.init == "teacher":
            self.require_teacher(teacher, "fine-tunes the teacher", teacher_init=False,
                                 otherwise="; or --init random to train the QCFS network from scratch as Bu et al. do")
        require_if_neurons(cfg, self.name)
        self.model = make_student(cfg, info, teacher, calibration, membrane_init=self.membrane_init())
        # the learnable lambda of each layer, starting at the teacher's activation percentile; the
        # neurons' threshold and amplitude are kept equal to it, so the student is always the conversion
        self.scales = nn.ParameterDict({name: nn.Parameter(m.amplitude.detach().clone())
                                        for name, m in self.model.neurons.items()})

    def modules(self):
        return {"model": self.model, "scales": self.scales}

    def _sync_neurons(self) -> None:
        with torch.no_grad():
            for name, neuron in self.model.neurons.items():
                neuron.set_scale(self.scales[name].clamp_(min=MIN_CLIP))

    def loss(self, x, y, epoch):
        levels, shift = self.option("qcfs_levels"), self.option("qcfs_shift")
        modes = {name: ("ann", lambda z, s=self.scales[name]: quantize_activation(z, s, levels, shift))
                 for name in self.model.neurons}
        logits = run_hybrid(self.model, x, 1, modes)
        return F.cross_entropy(logits, y), logits, {}

    def train_step(self, x, y, optimizer, epoch):
        logs = super().train_step(x, y, optimizer, epoch)
        self._sync_neurons()
        return logs

    def membrane_init(self) -> float:
        return float(self.option("qcfs_shift"))
