"""Operation counting for any model: dense MACs of an ANN, synaptic operations (SynOps) of an SNN.

Convolutions and matrix products are intercepted with a ``TorchDispatchMode``, so any architecture
is counted without per-layer code.  For each op:

- an input whose non-zero entries all share one magnitude is a spike tensor (spikes times a layer's
  amplitude): every non-zero input triggers one accumulate (AC) per synapse it feeds, counted exactly
  as ``conv(1[x != 0], ones)`` summed (so padding and stride are exact) or ``nnz(x) * out_features``;
- any other input (an analog image) costs one multiply-accumulate (MAC) per synapse, dense.

A layer that sees the constant analog input runs once per inference in spiketandem's students (its
current is held for all T steps), and is counted once.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def is_spike_tensor(x: torch.Tensor) -> bool:
    """True when every non-zero entry has the same magnitude (binary spikes, possibly scaled)."""
    nz = x[x != 0]
    return nz.numel() == 0 or bool((nz.abs() == nz.abs()[0]).all())


def conv_synapses(mask: torch.Tensor, weight_shape, stride, padding, dilation, groups) -> int:
    """Sum over non-zero inputs of the synapses they drive: conv(mask, ones) summed, times out/group."""
    out_channels, in_per_group = weight_shape[0], weight_shape[1]
    ones = torch.ones(groups, in_per_group, *weight_shape[2:], dtype=mask.dtype, device=mask.device)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(weight_shape) - 2]
    per_position = conv(mask, ones, None, stride, padding, dilation, groups)  # [N, groups, ...]
    return int(per_position.sum().item()) * (out_channels // groups)


@dataclass
class OpCounts:
    macs: dict = field(default_factory=lambda: defaultdict(int))    # layer -> dense MACs
    synops: dict = field(default_factory=lambda: defaultdict(int))  # layer -> ACs triggered by spikes

    def total_macs(self) -> int:
        return sum(self.macs.values())

    def total_synops(self) -> int:
        return sum(self.synops.values())


class _Counter(TorchDispatchMode):
    def __init__(self, counts: OpCounts):
        super().__init__()
        self.counts = counts
        self.layer = "?"

    def _add(self, x: torch.Tensor, dense: int, sparse) -> None:
        if is_spike_tensor(x):
            self.counts.synops[self.layer] += sparse()
        else:
            self.counts.macs[self.layer] += dense

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is aten.convolution.default:
            x, w = args[0], args[1]
            stride, padding, dilation, transposed, _, groups = args[3:9]
            if not transposed:
                dense = out.numel() * w[0].numel()
                self._add(x, dense, lambda: conv_synapses((x != 0).to(x.dtype), w.shape, stride, padding, dilation, groups))
        elif func in (aten.addmm.default, aten.mm.default):
            x, w = (args[1], args[2]) if func is aten.addmm.default else (args[0], args[1])
            dense = x.shape[0] * x.shape[1] * w.shape[1]
            self._add(x, dense, lambda: int((x != 0).sum().item()) * w.shape[1])
        return out


@torch.no_grad()
def count_ops(fn, *args, named: nn.Module | None = None, **kwargs) -> tuple[OpCounts, object]:
    """Run ``fn(*args)`` once (a model or any function), counting MACs and SynOps; ops are attributed
    to the conv/linear layers of ``named`` (default: ``fn`` itself when it is a module)."""
    counts = OpCounts()
    counter = _Counter(counts)
    hooks = []
    named = named if named is not None else (fn if isinstance(fn, nn.Module) else nn.Module())
    for name, module in named.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: setattr(counter, "layer", n)))
    try:
        with counter:
            out = fn(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return counts, out
