"""Integrate-and-fire neurons in discrete time (LTL paper, Eq. 1-3).

The per-step update is a pure function of (input current, state, parameters)::

    reset by subtraction (paper):  U[t] = a * U[t-1] + I[t] - theta * S[t-1]
    reset to zero (authors' code): U[t] = a * U[t-1] * (1 - S[t-1]) + I[t]
    S[t] = H(U[t] - theta)

with a = 1 for IF and a = exp(-dt / tau_m) for LIF.  ``run_neuron`` drives it over time; the module
``SpikingNeuron`` is a thin shell that a student graph uses in place of a teacher's ReLU.

Each neuron model (``choices.NEURON_KINDS``, ``--neuron``) is one :class:`NeuronModel` in ``NEURON_MODELS``:
its leak from the config, its per-step update and whether the fused kernel computes that update.

``run_neuron`` has two implementations: the reference (``neuron_step`` in a loop, under autograd) and
the fused kernel of ``spiketandem.kernels`` (one op over all T steps, saving a 1-byte mask or the
membrane instead of the whole autograd graph).  ``backend="auto"`` picks the fused one whenever it
applies (see ``kernels.unfused_reason``); both give the same spikes and states exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
from torch import nn

from .errors import SpiketandemError
from .kernels import fused_run, unfused_reason
from .choices import NEURON_BACKENDS, NEURON_KINDS, RESETS  # declared torch-free for the command line
from .surrogate import SURROGATES, Surrogate, spike


@dataclass(frozen=True)
class NeuronConfig:
    """Neuron model. ``leak`` overrides ``exp(-dt/tau_m)`` for LIF; IF always has leak 1.
    ``surrogate`` is a :class:`~.surrogate.Surrogate` or a surrogate's name (``"atan"``)."""

    kind: str = "lif"
    threshold: float = 1.0
    tau_m: float = 10.0
    dt: float = 1.0
    leak: float | None = None
    reset: str = "subtract"
    surrogate: Surrogate = field(default_factory=Surrogate)
    detach_reset: bool = False
    backend: str = "auto"   # how run_neuron computes it (NEURON_BACKENDS); the dynamics do not depend on it

    def __post_init__(self):
        if isinstance(self.surrogate, str):  # a name: that surrogate with its default parameter
            object.__setattr__(self, "surrogate", Surrogate(self.surrogate))
        if not isinstance(self.surrogate, Surrogate):
            raise SpiketandemError(f"surrogate must be a Surrogate or one of {', '.join(SURROGATES)}; got "
                                   f"{type(self.surrogate).__name__}")
        if self.kind not in NEURON_KINDS:
            raise SpiketandemError(f"neuron kind {self.kind!r} is not one of {NEURON_KINDS}")
        if self.backend not in NEURON_BACKENDS:
            raise SpiketandemError(f"neuron backend {self.backend!r} is not one of {NEURON_BACKENDS}")
        if self.reset not in RESETS:
            raise SpiketandemError(f"reset {self.reset!r} is not one of {RESETS}")
        if not self.threshold > 0:
            raise SpiketandemError(f"threshold must be > 0, got {self.threshold}")
        if not 0 < self.alpha <= 1:
            raise SpiketandemError(f"{self.kind.upper()} leak must lie in (0, 1], got {self.alpha} (set leak, or "
                                   "tau_m > 0 and dt > 0)")

    @property
    def alpha(self) -> float:
        """The membrane leak factor a of Eq. 1."""
        return NEURON_MODELS[self.kind].alpha(self)


class NeuronState(NamedTuple):
    u: torch.Tensor  # membrane potential U[t-1]
    s: torch.Tensor  # spikes S[t-1]

    def detach(self) -> "NeuronState":
        """The same state cut from the graph (online learning carries it to the next step without its history)."""
        return NeuronState(self.u.detach(), self.s.detach())


def zero_state(like: torch.Tensor) -> NeuronState:
    zeros = torch.zeros_like(like)
    return NeuronState(zeros, zeros)


def neuron_step(current: torch.Tensor, state: NeuronState, alpha, threshold, reset: str,
                surrogate: Surrogate, detach_reset: bool = False) -> tuple[torch.Tensor, NeuronState]:
    """One step of Eq. 1-3; returns (S[t], new state)."""
    s_prev = state.s.detach() if detach_reset else state.s
    if reset == "subtract":
        u = alpha * state.u + current - threshold * s_prev
    else:
        u = alpha * state.u * (1 - s_prev) + current
    s = spike(u, threshold, surrogate)
    return s, NeuronState(u, s)


def _lif_alpha(c: NeuronConfig) -> float:
    """a = ``leak`` if given, else exp(-dt / tau_m) (nan when tau_m or dt is not positive)."""
    if c.leak is not None:
        return float(c.leak)
    return math.exp(-c.dt / c.tau_m) if c.tau_m > 0 and c.dt > 0 else float("nan")


@dataclass(frozen=True)
class NeuronModel:
    """One neuron model: its leak a from a ``NeuronConfig``, its per-step update (the signature of
    ``neuron_step``: (S[t], new state)), and whether the fused kernel computes exactly that update (read by
    ``kernels.unfused_reason``; a model without runs the per-step reference on every device)."""

    name: str
    alpha: Callable[[NeuronConfig], float]
    step: Callable = neuron_step
    fused: bool = True


# a model's name is declared torch-free in choices.NEURON_KINDS; its parameters are NeuronConfig fields
NEURON_MODELS: dict[str, NeuronModel] = {m.name: m for m in (
    NeuronModel("if", lambda c: 1.0),
    NeuronModel("lif", _lif_alpha),
)}

CurrentHook = Callable[[torch.Tensor, int], torch.Tensor]


def run_neuron(currents: torch.Tensor, T: int, alpha, threshold, reset: str, surrogate: Surrogate,
               state: NeuronState | None = None, *, static: bool = False, detach_reset: bool = False,
               current_hook: CurrentHook | None = None, truncate: bool = False,
               backend: str = "auto", kind: str = "lif") -> tuple[torch.Tensor, NeuronState]:
    """Run the neuron for T steps.

    ``currents`` is ``[T, ...]``, or with ``static=True`` one ``[...]`` current applied at every
    step (a constant analog input, computed once).  ``current_hook(I, t)`` may transform each step's
    current (hardware noise).  ``truncate`` detaches the state between steps, so the gradient of
    step t flows through step t's current only.  Returns spikes ``[T, ...]`` and the final state.
    ``backend``: "auto" (the fused kernel when it applies), "fused" (it, or an error saying why
    not), "reference" (the model's update in a loop).  ``kind``: the neuron model whose update runs
    (``NEURON_MODELS``; IF and LIF share Eq. 1-3 and differ only in ``alpha``).
    """
    if not static and currents.shape[0] != T:
        raise SpiketandemError(f"neuron got {currents.shape[0]} time steps of input, expected T={T}")
    if backend not in NEURON_BACKENDS:
        raise SpiketandemError(f"neuron backend {backend!r} is not one of {NEURON_BACKENDS}")
    if backend != "reference":
        reason = unfused_reason(currents, alpha, threshold, state, truncate, static, NEURON_MODELS[kind])
        if reason is None:
            if current_hook is not None:  # hooks see the current only, never the state: apply them up front
                steps = currents.unsqueeze(0).expand(T, *currents.shape) if static else currents
                currents, static = torch.stack([current_hook(steps[t], t) for t in range(T)]), False
            spikes, u, s = fused_run(currents, T, alpha, threshold, reset, surrogate, state, static=static,
                                     detach_reset=detach_reset)
            return spikes, NeuronState(u, s)
        if backend == "fused":
            raise SpiketandemError(f"neuron backend 'fused' cannot run this call: {reason}; use backend 'auto' "
                                   "(falls back to the reference) or 'reference'")
    # unbind, not currents[t]: the backward of T selects would build T full-size [T, ...] gradients
    steps = None if static else currents.unbind(0)
    first = currents if static else steps[0]
    if state is None:
        state = zero_state(first)
    out = []
    for t in range(T):
        current = currents if static else steps[t]
        if current_hook is not None:
            current = current_hook(current, t)
        if truncate:
            state = state.detach()
        s, state = NEURON_MODELS[kind].step(current, state, alpha, threshold, reset, surrogate, detach_reset)
        out.append(s)
    return torch.stack(out), state


def spike_derivative(u: torch.Tensor, threshold, surrogate: Surrogate) -> torch.Tensor:
    """dS/dU of the surrogate at membrane ``u`` (Eq. 8 for the boxcar): g((U - theta)/theta) / theta."""
    theta = threshold if torch.is_tensor(threshold) else torch.tensor(float(threshold), dtype=u.dtype, device=u.device)
    theta = theta.to(u.dtype)
    return surrogate.derivative((u - theta) / theta) / theta


class _PrintedEq67(torch.autograd.Function):
    """Spikes of reset-by-subtraction dynamics forward; backward, the LTL paper's printed Eq. 6-7:

        delta[t]  = dL/dS[t] - theta * delta[t+1] * s'[t+1]          (the reset path, recursive through delta)
        dL/dU[t]  = delta[t] * s'[t] + a * delta[t+1] * s'[t+1]       (one step of the leak)
        dL/dI[t]  = dL/dU[t]                                          (dU[t]/dI[t] = 1)

    with delta[T+1] = 0 and s'[t] = dS[t]/dU[t] (Eq. 8).  Full BPTT would carry the whole dL/dU[t+1]
    through the leak and the reset; the printed form keeps only its direct part delta[t+1] s'[t+1]."""

    @staticmethod
    def forward(ctx, currents, alpha, threshold, surrogate):
        T = currents.shape[0]
        u = torch.zeros_like(currents[0])
        s = torch.zeros_like(currents[0])
        us, ss = [], []
        for t in range(T):
            u = alpha * u + currents[t] - threshold * s
            s = (u >= threshold).to(currents.dtype)
            us.append(u)
            ss.append(s)
        membranes = torch.stack(us)
        ctx.save_for_backward(membranes)
        ctx.alpha, ctx.threshold, ctx.surrogate = alpha, threshold, surrogate
        return torch.stack(ss)

    @staticmethod
    def backward(ctx, grad_spikes):
        (membranes,) = ctx.saved_tensors
        slope = spike_derivative(membranes, ctx.threshold, ctx.surrogate)
        grad = torch.empty_like(grad_spikes)
        later = torch.zeros_like(grad_spikes[0])  # delta[t+1] * s'[t+1]
        for t in reversed(range(grad_spikes.shape[0])):
            delta = grad_spikes[t] - ctx.threshold * later
            grad[t] = delta * slope[t] + ctx.alpha * later
            later = delta * slope[t]
        return grad, None, None, None


def run_neuron_printed(currents: torch.Tensor, T: int, alpha, threshold, reset: str, surrogate: Surrogate, *,
                       static: bool = False, current_hook: CurrentHook | None = None) -> torch.Tensor:
    """Spikes ``[T, ...]`` whose gradient is the printed Eq. 6-7 (``_PrintedEq67``); the offline LTL mode
    ``--bptt printed``.  The equations are written for reset by subtraction and scalar leak and threshold."""
    if reset != "subtract":
        raise SpiketandemError("--bptt printed is the paper's Eq. 6-7, written for reset by subtraction; use --reset "
                               "subtract, or --bptt full / per-step with --reset zero")
    if static:
        currents = currents.unsqueeze(0).expand(T, *currents.shape)
    if current_hook is not None:
        currents = torch.stack([current_hook(currents[t], t) for t in range(T)])
    a = float(alpha) if not torch.is_tensor(alpha) or alpha.numel() == 1 else alpha
    theta = float(threshold) if not torch.is_tensor(threshold) or threshold.numel() == 1 else threshold
    return _PrintedEq67.apply(currents, a, theta, surrogate)


BPTT_MODES_DOC = """How the gradient of a layer-local loss runs through a neuron layer's T steps (offline LTL ``--bptt``):
    full      true BPTT through the membrane, the leak and the reset (default);
    per-step  the state is detached between steps: step t's gradient flows through step t's current only,
              dL/dI[t] = dL/dS[t] s'[t] (what the project called "truncated" before; cheapest);
    printed   the paper's Eq. 6-7 as printed (see ``_PrintedEq67``)."""


@dataclass
class RunContext:
    """Per-call settings shared by the time-aware modules of one student forward.

    Lives only for the duration of one call (no hidden state survives it):
    ``records`` collects each neuron layer's spikes ``[T, B, ...]`` (with their graph, for local
    losses); ``state_in``/``state_out`` carry neuron states across calls (online learning);
    ``detach`` cuts the gradient at every neuron output (layer-local learning).
    """

    T: int
    batch: int
    detach: bool = False
    records: dict | None = None
    record_names: set | None = None                     # None = record every layer
    bptt: str = "full"                                  # full, per-step or printed (BPTT_MODES_DOC)
    state_in: dict | None = None
    state_out: dict = field(default_factory=dict)
    current_hooks: dict = field(default_factory=dict)   # neuron name -> CurrentHook
    output_hooks: dict = field(default_factory=dict)    # neuron name -> fn(spikes [T,B,...]) -> spikes


class TimeAware(nn.Module):
    """Base of modules that need the per-call RunContext (set by the student around a forward)."""

    ctx: RunContext | None = None

    def context(self) -> RunContext:
        if self.ctx is None:
            raise SpiketandemError("a spiking layer was called outside Student.forward; call the student, not its parts")
        return self.ctx


class SpikingNeuron(TimeAware):
    """A layer of IF/LIF neurons that replaces one teacher ReLU.

    Input: the folded current ``[T*B, ...]`` (or ``[B, ...]`` when ``static_input``); output: spikes
    times ``amplitude``, folded ``[T*B, ...]``.  ``threshold`` and ``amplitude`` are per-layer
    buffers: initialised from a teacher they both equal the layer's activation scale, so the spike
    rate times the amplitude approximates the teacher's activation (equivalent to the classic
    weight normalisation, with the scale folded into the next layer on export).  ``membrane_init`` f is
    the layer's starting membrane, U[0] = f * theta, S[0] = 0 (0 unless a rule starts it charged:
    ``--membrane-init``, ``--recipe low-latency``, QCFS's shift); it is saved with the other buffers, so
    every call of the layer, and every reloaded copy, starts from it unless a caller carries a state in.
    """

    def __init__(self, config: NeuronConfig, name: str = "", path: str = ""):
        super().__init__()
        self.config = config
        self.name = name
        self.path = path or name
        self.static_input = False
        self.register_buffer("threshold", torch.tensor(float(config.threshold)))
        self.register_buffer("amplitude", torch.tensor(1.0))
        self.register_buffer("alpha", torch.tensor(config.alpha))
        self.register_buffer("membrane_init", torch.tensor(0.0))
        self._start = 0.0  # float(membrane_init), read without a device sync

    @torch.no_grad()
    def set_scale(self, threshold, amplitude=None) -> None:
        """theta = ``threshold`` and spike amplitude = ``amplitude`` (default: theta, so that the rate times the
        amplitude approximates an activation of that scale: threshold balancing).  Every threshold is written
        here."""
        self.threshold.copy_(torch.as_tensor(threshold, dtype=self.threshold.dtype))
        self.amplitude.copy_(torch.as_tensor(threshold if amplitude is None else amplitude,
                                             dtype=self.amplitude.dtype))

    def set_membrane_init(self, fraction: float) -> None:
        """Start every later call of this layer at U[0] = fraction * threshold."""
        self.membrane_init.fill_(float(fraction))
        self._start = float(fraction)

    def start_state(self) -> NeuronState | None:
        """The state the layer starts a window from: U[0] = f * theta, S[0] = 0 (None when f = 0: zeros).
        Scalars, broadcast over the layer's shape on the first step."""
        if self._start == 0:
            return None
        return NeuronState(self._start * self.threshold, torch.zeros((), device=self.threshold.device))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        key = prefix + "membrane_init"
        if key in missing_keys:  # a file from before the start was saved: the value the rule built it with stays
            missing_keys.remove(key)
        self._start = float(self.membrane_init)

    def extra_repr(self) -> str:
        c = self.config
        start = f", membrane_init={self._start:g}" if self._start else ""
        return (f"{c.kind}, path={self.path!r}, reset={c.reset}, surrogate={c.surrogate.name}({c.surrogate.param}), "
                f"static_input={self.static_input}{start}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ctx = self.context()
        currents = x if self.static_input else x.reshape(ctx.T, -1, *x.shape[1:])
        state = ctx.state_in.get(self.name) if ctx.state_in else None
        if state is None:
            state = self.start_state()
        if ctx.bptt == "printed" and torch.is_grad_enabled():
            if NEURON_MODELS[self.config.kind].step is not neuron_step:
                raise SpiketandemError(f"--bptt printed is Eq. 6-7 of the IF/LIF update, not of the "
                                       f"{self.config.kind} neuron; use --bptt full or per-step")
            if state is not None:
                raise SpiketandemError("--bptt printed runs whole windows from U[0] = 0; it takes no starting membrane "
                                       "(--membrane-init, --recipe low-latency) and no incoming state (online LTL)")
            spikes = run_neuron_printed(currents, ctx.T, self.alpha, self.threshold, self.config.reset,
                                        self.config.surrogate, static=self.static_input,
                                        current_hook=ctx.current_hooks.get(self.name))
            state = None
        else:
            spikes, state = run_neuron(currents, ctx.T, self.alpha, self.threshold, self.config.reset,
                                       self.config.surrogate, state, static=self.static_input,
                                       detach_reset=self.config.detach_reset,
                                       current_hook=ctx.current_hooks.get(self.name), truncate=ctx.bptt == "per-step",
                                       backend=self.config.backend, kind=self.config.kind)
        if self.name in ctx.output_hooks:
            spikes = ctx.output_hooks[self.name](spikes)
        ctx.state_out[self.name] = state
        if ctx.records is not None and (ctx.record_names is None or self.name in ctx.record_names):
            ctx.records[self.name] = spikes
        out = spikes.detach() if ctx.detach else spikes
        return (out * self.amplitude).flatten(0, 1)


class TimeRepeat(TimeAware):
    """Repeats a time-constant tensor ``[B, ...]`` to the folded ``[T*B, ...]`` layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.context().T
        return x.unsqueeze(0).expand(T, *x.shape).flatten(0, 1)
