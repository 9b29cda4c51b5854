"""A simulated mixed-signal chip: a set of noise models and a seed, applied to a trained student.

``Chip(specs, seed).imprint(student)`` changes the student in place into "the student as deployed on
this chip": mismatched weights, biases, per-neuron thresholds and leaks (frozen: same seed, same chip),
and weights read through a k-bit quantizer (a parametrization, so calibration keeps float shadow
weights and learns through a straight-through estimator).  Per-step noise (thermal current noise,
neuron silencing) is not a property of the parameters: ``hooks()`` gives the ``RunContext`` hooks
that inject it, and ``run``/``predict`` run a student through them.  ``writes(optimizer)`` makes every
parameter update land with the chip's write mismatch (dtheta' ~ N(dtheta, sigma |dtheta|)).
"""
from __future__ import annotations

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from ..errors import SpiketandemError
from ..neuron import RunContext
from ..student import Student
from . import noise
from .noise import NoiseSpec

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)


class QuantizedWeight(nn.Module):
    """Parametrization W -> Q_k(W) + (W - W.detach()): the forward sees exactly the k-bit weight, the
    gradient reaches the float weight unchanged (straight-through estimator, quantization-aware training)."""

    def __init__(self, bits: int, mode: str):
        super().__init__()
        self.bits, self.mode = int(bits), mode

    def forward(self, w):
        return noise.quantize(w.detach(), self.bits, self.mode) + (w - w.detach())


class Chip:
    """Noise models (``NoiseSpec``s, at most one per kind) and a seed identifying one chip."""

    def __init__(self, specs, seed: int = 0):
        self.specs = tuple(specs)
        kinds = [s.kind for s in self.specs]
        if len(set(kinds)) != len(kinds):
            raise SpiketandemError(f"a chip takes each noise kind once; got {kinds}")
        self.seed = int(seed)
        self.stream = torch.Generator().manual_seed(self._derive(1))   # per-step noise
        self._writes = torch.Generator().manual_seed(self._derive(2))  # update mismatch
        self._masks: dict = {}

    def _derive(self, k: int) -> int:
        return (self.seed * 1_000_003 + 7919 * k) % (2 ** 62)

    def spec(self, kind: str) -> NoiseSpec | None:
        return next((s for s in self.specs if s.kind == kind), None)

    def __repr__(self):
        parts = ", ".join(f"{s.kind}={s.level:g}" + (f"/{s.resolved_mode}" if s.mode else "") for s in self.specs)
        return f"Chip({parts or 'ideal'}, seed={self.seed})"

    # ---- frozen, parameter-level noise ------------------------------------------------------------

    @torch.no_grad()
    def imprint(self, student: Student) -> Student:
        """Apply mismatch and quantization to ``student`` in place (returns it).  Mismatch draws every
        parameter, each neuron's threshold and (LIF) each neuron's time constant from N(x, sigma|x|);
        the leak follows as a' = a^(1/f) (tau' = f tau, a = exp(-dt/tau))."""
        if not isinstance(student, Student):
            raise SpiketandemError(f"hardware noise applies to a spiking Student, got {type(student).__name__}; "
                                   "use a run of a spiking rule")
        if any(parametrize.is_parametrized(m) for m in student.modules()):
            raise SpiketandemError("this student is already on a chip (its weights are quantized); imprint a fresh copy")
        mism = self.spec("mismatch")
        if mism is not None and mism.level > 0:
            g = torch.Generator().manual_seed(self._derive(0))
            for _, p in sorted(student.named_parameters()):
                p.copy_(noise.mismatch(p, mism.level, g))
            shapes = self.neuron_shapes(student)
            for name, neuron in sorted(student.neurons.items()):
                like = neuron.threshold.expand(shapes[name])
                neuron.threshold = noise.mismatch(like.clone(), mism.level, g, positive=True)
                if neuron.config.kind == "lif":
                    factor = noise.mismatch(torch.ones(shapes[name], device=like.device), mism.level, g, positive=True)
                    neuron.alpha = neuron.alpha ** (1 / factor)
        quant = self.spec("quantization")
        if quant is not None:
            for module in student.modules():
                if isinstance(module, WEIGHT_LAYERS):
                    parametrize.register_parametrization(module, "weight",
                                                         QuantizedWeight(quant.level, quant.resolved_mode))
        return student

    @staticmethod
    @torch.no_grad()
    def neuron_shapes(student: Student) -> dict[str, tuple]:
        """Per-sample shape of every neuron layer, from one probe step."""
        device = next(student.parameters()).device
        ctx = student.context(1, 1, records={})
        student.run(torch.zeros(1, *student.input_shape, device=device), ctx)
        return {name: tuple(s.shape[2:]) for name, s in ctx.records.items()}

    # ---- per-step noise ---------------------------------------------------------------------------

    def hooks(self, student: Student, straight_through: bool = False) -> tuple[dict, dict]:
        """(current_hooks, output_hooks) for a RunContext: thermal noise on every neuron layer's input
        current, silencing on its spikes.  ``straight_through``: values from the chip, gradients of
        the ideal (noiseless) model, as the HIL host computes them."""
        currents, outputs = {}, {}
        therm, sil = self.spec("thermal"), self.spec("silencing")
        for index, name in enumerate(student.neurons):
            if therm is not None and therm.level > 0:
                currents[name] = (lambda current, t, s=therm.level:
                                  noise.thermal(current, s, self.stream, straight_through))
            if sil is not None and sil.level > 0:
                outputs[name] = (lambda spikes, n=name, i=index:
                                 noise.silence(spikes, self.silence_mask(n, i, spikes), straight_through))
        return currents, outputs

    def silence_mask(self, name: str, index: int, spikes: torch.Tensor) -> torch.Tensor:
        """The silencing mask for one layer's spikes [T, B, ...]: fixed per chip (broadcast over time and
        batch) or fresh per step."""
        spec = self.spec("silencing")
        if spec.resolved_mode == "step":
            return noise.step_silence_mask(spikes, spec.level, self.stream)
        shape = tuple(spikes.shape[2:])
        if (name, shape) not in self._masks:
            g = torch.Generator().manual_seed(self._derive(100 + index))
            self._masks[(name, shape)] = noise.fixed_silence_mask(shape, spec.level, g)
        return self._masks[(name, shape)].to(spikes.device, spikes.dtype)

    def context(self, student: Student, T: int, batch: int, straight_through: bool = False, **fields) -> RunContext:
        currents, outputs = self.hooks(student, straight_through)
        return student.context(T, batch, current_hooks=currents, output_hooks=outputs, **fields)

    def run(self, student: Student, x: torch.Tensor, T: int, straight_through: bool = False) -> torch.Tensor:
        """Logits [T, B, classes] of ``student`` (already imprinted) running on this chip."""
        return student.run(x, self.context(student, T, x.shape[0], straight_through))

    @torch.no_grad()
    def predict(self, student: Student, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.run(student, x, T).mean(0)

    # ---- writes -----------------------------------------------------------------------------------

    def writes(self, optimizer):
        """The optimizer as the chip executes it: with mismatch, each update lands perturbed."""
        mism = self.spec("mismatch")
        if mism is None or mism.level == 0:
            return optimizer
        return MismatchedWrites(optimizer, mism.level, self._writes)


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
            p.copy_(old + noise.mismatch(p - old, self.sigma, self.generator))
