"""The quantization-clip-floor-shift activation (QCFS; Bu et al., ICLR 2022), for teachers and ANN rules.

    h(z) = s * clamp(floor(z * L / s + phi) / L, 0, 1)

has L + 1 levels 0, s/L, ..., s: exactly what an IF neuron with threshold s, spike amplitude s and
initial membrane phi * s emits in T = L steps for a constant input current z.  A teacher whose
activations are h (``build_model(..., act_levels=L)``, ``spiketandem teacher --act-levels L``) is
therefore one a T-step student can match layer by layer: its LTL targets h / s are whole spike
counts over L, and its downstream layers were trained on such inputs.  The clip s of each layer
is learned; the floor passes gradients straight through (dh/dz = 1 on (0, s), 0 outside;
dh/ds = (h - z) / s inside the clip range, 1 above it, 0 below).
"""
from __future__ import annotations

import torch
from torch import nn

from ..percentile import percentile_of

MIN_CLIP = 1e-3  # s stays positive: it divides z


def quantize_activation(z: torch.Tensor, scale: torch.Tensor | float, levels: int, shift: float = 0.5) -> torch.Tensor:
    """q(z) = s * floor(clamp(z / s, 0, 1) * L + phi) / L: L + 1 levels 0, s/L, ..., s (phi = 1/2 rounds).

    For 0 <= phi < 1 this equals the QCFS activation s * clamp(floor(z L / s + phi) / L, 0, 1) of Bu et al.
    The gradient is that of s * clamp(z / s, 0, 1) (straight-through): dq/dz = 1 for 0 < z < s and 0
    outside; dq/ds = (q - z) / s inside, 1 above, 0 below."""
    clipped = (z / scale).clamp(0, 1)
    return scale * (clipped + (torch.floor(clipped * levels + shift) / levels - clipped).detach())


class QCFS(nn.Module):
    """h(z) = s * clamp(floor(z L / s + phi) / L, 0, 1) with a learnable clip s (``clip``), L ``levels``
    and shift phi (``shift``, 1/2 by default: rounding)."""

    def __init__(self, levels: int, clip: float, shift: float = 0.5):
        super().__init__()
        self.levels, self.shift = int(levels), float(shift)
        self.clip = nn.Parameter(torch.tensor(float(clip)))

    @property
    def scale(self) -> torch.Tensor:
        """The clip s in use: the learned ``clip``, kept >= MIN_CLIP (a student's threshold and amplitude)."""
        return self.clip.clamp(min=MIN_CLIP)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return quantize_activation(z, self.scale, self.levels, self.shift)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, clip={float(self.clip.detach()):.4g}, shift={self.shift}"


@torch.no_grad()
def calibrate_clips(model: torch.nn.Module, images: torch.Tensor, percentile: float, ceiling: float) -> None:
    """Each QCFS clip s_l, in forward order, set to the ``percentile`` of clamp(z_l, 0, ceiling) over ``images``,
    z_l its input with the layers before it already quantized at their clips (threshold balancing, layer by layer)."""
    order: list = []
    hooks = [m.register_forward_pre_hook(lambda m, args: order.append(m) if m not in order else None)
             for m in model.modules() if isinstance(m, QCFS)]
    was_training = model.training
    model.eval()
    try:
        model(images[:1])  # finds the forward order
        for module in order:
            seen: list = []
            hook = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].clamp(0, ceiling).flatten()))
            for chunk in images.split(256):
                model(chunk)
            hook.remove()
            module.clip.fill_(percentile_of(torch.cat(seen), percentile))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
