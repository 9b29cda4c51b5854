"""The fused neuron's kernels as a plain torch loop over time (CPU fallback when C++ cannot be built).

Same contract and the same operation order as the C++ and Triton kernels (see ``spiketandem.kernels``
for the recursions): outputs are preallocated and written step by step in place, and backward saves
nothing beyond what forward left in ``saved``.
"""
from __future__ import annotations

import torch

from ..surrogate import Surrogate
from .codes import MASK, SURROGATE_NAMES, U_TRACE


def forward(I: torch.Tensor, u0: torch.Tensor, s0: torch.Tensor, steps: int, is_static: bool, a: float, theta: float,
            zero: bool, save: int, half_width: float):
    """Returns (S [T, N], U[T-1], S[T-1], saved) exactly like the compiled kernel."""
    N = u0.numel()
    S = torch.empty(steps, N, dtype=I.dtype, device=I.device)
    mask = torch.empty(steps, N, dtype=torch.uint8, device=I.device) if save == MASK else None
    U = torch.empty(steps, N, dtype=I.dtype, device=I.device) if save == U_TRACE else None
    a_, th = torch.tensor(a, dtype=I.dtype), torch.tensor(theta, dtype=I.dtype)
    u, s = u0.clone(), s0.clone()
    for t in range(steps):
        current = I if is_static else I[t]
        u = (a_ * u) * (1 - s) + current if zero else (a_ * u + current) - th * s
        s = (u >= th).to(I.dtype)
        S[t] = s
        if mask is not None:
            mask[t] = ((u - th) / th).abs().lt(half_width).to(torch.uint8) + 2 * s.to(torch.uint8)
        if U is not None:
            U[t] = u
    saved = mask if mask is not None else U if U is not None else torch.empty(0, dtype=I.dtype, device=I.device)
    return S, u, s, saved


def backward(gS: torch.Tensor, gU_last: torch.Tensor, gS_last: torch.Tensor, saved: torch.Tensor, is_static: bool,
             a: float, theta: float, zero: bool, detach: bool, kind: int, p: float,
             into_saved: bool = False) -> torch.Tensor:
    """dL/dI by the reverse recursion of ``spiketandem.kernels`` (summed over time when ``is_static``);
    ``into_saved`` writes it over the saved membrane (each U[t] is read before e[t] replaces it)."""
    steps, N = gS.shape
    if into_saved:
        gI = saved
    else:
        gI = torch.zeros(N, dtype=gS.dtype, device=gS.device) if is_static else torch.empty_like(gS)
    surrogate = Surrogate(SURROGATE_NAMES[kind], p)
    e = torch.zeros(N, dtype=gS.dtype, device=gS.device)
    for t in range(steps - 1, -1, -1):
        g = gS[t] + gS_last if t == steps - 1 else gS[t].clone()
        if saved.dtype == torch.uint8:
            h = (saved[t] & 1).to(gS.dtype) * (1 / p / theta)
            sp = (saved[t] >> 1).to(gS.dtype)
            v = None
        else:
            v = saved[t].clone() if into_saved else saved[t]
            sp = (v >= theta).to(gS.dtype)
            h = surrogate.derivative((v - theta) / theta) / theta
        if not detach:
            g = g - ((a * v) * e if zero else theta * e)
        carry = a * (1 - sp) * e if zero else a * e
        e = g * h + carry
        if t == steps - 1:
            e = e + gU_last
        if is_static:
            gI += e
        else:
            gI[t] = e
    return gI
