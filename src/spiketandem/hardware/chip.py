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

from ..choices import NOISE_KINDS
from ..errors import SpiketandemError
from ..neuron import RunContext
from ..student import Student
from .noise import NOISE_MODELS

class Chip:
    """Noise models (``NoiseSpec``s, at most one per kind) and a seed identifying one chip.  Where each acts is
    its kind's (``noise.NOISE_MODELS``); the chip asks them in ``choices.NOISE_KINDS`` order."""

    def __init__(self, specs, seed: int = 0):
        self.specs = tuple(specs)
        kinds = [s.kind for s in self.specs]
        if len(set(kinds)) != len(kinds):
            raise SpiketandemError(f"a chip takes each noise kind once; got {kinds}")
        self.seed = int(seed)
        self.stream = self.generator(1)         # per-step noise
        self.write_stream = self.generator(2)   # update mismatch
        self.masks: dict = {}                   # fixed silencing masks, per (layer, shape)

    def generator(self, k: int) -> torch.Generator:
        """A fresh CPU generator for this chip's k-th stream: seed (seed * 1000003 + 7919 k) mod 2^62."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + 7919 * k) % (2 ** 62))

    def acting(self):
        """(kind, spec) of each noise on this chip, in ``choices.NOISE_KINDS`` order."""
        return [(NOISE_MODELS[s.kind], s) for s in sorted(self.specs, key=lambda s: NOISE_KINDS.index(s.kind))]

    def __repr__(self):
        parts = ", ".join(f"{s.kind}={s.level:g}" + (f"/{s.resolved_mode}" if s.mode else "") for s in self.specs)
        return f"Chip({parts or 'ideal'}, seed={self.seed})"

    # ---- frozen, parameter-level noise ------------------------------------------------------------

    @torch.no_grad()
    def imprint(self, student: Student) -> Student:
        """Apply the parameter-level noise (mismatch, quantization) to ``student`` in place (returns it)."""
        if not isinstance(student, Student):
            raise SpiketandemError(f"hardware noise applies to a spiking Student, got {type(student).__name__}; "
                                   "use a run of a spiking rule")
        if any(parametrize.is_parametrized(m) for m in student.modules()):
            raise SpiketandemError("this student is already on a chip (its weights are quantized); imprint a fresh copy")
        for kind, spec in self.acting():
            kind.imprint(spec, self, student)
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
        """(current_hooks, output_hooks) for a RunContext: each kind's hook of each neuron layer (thermal noise
        on its input current, silencing on its spikes; several on one layer run in turn).  ``straight_through``:
        values from the chip, gradients of the ideal (noiseless) model, as the HIL host computes them."""
        hooks: tuple[dict, dict] = ({}, {})
        for index, name in enumerate(student.neurons):
            for kind, spec in self.acting():
                made = (kind.current_hook(spec, self, name, index, straight_through),
                        kind.output_hook(spec, self, name, index, straight_through))
                for found, hook in zip(hooks, made):
                    if hook is not None:
                        first = found.get(name)
                        found[name] = hook if first is None else (lambda x, *t, a=first, b=hook: b(a(x, *t), *t))
        return hooks

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
        """The optimizer as the chip executes it (with mismatch, each update lands perturbed)."""
        for kind, spec in self.acting():
            optimizer = kind.writes(spec, self, optimizer)
        return optimizer
