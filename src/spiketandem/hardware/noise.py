"""The four device non-idealities of the LTL paper (Sec. 3.5), after the DYNAP-SE models of Buchel et al.

Each is a pure function of a tensor, a level and a random generator, so that its statistics can be
tested directly; ``Chip`` (chip.py) composes them on a student.

    mismatch      theta' = theta + sigma |theta| eps,  eps ~ N(0, 1)     frozen per chip (and per update)
    quantization  W_q = lo + D round((W - lo) / D),  D = (hi - lo) / (2^k - 1)   ("minmax", 2^k levels)
                  W_q = D clamp(round(W / D), -m, m),  D = max|W| / m, m = 2^(k-1) - 1   ("symmetric")
    thermal       I' = I + sigma |I| eps                                 fresh eps at every step
    silencing     S' = S * mask,  mask = 0 for a fraction p of the neurons  (fixed per chip, or per step)

Each kind (``choices.NOISE_KINDS``) is one :class:`NoiseKind` in ``NOISE_MODELS``: its level check and the
places it acts (a student's parameters, each step's currents or spikes, the optimizer's writes), which
``Chip`` asks of every spec it holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

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
        model = NOISE_MODELS[self.kind]
        problem = model.check(self.level)
        if problem:
            raise SpiketandemError(problem)
        if model.modes and (self.mode or model.modes[0]) not in model.modes:
            raise SpiketandemError(f"{self.kind} mode {self.mode!r} is not one of {', '.join(model.modes)}")

    @property
    def resolved_mode(self) -> str | None:
        return self.mode or next(iter(NOISE_MODELS[self.kind].modes), None)


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


class QuantizedWeight(nn.Module):
    """Parametrization W -> Q_k(W) + (W - W.detach()): the forward sees exactly the k-bit weight, the
    gradient reaches the float weight unchanged (straight-through estimator, quantization-aware training)."""

    def __init__(self, bits: int, mode: str):
        super().__init__()
        self.bits, self.mode = int(bits), mode

    def forward(self, w):
        return quantize(w.detach(), self.bits, self.mode) + (w - w.detach())


class MismatchedWrites:
    """Wraps an optimizer: after each step, theta <- theta_old + dtheta * (1 + sigma eps), eps ~ N(0, 1)
    fresh for every element and step (the paper perturbs parameter updates like the parameters)."""

    def __init__(self, optimizer, sigma: float, generator: torch.Generator):
        self.optimizer, self.sigma, self.generator = optimizer, sigma, generator

    @property
    def param_groups(self):
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self):
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        before = [p.detach().clone() for p in params]
        self.optimizer.step()
        for p, old in zip(params, before):
            p.copy_(old + mismatch(p - old, self.sigma, self.generator))


# ---- where each kind acts: Chip asks the kind of each of its specs --------------------------------

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


class NoiseKind:
    """One non-ideality: its level in words (the sweep table's column), its modes (the first the default), its
    level check, and where it acts.  The base acts nowhere; a kind overrides the places it acts.  ``chip``
    is the :class:`~.chip.Chip` asking (its generators and caches), ``spec`` the kind's ``NoiseSpec``."""

    name = ""
    label = ""
    modes: tuple[str, ...] = ()

    def check(self, level: float) -> str | None:
        """Why ``level`` is no level of this kind (None when it is one): by default a sigma >= 0."""
        return None if level >= 0 else f"{self.name} level sigma must be >= 0; got {level}"

    def imprint(self, spec: NoiseSpec, chip, student) -> None:
        """Change ``student``'s parameters in place (frozen per chip)."""

    def current_hook(self, spec: NoiseSpec, chip, name: str, index: int, straight_through: bool):
        """A ``CurrentHook`` (current, t) -> current for neuron layer ``name``, or None."""

    def output_hook(self, spec: NoiseSpec, chip, name: str, index: int, straight_through: bool):
        """A hook spikes [T, B, ...] -> spikes for neuron layer ``name``, or None."""

    def writes(self, spec: NoiseSpec, chip, optimizer):
        """The optimizer as the chip executes its updates."""
        return optimizer


class Mismatch(NoiseKind):
    """Every parameter, each neuron's threshold and (LIF) each neuron's time constant drawn from
    N(x, sigma |x|), the leak following as a' = a^(1/f) (tau' = f tau, a = exp(-dt/tau)); every update lands
    perturbed the same way (``MismatchedWrites``)."""

    name, label = "mismatch", "mismatch sigma"

    def imprint(self, spec, chip, student):
        if spec.level == 0:
            return
        g = chip.generator(0)
        for _, p in sorted(student.named_parameters()):
            p.copy_(mismatch(p, spec.level, g))
        shapes = chip.neuron_shapes(student)
        for name, neuron in sorted(student.neurons.items()):
            like = neuron.threshold.expand(shapes[name])
            neuron.threshold = mismatch(like.clone(), spec.level, g, positive=True)
            if neuron.config.kind == "lif":
                factor = mismatch(torch.ones(shapes[name], device=like.device), spec.level, g, positive=True)
                neuron.alpha = neuron.alpha ** (1 / factor)

    def writes(self, spec, chip, optimizer):
        return optimizer if spec.level == 0 else MismatchedWrites(optimizer, spec.level, chip.write_stream)


class Quantization(NoiseKind):
    """Weights read through a k-bit quantizer (a parametrization: training keeps float shadow weights)."""

    name, label, modes = "quantization", "bits", QUANT_MODES

    def check(self, level):
        if level != int(level) or not 2 <= level <= 16:
            return f"quantization level is a bit width, an integer in 2..16; got {level}"
        return None

    def imprint(self, spec, chip, student):
        for module in student.modules():
            if isinstance(module, WEIGHT_LAYERS):
                parametrize.register_parametrization(module, "weight", QuantizedWeight(spec.level, spec.resolved_mode))


class Thermal(NoiseKind):
    """Noise on every neuron layer's input current, fresh at every step."""

    name, label = "thermal", "thermal noise sigma"

    def current_hook(self, spec, chip, name, index, straight_through):
        if spec.level > 0:
            return lambda current, t: thermal(current, spec.level, chip.stream, straight_through)
        return None


class Silencing(NoiseKind):
    """A fraction of each layer's neurons failing to spike: fresh at every step and sample, or fixed per chip."""

    name, label, modes = "silencing", "fraction of neurons silenced", SILENCE_MODES

    def check(self, level):
        return None if 0 <= level < 1 else f"silencing level is the fraction of failing neurons, in [0, 1); got {level}"

    def output_hook(self, spec, chip, name, index, straight_through):
        if spec.level > 0:
            return lambda spikes: silence(spikes, self.mask(spec, chip, name, index, spikes), straight_through)
        return None

    @staticmethod
    def mask(spec, chip, name: str, index: int, spikes: torch.Tensor) -> torch.Tensor:
        """The mask for one layer's spikes [T, B, ...]: fixed per chip (broadcast over time and batch; kept in
        ``chip.masks``) or fresh per step."""
        if spec.resolved_mode == "step":
            return step_silence_mask(spikes, spec.level, chip.stream)
        shape = tuple(spikes.shape[2:])
        if (name, shape) not in chip.masks:
            chip.masks[(name, shape)] = fixed_silence_mask(shape, spec.level, chip.generator(100 + index))
        return chip.masks[(name, shape)].to(spikes.device, spikes.dtype)


# the kinds' names are declared torch-free in choices.NOISE_KINDS (with their paper levels)
NOISE_MODELS: dict[str, NoiseKind] = {k.name: k for k in (Mismatch(), Quantization(), Thermal(), Silencing())}
