"""Neuron layers of a student run as ANN activations of their mean input current.

For a neuron layer with input currents I[t] (t = 1..T), let z = (1/T) sum_t I[t].  Because every
layer between two neuron layers is linear (conv, linear, average pooling, folded BN, flatten, add),
z = W r_prev + b, where r_prev = (1/T) sum_t amplitude * S_prev[t] is the previous layer's rate-coded
output: z is the ANN pre-activation evaluated on the SNN's own spike counts.  A layer can then run in

- ``"ann"`` mode:    output a = f(z) at every step, value and gradient of the ANN activation f;
- ``"tandem"`` mode: output = the spikes (amplitude * S[t]), gradient = that of f(z)
  (tandem learning, Wu et al. 2021: forward the SNN spike count, backward the ANN activation).

With a linear readout on the time-averaged output, the gradient that reaches the weights is then
exactly the ANN's gradient evaluated on the SNN's spike counts.  Used by the tandem, PTL, QAT and
QCFS rules; with ``T=1`` and every layer in "ann" mode the student is an ordinary (BN-folded) ANN.
(With max pooling between layers the identity z = W r_prev + b no longer holds exactly: the
gradient then follows the max of each time step.)
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import SpiketandemError
from ..neuron import NeuronState, RunContext
from ..student import Student, percentile_of

MODES = ("ann", "tandem")
Activation = Callable[[torch.Tensor], torch.Tensor]


class _LayerTap:
    """The two hooks of one neuron layer for one forward call."""

    def __init__(self, mode: str, activation: Activation, T: int, amplitude: torch.Tensor):
        self.mode, self.activation, self.T, self.amplitude = mode, activation, T, amplitude
        self.total = None

    def current(self, current: torch.Tensor, t: int) -> torch.Tensor:
        # sum the currents with their graph (for z); the neuron itself gets them detached, so the
        # spiking dynamics build no graph at all (their gradient is replaced by the ANN's)
        self.total = current if t == 0 else self.total + current
        return current.detach()

    def output(self, spikes: torch.Tensor) -> torch.Tensor:
        # the neuron multiplies what we return by its amplitude: divide here so that the layer's
        # output is f(z) (ann) or amplitude * S[t] with the gradient of f(z) (tandem)
        a = self.activation(self.total / self.T) / self.amplitude
        if self.mode == "ann":
            return a.unsqueeze(0).expand_as(spikes)
        return spikes.detach() + (a - a.detach()).unsqueeze(0)


def hybrid_context(student: Student, T: int, batch: int, modes: dict[str, tuple[str, Activation]],
                   **context) -> RunContext:
    """A RunContext in which each neuron layer named in ``modes`` runs as ``(mode, f)``; the others spike
    normally.  Extra keyword arguments go to the RunContext (e.g. ``state_in``)."""
    ctx = student.context(T, batch, **context)
    neurons = student.neurons
    for name, (mode, activation) in modes.items():
        if mode not in MODES:
            raise SpiketandemError(f"layer mode {mode!r} is not one of {MODES}")
        if name not in neurons:
            raise SpiketandemError(f"the student has no neuron layer {name!r}; its layers are {', '.join(neurons)}")
        tap = _LayerTap(mode, activation, T, neurons[name].amplitude)
        ctx.current_hooks[name] = tap.current
        ctx.output_hooks[name] = tap.output
    return ctx


def run_hybrid(student: Student, x: torch.Tensor, T: int, modes: dict[str, tuple[str, Activation]], **context):
    """Logits ``[B, classes]`` (mean over time) of the student with the given layer modes.  A one-step
    (``T=1``) pass of an event-frames student sees the time-integrated frame, as its teacher does."""
    if getattr(student, "encoding", None) == "frames" and x.dim() == 5 and x.shape[1] != T == 1:
        x = x.mean(1, keepdim=True)
    return student.run(x, hybrid_context(student, T, x.shape[0], modes, **context)).mean(0)


@torch.no_grad()
def hybrid_activation_scales(student: Student, images: torch.Tensor, T: int,
                             modes: dict[str, tuple[str, Activation]], names, percentile: float,
                             batch_size: int = 256) -> dict[str, float]:
    """The ``percentile`` of the ANN activation f(z) of each layer in ``names``, over ``images``, in the hybrid
    network whose layers run as ``modes`` (layers not in ``modes`` spike normally); the teacher's own scales
    are ``student.activation_scales``."""
    seen = {name: [] for name in names}

    def recording(name, activation):
        def record(z):
            a = activation(z)
            seen[name].append(a.flatten())
            return a
        return record
    run_modes = {name: (mode, recording(name, f) if name in seen else f) for name, (mode, f) in modes.items()}
    missing = set(seen) - set(run_modes)
    if missing:
        raise SpiketandemError(f"layers {sorted(missing)} need a mode to record their ANN activation")
    for chunk in images.split(batch_size):
        run_hybrid(student, chunk, T, run_modes)
    return {name: percentile_of(torch.cat(values), percentile) for name, values in seen.items()}


def membrane_start(student: Student, fraction: float) -> dict | None:
    """Initial neuron states with U[0] = fraction * threshold in every layer (None when fraction is 0).

    Scalar tensors broadcast over the layer's shape on the first step."""
    if fraction == 0:
        return None
    return {name: NeuronState(fraction * m.threshold, torch.zeros((), device=m.threshold.device))
            for name, m in student.neurons.items()}


def require_if_neurons(cfg, rule: str) -> None:
    """Conversion-based rules rely on the rate code of IF neurons; a leak would bias every rate."""
    if cfg.neuron != "if":
        raise SpiketandemError(f"rule {rule} converts ANN activations to IF spike rates and needs IF neurons "
                               f"(got --neuron {cfg.neuron}); pass --neuron if")
