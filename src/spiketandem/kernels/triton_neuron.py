"""The CUDA kernels of the fused neuron, in Triton (same contract as ``cpu.py`` and ``torch_loop.py``).

One program owns ``BLOCK`` neurons and walks them through time with the state in registers.  Math runs
in float32 (loads are upcast, stores cast back to the tensor's dtype).  On a GPU the compiler may fuse
a multiply and an add, so a membrane that lands within one rounding of the threshold can spike
differently from the torch reference; on the CPU interpreter (``TRITON_INTERPRET=1``, used by the
tests) the arithmetic is the reference's.  Importing this module needs triton; ``ops.py`` imports it
only for CUDA tensors.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .codes import MASK, U_TRACE

BLOCK = 256


@triton.jit
def _surrogate(x, KIND: tl.constexpr, p):
    """The surrogate derivative g(x) on the normalised membrane (see surrogate.py)."""
    if KIND == 0:
        g = tl.where(tl.abs(x) < p / 2, 1.0 / p, 0.0)
    elif KIND == 1:
        sig = 1.0 / (1.0 + tl.exp(-p * x))
        g = p * sig * (1.0 - sig)
    elif KIND == 2:
        z = 1.5707963267948966 * p * x
        g = (p / 2) / (1.0 + z * z)
    elif KIND == 3:
        half = p / 2
        g = tl.maximum(1.0 - tl.abs(x) / half, 0.0) / half
    else:
        peak = p / (2.0 * (1.0 - 2.0 / (tl.exp(p) + 1.0)))    # b / (2 tanh(b/2)), tanh(y) = 1 - 2/(e^{2y}+1)
        c = 0.5 * (tl.exp(p * x) + tl.exp(-p * x))
        g = tl.where(tl.abs(x) <= 0.5, peak / (c * c), 0.0)
    return g


@triton.jit
def _forward(I, u0, s0, S, u_last, s_last, saved, steps, N, t_stride, a, theta, half_width,
             ZERO: tl.constexpr, SAVE: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    u = tl.load(u0 + offs, mask=m, other=0.0).to(tl.float32)
    s = tl.load(s0 + offs, mask=m, other=0.0).to(tl.float32)
    for t in range(0, steps):
        x = tl.load(I + t * t_stride + offs, mask=m, other=0.0).to(tl.float32)
        if ZERO:
            u = (a * u) * (1.0 - s) + x
        else:
            u = (a * u + x) - theta * s
        s = tl.where(u >= theta, 1.0, 0.0)
        tl.store(S + t * N + offs, s.to(S.dtype.element_ty), mask=m)
        if SAVE == 1:
            gate = tl.where(tl.abs((u - theta) / theta) < half_width, 1, 0)
            tl.store(saved + t * N + offs, (gate + 2 * s.to(tl.int32)).to(tl.uint8), mask=m)
        elif SAVE == 2:
            tl.store(saved + t * N + offs, u.to(saved.dtype.element_ty), mask=m)
    tl.store(u_last + offs, u.to(u_last.dtype.element_ty), mask=m)
    tl.store(s_last + offs, s.to(s_last.dtype.element_ty), mask=m)


@triton.jit
def _backward(gS, gU_last, gS_last, saved, gI, steps, N, a, theta, p,
              ZERO: tl.constexpr, DETACH: tl.constexpr, IS_MASK: tl.constexpr, KIND: tl.constexpr,
              STATIC: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < N
    e = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    box = 1.0 / p / theta
    for k in range(0, steps):
        t = steps - 1 - k
        g = tl.load(gS + t * N + offs, mask=m, other=0.0).to(tl.float32)
        if k == 0:
            g += tl.load(gS_last + offs, mask=m, other=0.0).to(tl.float32)
        v = tl.zeros([BLOCK], dtype=tl.float32)
        if IS_MASK:
            code = tl.load(saved + t * N + offs, mask=m, other=0).to(tl.int32)
            h = tl.where((code & 1) != 0, box, 0.0)
            sp = tl.where((code & 2) != 0, 1.0, 0.0)
        else:
            v = tl.load(saved + t * N + offs, mask=m, other=0.0).to(tl.float32)
            sp = tl.where(v >= theta, 1.0, 0.0)
            h = _surrogate((v - theta) / theta, KIND, p) / theta
        if not DETACH:
            if ZERO:
                g -= (a * v) * e
            else:
                g -= theta * e
        if ZERO:
            carry = a * (1.0 - sp) * e
        else:
            carry = a * e
        e = g * h + carry
        if k == 0:
            e += tl.load(gU_last + offs, mask=m, other=0.0).to(tl.float32)
        if STATIC:
            acc += e
        else:
            tl.store(gI + t * N + offs, e.to(gI.dtype.element_ty), mask=m)
    if STATIC:
        tl.store(gI + offs, acc.to(gI.dtype.element_ty), mask=m)


def forward(I, u0, s0, steps: int, is_static: bool, a: float, theta: float, zero: bool, save: int,
            half_width: float):
    N = u0.numel()
    S = torch.empty(steps, N, dtype=I.dtype, device=I.device)
    u_last, s_last = torch.empty_like(u0), torch.empty_like(s0)
    saved = (torch.empty(steps, N, dtype=torch.uint8, device=I.device) if save == MASK else
             torch.empty(steps, N, dtype=I.dtype, device=I.device) if save == U_TRACE else
             torch.empty(0, dtype=I.dtype, device=I.device))
    grid = (triton.cdiv(N, BLOCK),)
    _forward[grid](I, u0, s0, S, u_last, s_last, saved if save else S, steps, N, 0 if is_static else N,
                   a, theta, half_width, ZERO=zero, SAVE=save, BLOCK=BLOCK)
    return S, u_last, s_last, saved


def backward(gS, gU_last, gS_last, saved, is_static: bool, a: float, theta: float, zero: bool, detach: bool,
             kind: int, p: float, into_saved: bool = False):
    steps, N = gS.shape
    # into_saved: each program loads U[t] before it stores e[t] at the same place
    gI = saved if into_saved else torch.empty(N if is_static else (steps, N), dtype=gS.dtype, device=gS.device)
    grid = (triton.cdiv(N, BLOCK),)
    _backward[grid](gS, gU_last, gS_last, saved, gI, steps, N, a, theta, p, ZERO=zero, DETACH=detach,
                    IS_MASK=saved.dtype == torch.uint8, KIND=kind, STATIC=is_static, BLOCK=BLOCK)
    return gI

