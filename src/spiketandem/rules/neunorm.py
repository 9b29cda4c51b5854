"""Neuron normalisation (NeuNorm; Wu et al., AAAI 2019, "Direct training for SNNs: faster, larger, better").

Each spatial position of a convolutional spiking layer gets one auxiliary neuron that integrates the
spikes of all F feature maps at that position,

    x[t] = k * x[t-1] + (v / F^2) * sum_f o_f[t],        x[-1] = 0,

and the next layer sees the normalised output  o[t] - alpha * x[t]  (alpha learnable, one weight per
neuron of the layer).  The layer is inserted into the student's graph right after the spiking layer,
so every use of the student (training, ``Student.forward``, operation counts) includes it.  alpha
starts at 0 (the network starts as plain STBP; the paper gives no initial value).
"""
from __future__ import annotations

import torch
from torch import nn

from ..neuron import TimeAware


def neunorm_trace(spikes: torch.Tensor, k: float, v: float) -> torch.Tensor:
    """The auxiliary neurons' states x[t] ``[T, B, 1, H, W]`` for spikes ``[T, B, F, H, W]``."""
    F_maps = spikes.shape[2]
    drive = spikes.sum(2, keepdim=True) * (v / F_maps ** 2)
    states, x = [], torch.zeros_like(drive[0])
    for t in range(spikes.shape[0]):
        x = k * x + drive[t]
        states.append(x)
    return torch.stack(states)


class NeuNorm(TimeAware):
    """out[t] = o[t] - alpha * x[t] for a layer whose spikes have per-sample shape ``(F, H, W)``; works on
    the student's folded ``[T*B, F, H, W]`` layout (T from the run context)."""

    def __init__(self, shape: tuple, k: float, v: float):
        super().__init__()
        self.k, self.v = float(k), float(v)
        self.alpha = nn.Parameter(torch.zeros(*shape))

    def extra_repr(self) -> str:
        return f"shape={tuple(self.alpha.shape)}, k={self.k:g}, v={self.v:g}"

    def normalise(self, spikes: torch.Tensor) -> torch.Tensor:
        """spikes [T, B, F, H, W] -> spikes - alpha * x."""
        return spikes - self.alpha * neunorm_trace(spikes, self.k, self.v)

    def forward(self, folded: torch.Tensor) -> torch.Tensor:
        spikes = folded.reshape(self.context().T, -1, *folded.shape[1:])
        return self.normalise(spikes).flatten(0, 1)


def install_neunorm(student, shapes: dict[str, tuple], k: float, v: float) -> dict[str, NeuNorm]:
    """Insert a NeuNorm after every spiking layer whose per-sample output is (F, H, W); returns them by name."""
    gm = student.graph_module
    installed = {}
    for node in list(gm.graph.nodes):
        name = node.target[len("neurons."):] if node.op == "call_module" and str(node.target).startswith("neurons.") else None
        if name is None or len(shapes.get(name, ())) != 3:
            continue
        installed[name] = NeuNorm(shapes[name], k, v)
        gm.add_submodule(f"neunorm.{name}", installed[name])
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(f"neunorm.{name}", (node,))
        node.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
    gm.graph.lint()
    gm.recompile()
    return installed
