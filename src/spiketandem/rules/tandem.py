"""Tandem learning (Wu et al., IEEE TNNLS 2021).

One weight set serves two coupled networks.  The spiking path is the student: IF neurons, reset by
subtraction, the image as a constant input current, BN folded into the weights.  The ANN path of
layer l sees the previous layer's spike count and computes

    a_l = ReLU(W_l r_{l-1} + b_l),   r_{l-1} = amplitude_{l-1} * C_{l-1}[T] / T

and a custom gradient couples them: forward, layer l emits its spikes (so the next layer again sees
spike counts); backward, the gradient goes to a_l as if the layer had output a_l.  The loss is
cross-entropy on the readout current summed over the window, the paper's count-based output.

Units.  The paper counts spikes (threshold 1, bias b/T per step, ANN output ~ count); this library
uses rates (output amplitude * S[t], threshold = amplitude, bias b every step).  With amplitude 1 the
two are the same network with b_ours = b_paper / T and activations divided by T, a fixed
reparametrisation; the loss on the summed (not mean) readout keeps the paper's learning dynamics.

As in the paper the network is trained from scratch, with every layer's threshold and amplitude at the
paper's fixed threshold (``--threshold``, default 1) rather than the activation percentiles that
``build_student`` balances a random network to: those fit the initial activations tightly, and as
training widens them the spike rates saturate while the ANN path does not (digits, 3 epochs at T = 8:
0.68 with percentiles, 0.95 with 1).  A layer silent at initialisation still learns: its ANN gradient
does not depend on its spikes.  Unlike the paper, BN is folded once when the student is built and the
folded weights are trained (no batch statistics in the ANN path).  Reference recipe: Adam, lr 1e-3.
"""
from __future__ import annotations

import torch.nn.functional as F

from .base import Rule, make_student
from .hybrid import run_hybrid


class Tandem(Rule):
    name = "tandem"
    needs_teacher = False
    spiking = True
    default_optimizer = "adam"
    default_lr = 1e-3

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, None)
        self.model = make_student(cfg, info, None, calibration)
        self.model.set_scales({name: cfg.threshold for name in self.model.neurons})

    def loss(self, x, y, epoch):
        modes = {name: ("tandem", F.relu) for name in self.model.neurons}
        logits = run_hybrid(self.model, x, self.cfg.T, modes)
        # the paper's output is the readout current summed over the window (spike-count units)
        return F.cross_entropy(self.cfg.T * logits, y), logits, {}
