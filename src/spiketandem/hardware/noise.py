"""The four device non-idealities of the LTL paper (Sec. 3.5), after the DYNAP-SE models of Buchel et al.

Each is a pure function of a tensor, a level and a random generator, so that its statistics can be
tested directly; ``Chip`` (chip.py) composes them on a student.

    mismatch      theta' = theta + sigma |theta| eps,  eps ~ N(0, 1)     frozen per chip (and per update)
    quantization  W_q = lo + D round((W - lo) / D),  D = (hi - lo) / (2^k - 1)   ("minmax", 2^k levels)
                  W_q = D clamp(round(W / D), -m, m),  D = max|W| / m, m = 2^(k-1) - 1   ("symmetric")
    thermal       I' = I + sigma |I| eps                                 fresh eps at every step
    silencing     S' = S * mask,  mask = 0 for a fraction p of the neurons  (fixed per chip, or per step)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..choices import NOISE_KINDS as KINDS, NOISE_PAPER_LEVELS as PAPER_LEVELS, QUANT_MODES, SILENCE_MODES  # noqa: F401
from ..errors import SpiketandemError

# a physical threshold or time constant cannot change sign: mismatch factors are floored here
MIN_FACTOR = 0.05


@dataclass(frozen=True)
class NoiseSpec:
    """One non-ideality at one level.  ``mode``: quantization "minmax" (default) or "symmetric";
    silencing "step" (a fresh random set of failing neurons at every step and sample, as the authors'
    code) or "fixed" (a set of dead neurons frozen per chip)."""

    kind: str
    level: float
    mode: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise SpiketandemError(f"noise kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if isinstance(self.level, bool) or not isinstance(self.level, (int, float)) or not math.isfinite(self.level):
            raise SpiketandemError(f"noise level (--levels) must be a finite number, got {self.level!r}")
        if self.kind == "quantization":
            if self.level != int(self.level) or not 2 <= self.level <= 16:
                raise SpiketandemError(f"quantization level is a bit width, an integer in 2..16; got {self.level}")
            if (self.mode or "minmax") not in QUANT_MODES:
                raise SpiketandemError(f"quantization mode {self.mode!r} is not one of {', '.join(QUANT_MODES)}")
        elif self.kind == "silencing":
            if not 0 <= self.level < 1:
                raise SpiketandemError(f"silencing level is the fraction of failing neurons, in [0, 1); got {self.level}")
            if (self.mode or "step") not in SILENCE_MODES:
                raise SpiketandemError(f"silencing mode {self.mode!r} is not one of {', '.join(SILENCE_MODES)}")
        elif self.level < 0:
            raise SpiketandemError(f"{self.kind} level sigma must be >= 0; got {self.level}")

    @property
    def resolved_mode(self) -> str | None:
        return self.mode or {"quantization": "minmax", "silencing": "step"}.get(self.kind)


def gaussian(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn on the CPU generator (reproducible on any device)."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def mismatch(theta: torch.Tensor, sigma: float, generator: torch.Generator, positive: bool = False) -> torch.Tensor:
    """theta' ~ N(theta, sigma |theta|) elementwise.  ``positive``: the factor 1 + sigma eps is floored
    at MIN_FACTOR (thresholds and time constants keep their sign)."""
    factor = 1 + sigma * gaussian(theta, generator)
    if positive:
        factor = factor.clamp_min(MIN_FACTOR)
    return theta * factor


def quantize(w: torch.Tensor, bits: int, mode: str = "minmax") -> torch.Tensor:
    """Uniform k-bit quantization of one layer's weights (see the module docstring for both modes)."""
    bits = int(bits)
    if mode == "minmax":
        lo, hi = w.min(), w.max()
        step = (hi - lo) / (2 ** bits - 1)
        if float(step) == 0:
            return w.clone()
        return lo + step * torch.round((w - lo) / step)
    m = 2 ** (bits - 1) - 1
    step = w.abs().max() / m
    if float(step) == 0:
        return w.clone()
    return step * torch.clamp(torch.round(w / step), -m, m)


def thermal(current: torch.Tensor, sigma: float, generator: torch.Generator, straight_through: bool = False):
    """I' ~ N(I, sigma |I|), fresh at every call.  ``straight_through``: the value is noisy, the gradient
    that of the noiseless current (dI'/dI = 1; the HIL host's ideal model)."""
    noise = sigma * current.abs() * gaussian(current, generator)
    return current + (noise.detach() if straight_through else noise)


def fixed_silence_mask(shape, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A 0/1 mask over one layer's neurons ``shape`` with exactly round(fraction * N) zeros (dead neurons)."""
    n = 1
    for s in shape:
        n *= int(s)
    dead = torch.randperm(n, generator=generator)[:int(round(fraction * n))]
    mask = torch.ones(n)
    mask[dead] = 0
    return mask.reshape(tuple(shape))


def step_silence_mask(like: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A 0/1 mask shaped like the spikes: each neuron fails independently with probability ``fraction``
    at every step and sample."""
    keep = torch.rand(like.shape, generator=generator) >= fraction
    return keep.to(like.dtype).to(like.device)


def silence(spikes: torch.Tensor, mask: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
    """S' = S * mask; ``straight_through``: the gradient as if every neuron were alive (HIL's ideal model)."""
    out = spikes * mask
    return spikes + (out - spikes).detach() if straight_through else out
