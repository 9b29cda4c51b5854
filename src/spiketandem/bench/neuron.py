"""The LIF neuron alone and Linear(n, n) + LIF, forward + backward: spiketandem (fused kernel and the
per-step reference) against SpikingJelly, snnTorch and Norse installed beside it.

Shared dynamics (the one LIF every framework here can express exactly):
    U[t] = a U[t-1] (1 - S[t-1]) + I[t],   S[t] = H(U[t] - theta),   a = 0.875, theta = 1,
reset to zero with the reset's gradient cut (detach_reset), surrogate atan with alpha = 2:
dS/dU = (alpha/2) / (1 + (pi/2 alpha (U - theta))^2)  (theta = 1, so our normalised x = U - theta).
Parameter mapping:
  spiketandem   run_neuron(I, T, 0.875, 1.0, "zero", Surrogate("atan", 2.0), detach_reset=True)
  SpikingJelly  LIFNode(tau=8, decay_input=False, v_threshold=1, v_reset=0, ATan(alpha=2), detach_reset=True,
                step_mode="m"): H = V - V/tau + X, and V - V/8 equals 0.875 V exactly (tau a power of 2);
                its registered-op path (built-in surrogate) and its Torch autograd reference path (the same
                surrogate in a subclass it does not recognise) are both measured
  snnTorch      Leaky(beta=0.875, threshold=1, spike_grad=atan(alpha=2), reset_mechanism="zero") looped over
                T (its reset is always detached; it fires on U > theta where we fire on U >= theta)
  Norse         LIFBoxCell(tau_mem_inv=125, dt=1e-3, v_th=1, v_reset=0, v_leak=0) looped over T, fed 8 I:
                V + 0.125 (8 I - V) = 0.875 V + I; it has no atan surrogate (SuperSpike, alpha=100, is used)
                and no detached reset, so its gradient differs from the others'
Our subtract reset (U[t] = a U[t-1] + I[t] - theta S[t-1]) is not expressible in SpikingJelly or Norse (their
soft reset is leaked at the next step), which is why the shared dynamics use the zero reset.

Before timing, every implementation runs the same input and its spikes are compared with ours (the fraction
equal is reported; rounding can flip a spike on the rare membrane that lands on the threshold), and so is
its input gradient where the surrogate and reset gradient are the same.  Time: median over rounds in which
the implementations run in turn (a change in the machine's load falls on all alike), warm-up excluded.
Peak memory: the same method for all -- on the CPU, the peak live bytes of tensors created by the step
(bench.memory.LiveTensorBytes: it sees every aten op and custom op output, but not scratch inside one op,
e.g. SpikingJelly's per-step lists inside its registered op, which undercounts that path); on CUDA the
allocator's peak.
"""
from __future__ import annotations

import importlib.util
import statistics
import time
from typing import TYPE_CHECKING

from ..errors import SpiketandemError

if TYPE_CHECKING:  # the annotations; torch itself is imported where the benchmark runs (`--help` stays torch-free)
    import torch
    from torch import nn

    from ..surrogate import Surrogate

NAME = "neuron"
HELP = "LIF neuron alone and Linear+LIF, forward+backward, vs SpikingJelly, snnTorch and Norse"
DESCRIPTION = __doc__
LEAK, THETA, TAU, ATAN_ALPHA = 0.875, 1.0, 8.0, 2.0
FRAMEWORKS = ("spikingjelly", "snntorch", "norse")
OURS = "spiketandem-fused"


def add_arguments(p) -> None:
    p.add_argument("--T", type=int, nargs="+", default=[100], help="time steps for the neuron alone")
    p.add_argument("--linear-T", type=int, nargs="+", default=[100, 500], help="time steps for Linear + LIF")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n", type=int, default=4096, help="neurons for the neuron alone")
    p.add_argument("--linear-n", type=int, default=512, help="features of Linear(n, n) + LIF")
    p.add_argument("--peers", nargs="*", default=list(FRAMEWORKS), choices=FRAMEWORKS, help="frameworks to compare")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds (the median is kept)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--input-scale", type=float, default=0.3, help="neuron-alone currents are uniform in [0, scale)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


# ---- the implementations: each maps currents [T, B, n] -> spikes [T, B, n] ---------------------------------

class Impl:
    """One implementation of the shared LIF: ``fn(currents) -> spikes``; ``input_gain`` is the factor its
    input current carries (Norse's units); ``same_gradient``: its surrogate and reset gradient are ours."""

    def __init__(self, name: str, framework: str, path: str, fn, input_gain: float = 1.0, same_gradient=True,
                 note: str = ""):
        self.name, self.framework, self.path, self.fn = name, framework, path, fn
        self.input_gain, self.same_gradient, self.note = input_gain, same_gradient, note


def _ours(backend: str, surrogate: Surrogate):
    from ..neuron import run_neuron
    def fn(current):
        return run_neuron(current, current.shape[0], LEAK, THETA, "zero", surrogate, detach_reset=True,
                          backend=backend)[0]
    return fn


def our_impls() -> list[Impl]:
    from ..surrogate import Surrogate
    atan = Surrogate("atan", ATAN_ALPHA)
    return [Impl(OURS, "spiketandem", "run_neuron(backend='fused'): C++/Triton multi-step kernel",
                 _ours("fused", atan)),
            Impl("spiketandem-fused-boxcar", "spiketandem",
                 "run_neuron(backend='fused') with the boxcar surrogate (LTL Eq. 8; saves a 1-byte mask)",
                 _ours("fused", Surrogate("boxcar", 1.0)), same_gradient=False,
                 note="same forward, boxcar surrogate (not the peers' atan)"),
            Impl("spiketandem-reference", "spiketandem", "run_neuron(backend='reference'): per-step autograd",
                 _ours("reference", atan))]


def _spikingjelly() -> list[Impl]:
    from spikingjelly.activation_based import neuron, surrogate

    class ATanUnregistered(surrogate.ATan):
        """The same ATan; SpikingJelly only dispatches its own classes to its registered op, so this
        selects its Torch autograd reference path."""

    def make(sg):
        node = neuron.LIFNode(tau=TAU, decay_input=False, v_threshold=THETA, v_reset=0.0, surrogate_function=sg,
                              detach_reset=True, step_mode="m")

        def fn(current):
            node.reset()
            return node(current)
        return fn
    return [Impl("spikingjelly-op", "spikingjelly", "LIFNode step_mode='m', built-in ATan: registered sj_lif op "
                 "(CPU: torch loop with a custom backward)", make(surrogate.ATan(alpha=ATAN_ALPHA))),
            Impl("spikingjelly-torch", "spikingjelly", "LIFNode step_mode='m', Torch autograd reference path",
                 make(ATanUnregistered(alpha=ATAN_ALPHA)))]


def _snntorch() -> list[Impl]:
    import torch
    import snntorch
    from snntorch import surrogate

    leaky = snntorch.Leaky(beta=LEAK, threshold=THETA, spike_grad=surrogate.atan(alpha=ATAN_ALPHA),
                           reset_mechanism="zero")

    def fn(current):
        leaky.to(current.device)
        mem = torch.zeros_like(current[0])
        out = []
        for step in current.unbind(0):   # not current[t]: its backward builds T full-size gradients
            spk, mem = leaky(step, mem)
            out.append(spk)
        return torch.stack(out)
    return [Impl("snntorch", "snntorch", "Leaky(reset_mechanism='zero') looped over T (input unbound once)", fn,
                 note="fires on U > theta (ours: U >= theta)")]


def _norse() -> list[Impl]:
    import torch
    from norse.torch import LIFBoxCell
    from norse.torch.functional.lif_box import LIFBoxParameters

    dt = 1e-3
    p = LIFBoxParameters(tau_mem_inv=torch.as_tensor((1 - LEAK) / dt), v_leak=torch.as_tensor(0.0),
                         v_th=torch.as_tensor(THETA), v_reset=torch.as_tensor(0.0), method="super",
                         alpha=torch.as_tensor(100.0))
    cell = LIFBoxCell(p, dt=dt)

    def fn(current):
        cell.to(current.device)
        state, out = None, []
        for step in current.unbind(0):
            z, state = cell(step, state)
            out.append(z)
        return torch.stack(out)
    return [Impl("norse", "norse", "LIFBoxCell looped over T (input unbound once, in units of 8 I)", fn,
                 input_gain=1 / (1 - LEAK),
                 same_gradient=False, note="SuperSpike surrogate, reset gradient not detached")]


PEERS = {"spikingjelly": _spikingjelly, "snntorch": _snntorch, "norse": _norse}


def peer_impls(names) -> tuple[list[Impl], dict]:
    """The peers that are installed, and name -> reason for each that is not."""
    impls, skipped = [], {}
    for name in names:
        if importlib.util.find_spec(name) is None:
            skipped[name] = f"not installed (pip install 'spiketandem[bench]' or pip install {name})"
            continue
        try:
            impls += PEERS[name]()
        except Exception as exc:  # a peer that imports but cannot build its neuron here
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return impls, skipped


# ---- measurement -------------------------------------------------------------------------------------------

class Subject:
    """One implementation in one setup: its own leaf input (scaled to its units) and, for Linear + LIF,
    its own copy of the same Linear layer."""

    def __init__(self, impl: Impl, x: torch.Tensor, grad: torch.Tensor, linear: nn.Linear | None):
        import torch
        from torch import nn
        self.impl = impl
        self.x = x.detach().clone().requires_grad_(True)
        self.grad = grad
        self.linear = None
        if linear is not None:   # Norse's input gain is folded into its copy of the weights
            self.linear = nn.Linear(linear.in_features, linear.out_features).to(x.device)
            with torch.no_grad():
                self.linear.weight.copy_(linear.weight * impl.input_gain)
                self.linear.bias.copy_(linear.bias * impl.input_gain)
        elif impl.input_gain != 1:
            with torch.no_grad():
                self.x.mul_(impl.input_gain)
        self.times: list[float] = []

    def forward(self) -> torch.Tensor:
        return self.impl.fn(self.linear(self.x) if self.linear is not None else self.x)

    def step(self) -> None:
        self.forward().backward(self.grad)
        self.x.grad = None
        if self.linear is not None:
            self.linear.zero_grad(set_to_none=True)

    def input_gradient(self) -> torch.Tensor:
        self.forward().backward(self.grad)
        g = self.x.grad * self.impl.input_gain   # back to dL/dI in our units
        self.x.grad = None
        return g


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def verify(subjects: list[Subject], reference: Subject) -> dict[str, dict]:
    """Spike agreement with ours and (same surrogate and reset gradient) the input-gradient error."""
    import torch
    with torch.no_grad():
        ref_spikes = reference.forward()
    ref_grad = reference.input_gradient() if reference.linear is None else None
    out = {}
    for s in subjects:
        with torch.no_grad():
            spikes = s.forward()
        check = {"spike_agreement": float((spikes == ref_spikes).float().mean()),
                 "firing_rate": float(spikes.float().mean())}
        if ref_grad is not None and s.impl.same_gradient:
            g = s.input_gradient()
            check["input_grad_max_rel_err"] = float((g - ref_grad).abs().max() / ref_grad.abs().max().clamp_min(1e-30))
        out[s.impl.name] = check
    return out


def measure(setup: str, T: int, n: int, impls: list[Impl], args, device, log) -> list[dict]:
    import torch
    from torch import nn
    from .memory import peak_bytes
    g = torch.Generator().manual_seed(args.seed)
    B = args.batch_size
    if setup == "neuron":
        x = (torch.rand(T, B, n, generator=g) * args.input_scale).to(device)
        linear = None
    else:
        x = torch.rand(T, B, n, generator=g).to(device)
        torch.manual_seed(args.seed)
        linear = nn.Linear(n, n).to(device)
    grad = torch.randn(T, B, n, generator=g).to(device)
    subjects = [Subject(i, x, grad, linear) for i in impls]
    reference = next(s for s in subjects if s.impl.name == "spiketandem-reference")
    checks = verify(subjects, reference)
    peaks = {}
    for s in subjects:
        for _ in range(args.warmup):
            s.step()
        peaks[s.impl.name] = peak_bytes(s.step, device)
    for _ in range(args.repeats):
        for s in subjects:
            _sync(device)
            t0 = time.perf_counter()
            s.step()
            _sync(device)
            s.times.append(time.perf_counter() - t0)
    rows = []
    for s in subjects:
        row = {"setup": setup, "T": T, "batch": B, "n": n, "implementation": s.impl.name,
               "framework": s.impl.framework, "path": s.impl.path, "seconds": statistics.median(s.times),
               "peak_memory_bytes": peaks[s.impl.name],
               "bytes_per_neuron_step": peaks[s.impl.name] / (T * B * n), **checks[s.impl.name]}
        if s.impl.note:
            row["note"] = s.impl.note
        log(f"  {setup:<7} T={T:<4} {s.impl.name:<26} {row['seconds'] * 1e3:9.1f} ms  "
            f"peak {row['peak_memory_bytes'] / 2**20:8.1f} MiB ({row['bytes_per_neuron_step']:5.1f} B/neuron/step)  "
            f"spikes agree {row['spike_agreement']:.6f}")
        rows.append(row)
    return rows


def ratios(rows: list[dict]) -> dict:
    """Per setup and T: peer time / our time (speed-up) and our peak memory / peer's, for every peer row."""
    out = {}
    for setup, T in sorted({(r["setup"], r["T"]) for r in rows}):
        here = {r["implementation"]: r for r in rows if r["setup"] == setup and r["T"] == T}
        ours = here.get(OURS)
        if ours is None:
            continue
        out[f"{setup}@T{T}"] = {name: {"speedup": r["seconds"] / ours["seconds"],
                                       "memory_ratio": (ours["peak_memory_bytes"] / r["peak_memory_bytes"]
                                                        if r["peak_memory_bytes"] else None)}
                                for name, r in here.items() if name != OURS}
    return out


def target(rows: list[dict], T: int = 100) -> dict:
    """The neuron's performance target: the neuron alone at T=100, at least 2x faster and at most 0.5x the peak memory of the fastest
    SpikingJelly path that runs here."""
    here = [r for r in rows if r["setup"] == "neuron" and r["T"] == T]
    ours = next((r for r in here if r["implementation"] == OURS), None)
    sj = [r for r in here if r["framework"] == "spikingjelly"]
    if ours is None or not sj:
        return {"evaluated": False, "reason": f"needs the neuron alone at T={T} with SpikingJelly installed"}
    fastest = min(sj, key=lambda r: r["seconds"])
    speedup = fastest["seconds"] / ours["seconds"]
    memory = ours["peak_memory_bytes"] / fastest["peak_memory_bytes"]
    return {"evaluated": True, "fastest_spikingjelly": fastest["implementation"], "speedup": speedup,
            "memory_ratio": memory, "speed_met": speedup >= 2.0, "memory_met": memory <= 0.5}


def run(args, log) -> dict:
    import torch
    from ..train import resolve_device
    from . import environment
    device = resolve_device(args.device)
    sizes = [*args.T, *args.linear_T, args.batch_size, args.n, args.linear_n, args.repeats]
    if any(v <= 0 for v in sizes) or args.warmup < 0 or (args.threads or 1) <= 0:
        raise SpiketandemError("--T, --linear-T, --batch-size, --n, --linear-n, --repeats, --threads must be "
                               "positive and --warmup non-negative")
    if args.threads:
        torch.set_num_threads(args.threads)
    peers, skipped = peer_impls(args.peers)
    for name, why in skipped.items():
        log(f"  skipping {name}: {why}")
    impls = our_impls() + peers
    method = ("torch.cuda max_memory_allocated - memory_allocated around the step" if device.type == "cuda" else
              "LiveTensorBytes: peak live bytes of tensors created by the step (aten and custom op outputs)")
    log(f"neuron benchmark on {device} ({torch.get_num_threads()} threads): batch {args.batch_size}; memory = {method}")
    rows = []
    for T in sorted(args.T):
        rows += measure("neuron", T, args.n, impls, args, device, log)
    for T in sorted(args.linear_T):
        rows += measure("linear", T, args.linear_n, impls, args, device, log)
    result = {"benchmark": NAME, **environment(device), "memory_method": method,
              "dynamics": {"kind": "lif", "leak": LEAK, "threshold": THETA, "reset": "zero", "detach_reset": True,
                           "surrogate": f"atan(alpha={ATAN_ALPHA})"},
              "settings": {"T": sorted(args.T), "linear_T": sorted(args.linear_T), "batch_size": args.batch_size,
                           "n": args.n, "linear_n": args.linear_n, "repeats": args.repeats, "warmup": args.warmup,
                           "input_scale": args.input_scale},
              "versions": _versions(), "skipped": skipped, "rows": rows,
              "ratios": ratios(rows),
              "target": target(rows)}
    for key, peers_ in result["ratios"].items():
        log(f"  {key}, {OURS} vs: " + "; ".join(
            f"{name} {r['speedup']:.2f}x faster, {r['memory_ratio']:.2f}x the memory"
            for name, r in peers_.items() if r["memory_ratio"] is not None))
    return result


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in FRAMEWORKS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
