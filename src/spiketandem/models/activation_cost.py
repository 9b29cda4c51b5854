"""The operations a rate-coded student of a teacher will spend, measured on the teacher itself.

A student that copies a clipped teacher emits, over T steps, about T * a / c spikes for a teacher
activation a with clip c (its neurons' threshold), and each spike reaching weight layer l costs that
layer's fan-out.  Weight layer l (a convolution or linear layer; M_l multiply-accumulates per image
over N_l inputs) therefore costs the student about T * M_l * mean(x_l / c_l) synaptic operations per
image, where x_l is its input and c_l the clip of the activation that produced it.  The share of the
teacher's MACs spent per time step is

    cost = sum_{l >= 2} M_l * mean(x_l / c_l) / sum_l M_l

c_l is the clip of the last activation run before layer l (``nn.Hardtanh(0, c)``: c; a QCFS activation:
its learned clip s, so that the cost is the rate h / s the student's neurons fire at, and its
gradient widens s rather than narrowing it), else the ``clip`` given.  In execution order that is the
producing activation for the zoo's VGGs and for ResNet-20 (whose shortcut convolution runs before the
block's first activation).

(the first weight layer's input is the analog image, counted as MACs in the standard convention, so
it is left out: no teacher can change it).  The student's standard SynOps ratio at window T is then
about (M_1 + T * cost * sum_l M_l) / sum_l M_l, exactly so for a rate code without pooling (every
non-zero input of a strided VGG is one spike event; docs/metrics.md).

``ActivationCost`` measures ``cost`` on every forward of a model, differentiably, so that a teacher
can be trained with ``cross-entropy + P * cost`` (``spiketandem teacher --act-penalty P``): a sparser
teacher whose students fire less, trained before any student exists.
"""
from __future__ import annotations

import torch
from torch import nn

from ..metrics.synops import conv_macs
from .quantized import QCFS


class ActivationCost:
    """``cost`` (module docstring) of the model's last forward, with its gradient.

    Use as a context (``with ActivationCost(model, clip) as cost: model(x); cost.value``); hooks every
    ``nn.Conv2d`` and ``nn.Linear`` of ``model`` while open, and every clipped activation (``nn.Hardtanh``,
    ``QCFS``) for its clip c_l.  ``clip`` is the bound used for a layer that no clipped activation precedes."""

    def __init__(self, model: nn.Module, clip: float):
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.model, self.clip = model, float(clip)
        self._hooks: list = []
        self._spent: list[torch.Tensor] = []
        self._macs = 0
        self._last_clip: torch.Tensor | float = self.clip

    def __enter__(self) -> "ActivationCost":
        def start(module, inputs):
            self._spent, self._macs, self._last_clip = [], 0, self.clip

        def activation(module, inputs, output):
            self._last_clip = module.max_val if isinstance(module, nn.Hardtanh) else module.scale

        def count(module, inputs, output):
            macs = conv_macs(inputs[0], module.weight, output)  # of the batch: the cost is a ratio
            if self._macs:  # not the first weight layer: its input is the image
                self._spent.append(macs * (inputs[0] / self._last_clip).mean())
            self._macs += macs

        self._hooks = [self.model.register_forward_pre_hook(start)]
        for m in self.model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                self._hooks.append(m.register_forward_hook(count))
            elif isinstance(m, (nn.Hardtanh, QCFS)):
                self._hooks.append(m.register_forward_hook(activation))
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @property
    def value(self) -> torch.Tensor:
        """The cost of the last forward (a scalar tensor that carries the gradient)."""
        if not self._macs:
            raise RuntimeError("ActivationCost: no forward has run through a weight layer")
        return torch.stack(self._spent).sum() / self._macs if self._spent else torch.zeros(())
