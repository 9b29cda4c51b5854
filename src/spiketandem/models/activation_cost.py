"""The operations a rate-coded student of a teacher will spend, measured on the teacher itself.

A student that copies a clipped teacher emits, over T steps, about T * a / c spikes for a teacher
activation a with clip c, and each spike reaching weight layer l costs that layer's fan-out.  Weight
layer l (a convolution or linear layer; M_l multiply-accumulates per image over N_l inputs) therefore
costs the student about T * M_l * mean(x_l / c) synaptic operations per image, where x_l is its
input.  The share of the teacher's MACs spent per time step is

    cost = sum_{l >= 2} M_l * mean(x_l / c) / sum_l M_l

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


class ActivationCost:
    """``cost`` (module docstring) of the model's last forward, with its gradient.

    Use as a context (``with ActivationCost(model, clip) as cost: model(x); cost.value``); hooks every
    ``nn.Conv2d`` and ``nn.Linear`` of ``model`` while open.  ``clip`` is the activation's bound c (for a
    QCFS teacher its initial clip ``--act-clip``: the learned clips stay near it)."""

    def __init__(self, model: nn.Module, clip: float):
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.model, self.clip = model, float(clip)
        self._hooks: list = []
        self._spent: list[torch.Tensor] = []
        self._macs = 0

    def __enter__(self) -> "ActivationCost":
        def start(module, inputs):
            self._spent, self._macs = [], 0

        def count(module, inputs, output):
            macs = conv_macs(inputs[0], module.weight, output)  # of the batch: the cost is a ratio
            if self._macs:  # not the first weight layer: its input is the image
                self._spent.append(macs * inputs[0].mean() / self.clip)
            self._macs += macs

        self._hooks = [self.model.register_forward_pre_hook(start)]
        self._hooks += [m.register_forward_hook(count) for m in self.model.modules()
                        if isinstance(m, (nn.Conv2d, nn.Linear))]
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
