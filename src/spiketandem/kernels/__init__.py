r"""Fused multi-step IF/LIF neuron: one op over the whole ``[T, ...]`` current, forward and backward.

Forward (the dynamics of ``neuron.py``; U[t] is the membrane before the reset, S[t] = H(U[t] - theta))::

    subtract:  U[t] = a U[t-1] + I[t] - theta S[t-1]
    zero:      U[t] = a U[t-1] (1 - S[t-1]) + I[t]

Backward, derived by hand.  Write h[t] = dS[t]/dU[t] = g((U[t] - theta)/theta) / theta (the surrogate
g of ``surrogate.py`` on the normalised membrane) and e[t] = dL/dU[t], the total derivative through
every later step.  U[t] reaches the loss through S[t] (directly, and through the reset of U[t+1]) and
through the leak of U[t+1]; with g_S[t] = dL/dS[t] the direct gradient of the spikes::

    subtract:  e[t] = (g_S[t] - theta e[t+1]) h[t]          + a e[t+1]
    zero:      e[t] = (g_S[t] - a U[t] e[t+1]) h[t]         + a (1 - S[t]) e[t+1]
    dL/dI[t] = e[t]

started from e[T] = 0, with the gradients of the returned final state added at t = T-1
(g_S[T-1] += dL/dS_final, e[T-1] += dL/dU_final).  ``detach_reset`` cuts the reset's gradient: the
``- theta e[t+1]`` and ``- a U[t] e[t+1]`` terms vanish (the ``(1 - S[t])`` factor stays, as a
constant).  With a static current (one ``I`` at every step), dL/dI = sum_t e[t].

What forward saves for backward, per neuron and step:
  * boxcar, except zero-reset without detach_reset: one uint8, bit 0 the gate 1[|x| < p/2] (h[t] is
    that gate times 1/(p theta)) and bit 1 the spike S[t] (the zero reset's leak factor): 1 byte;
  * every other case: the membrane U[t] (4 bytes in float32), from which backward recomputes S[t] and
    h[t]; the zero reset without detach_reset needs U[t] itself (its reset term), and for a smooth
    surrogate h[t] is a float anyway, so nothing smaller carries the same information;
  * nothing at all when no gradient is needed.
Backward writes dL/dI over the saved U in place (U[t] is read just before e[t] replaces it), so with U
saved the whole forward + backward holds spikes + U: 8 bytes per neuron and step in float32, against
spikes + saved + a fresh gradient buffer otherwise.  The price: the saved state is spent by the first
backward, and a second one through the same graph (retain_graph) is refused with a clear error.
The reference (``neuron_step`` under autograd) keeps U[t] for the surrogate plus the spikes of every
step (and for the zero reset the products a U[t] and 1 - S[t]).  The incoming state never needs a
gradient here (``run_neuron`` keeps states that require grad on the reference path), so backward needs
nothing of it.

``fused_run`` is the entry point; ``unfused_reason`` says why a call cannot use it; ``prepare(device)``
builds (or loads) the kernel ahead of time, so a training clock never counts a compilation.  Kernels: compiled
C++ on the CPU (``cpu.py``; torch loop fallback ``torch_loop.py``), Triton on CUDA (``triton_neuron.py``),
registered as torch custom ops in ``ops.py``.
"""
from __future__ import annotations

import torch

from ..errors import SpiketandemError
from ..surrogate import Surrogate
from .codes import MASK, NOTHING, SURROGATE_NAMES, U_TRACE

FUSED_DTYPES = {"cpu": (torch.float32, torch.float64), "cuda": (torch.float32,)}


def _scalar(x) -> float | None:
    """x as a Python float if it is one number without gradient, else None."""
    if torch.is_tensor(x):
        return None if x.numel() != 1 or x.requires_grad else float(x.item())
    return float(x)


def unfused_reason(currents: torch.Tensor, alpha, threshold, state=None, truncate: bool = False,
                   static: bool = False, model=None) -> str | None:
    """Why the fused kernel cannot run this call (None when it can).  ``model``: the neuron model
    (``neuron.NeuronModel``; None: IF/LIF), whose ``fused`` says whether this kernel computes its update."""
    if model is not None and not model.fused:
        return f"the {model.name} neuron has no fused kernel (it runs the per-step reference)"
    if truncate:
        return "truncate=True (gradient cut between steps) runs on the reference path"
    if state is not None:
        if state.u.requires_grad or state.s.requires_grad:
            return "an incoming state that requires grad runs on the reference path"
        step = currents.shape if static else currents.shape[1:]
        for x in state:
            if x.dtype != currents.dtype or x.device != currents.device:
                return "the incoming state's dtype or device differs from the currents'"
            try:
                if torch.broadcast_shapes(x.shape, step) != step:
                    return "the incoming state is larger than one step of current"
            except RuntimeError:
                return "the incoming state does not broadcast to one step of current"
    if _scalar(alpha) is None or _scalar(threshold) is None:
        return ("the leak and threshold must be single numbers without gradient (per-neuron or learnt values "
                "run on the reference path)")
    device = currents.device.type
    if currents.dtype not in FUSED_DTYPES.get(device, ()):
        return f"no fused kernel for {currents.dtype} on {device} (have: {FUSED_DTYPES})"
    if device == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton is not installed"
    return None


class FusedNeuron(torch.autograd.Function):
    """(I [T, N] or [N] if static, U0 [N], S0 [N]) -> (S [T, N], U[T-1], S[T-1]); backward per the docstring."""

    @staticmethod
    def forward(ctx, I, u0, s0, steps, is_static, a, theta, zero, detach, kind, p):
        save = MASK if kind == 0 and not (zero and not detach) else U_TRACE
        S, u, s, saved = torch.ops.spiketandem.neuron_forward(I, u0, s0, steps, is_static, a, theta, zero, save, p / 2)
        ctx.save_for_backward(saved)
        ctx.args = (is_static, a, theta, zero, detach, kind, p)
        ctx.spent = False
        return S, u, s

    @staticmethod
    def backward(ctx, gS, gU, gS_last):
        if ctx.spent:
            raise SpiketandemError("the fused neuron's saved membrane was overwritten by its first backward "
                                   "(retain_graph / a second backward through the same graph); run this "
                                   "neuron with backend='reference'")
        (saved,) = ctx.saved_tensors
        is_static, a, theta, zero, detach, kind, p = ctx.args
        # gS may be an expanded scalar (the gradient of spikes.sum()): the kernels read it in place
        gU, gS_last = gU.contiguous(), gS_last.contiguous()
        if saved.dtype != torch.uint8 and not is_static:
            # dL/dI replaces the saved U in its own storage: backward needs no second [T, N] buffer
            ctx.spent = True
            torch.ops.spiketandem.neuron_backward_into(gS, gU, gS_last, saved, a, theta, zero, detach, kind, p)
            gI = saved
        else:
            gI = torch.ops.spiketandem.neuron_backward(gS, gU, gS_last, saved, *ctx.args)
        return (gI,) + (None,) * 10


def fused_run(currents: torch.Tensor, T: int, alpha, threshold, reset: str, surrogate: Surrogate, state=None, *,
              static: bool = False, detach_reset: bool = False):
    """The fused equivalent of ``neuron.run_neuron`` (check ``unfused_reason`` first).

    Returns (spikes [T, ...], U[T-1], S[T-1]).  ``state`` is (U0, S0) or None for zeros."""
    from . import ops  # noqa: F401  (registers the custom ops)

    shape = currents.shape if static else currents.shape[1:]
    I = currents.reshape(-1) if static else currents.reshape(T, -1)
    I = I.contiguous()
    N = I.shape[-1]
    if state is None:
        # two tensors, not one twice: dynamo cannot trace a Function given the same tensor twice
        u0, s0 = torch.zeros(N, dtype=I.dtype, device=I.device), torch.zeros(N, dtype=I.dtype, device=I.device)
    else:
        u0 = state.u.detach().expand(shape).reshape(-1).contiguous()   # a broadcast state (e.g. U0 = theta/2)
        s0 = state.s.detach().expand(shape).reshape(-1).contiguous()
    a, theta = _scalar(alpha), _scalar(threshold)
    zero = reset == "zero"
    kind = SURROGATE_NAMES.index(surrogate.name)
    if torch.is_grad_enabled() and I.requires_grad:
        S, u, s = FusedNeuron.apply(I, u0, s0, T, static, a, theta, zero, detach_reset, kind, float(surrogate.param))
    else:
        S, u, s, _ = torch.ops.spiketandem.neuron_forward(I, u0, s0, T, static, a, theta, zero, NOTHING, 0.0)
    return S.view(T, *shape), u.view(shape), s.view(shape)


def prepare(device="cpu") -> str:
    """Build (or load) the fused neuron's kernel for ``device`` now, so that the first training step does
    not wait for a compiler inside the timed loop.  Returns what will run, in words.

    CPU: the C++ kernel, compiled once per Python environment (announced on stderr, 1-3 minutes), then
    loaded in well under a second; if it cannot be built the torch loop runs (with its one warning).
    CUDA: one tiny forward and backward so Triton compiles its most common specialisations (seconds).
    Never raises: whatever goes wrong here is reported again, clearly, where the kernel is used."""
    from . import ops, cpu
    kind = torch.device(device).type
    if kind == "cpu":
        return "fused C++ kernel" if ops._cpu_module() is not None else f"torch loop ({cpu.failure()})"
    if kind == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "reference path (triton is not installed)"
        try:
            x = torch.rand(2, 256, device=device, requires_grad=True)
            spikes, _, _ = fused_run(x, 2, 0.9, 0.5, "subtract", Surrogate("boxcar", 1.0))
            spikes.sum().backward()
            with torch.no_grad():
                fused_run(x, 2, 0.9, 0.5, "subtract", Surrogate("boxcar", 1.0))
            torch.cuda.synchronize(device)
            return "fused Triton kernel"
        except Exception as exc:  # noqa: BLE001  (the real call raises it again, in context)
            return f"fused Triton kernel did not warm up ({type(exc).__name__}: {exc})"
    return f"no fused kernel for {kind}"
