"""Surrogate gradients for the Heaviside spike function, one definition each.

All surrogates act on the threshold-normalised membrane ``x = (U - theta) / theta``, so a width
means the same thing in every layer whatever its threshold; with ``theta = 1`` the boxcar is
exactly Eq. 8 of the LTL paper: ``dS/dU = (1/p) * 1[|U - theta| < p/2]``.  Every derivative below
integrates to 1 over x (so the surrogate is a smoothed Dirac delta).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .choices import SURROGATES  # declared torch-free for the command line
from .errors import SpiketandemError


def _boxcar(x: torch.Tensor, p: float) -> torch.Tensor:
    """(1/p) * 1[|x| < p/2]  (LTL Eq. 8)."""
    return (x.abs() < p / 2).to(x.dtype) / p


def _sigmoid(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * sig(alpha x) * (1 - sig(alpha x)), the derivative of sig(alpha x)."""
    sig = torch.sigmoid(alpha * x)
    return alpha * sig * (1 - sig)


def _atan(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """(alpha/2) / (1 + (pi/2 * alpha * x)^2), the derivative of atan(pi/2 alpha x)/pi + 1/2."""
    return (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2)


def _triangle(x: torch.Tensor, width: float) -> torch.Tensor:
    """(2/w) * max(0, 1 - |x| / (w/2)): a triangle of base w and area 1."""
    half = width / 2
    return torch.clamp(1 - x.abs() / half, min=0) / half


def _dspike(x: torch.Tensor, b: float) -> torch.Tensor:
    """Dspike (Li et al. 2021): b / (2 tanh(b/2)) * sech^2(b x) for |x| <= 1/2, else 0."""
    peak = b / (2 * math.tanh(b / 2))
    return torch.where(x.abs() <= 0.5, peak / torch.cosh(b * x) ** 2, torch.zeros_like(x))


# one derivative per name of choices.SURROGATES (tests/test_cli_declarations.py checks they agree)
_DERIVATIVES = {"boxcar": _boxcar, "sigmoid": _sigmoid, "atan": _atan, "triangle": _triangle, "dspike": _dspike}
DEFAULT_PARAM = {"boxcar": 1.0, "sigmoid": 4.0, "atan": 2.0, "triangle": 1.0, "dspike": 3.0}


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate and its shape parameter (boxcar/triangle: width p; sigmoid/atan: slope; dspike: b)."""

    name: str = "boxcar"
    param: float | None = None

    def __post_init__(self):
        if self.name not in _DERIVATIVES:
            raise SpiketandemError(f"unknown surrogate {self.name!r}; choose one of {', '.join(SURROGATES)}")
        if self.param is None:
            object.__setattr__(self, "param", DEFAULT_PARAM[self.name])
        if not self.param > 0:
            raise SpiketandemError(f"surrogate parameter must be > 0, got {self.param}")

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate dS/dx at normalised membrane x = (U - theta) / theta."""
        return _DERIVATIVES[self.name](x, self.param)


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, threshold, surrogate):
        ctx.save_for_backward(u, threshold)
        ctx.surrogate = surrogate
        return (u >= threshold).to(u.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        u, threshold = ctx.saved_tensors
        # dS/dU = g((U - theta)/theta) / theta  (chain rule through the normalisation)
        grad_u = grad_out * ctx.surrogate.derivative((u - threshold) / threshold) / threshold
        return grad_u, None, None


def spike(u: torch.Tensor, threshold: torch.Tensor | float, surrogate: Surrogate) -> torch.Tensor:
    """S = H(U - theta) forward; surrogate gradient backward. The threshold gets no gradient."""
    if not torch.is_tensor(threshold):
        threshold = torch.tensor(threshold, dtype=u.dtype, device=u.device)
    return _SpikeFunction.apply(u, threshold.to(u.dtype), surrogate)
