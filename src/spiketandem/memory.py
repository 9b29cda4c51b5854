"""A run's peak memory, planned before it starts (`train`): a run that cannot fit is refused in one line,
naming what would fit, instead of ending in an allocator traceback hours later.

The peak is measured on a few tiny real steps and extrapolated.  Every tensor storage is counted from
its allocation to its release (``LiveTensorBytes``, a dispatch mode that sees every operator's outputs),
which gives P, the most tensor memory alive at once, during

- the forward and backward pass of one training step at batch B and window T (its optimizer step skipped),
  measured at (B1, T1), (B2, T1) and (B1, T2) and modelled as  P(B, T) = F + B (a + v (T - T1)):  F what does
  not grow with the batch (gradients), a per sample, v per sample and time step (the states BPTT keeps;
  v = 0 for rules whose memory does not grow with T, and for ANNs); and a whole step of two samples, whose
  peak bounds the optimizer step's temporaries (measured after a first step has made the optimizer's state);
- the final evaluation (accuracy, SynOps, firing records) of B images at one window T, modelled the same
  way and taken at its batch, max(B, 256) images or the test set, and its largest window.

The run's peak is then  R + W + S + max(P_train(B, T), P_step(2)) + P_eval(B_eval, T_eval)  on the CPU, where the
process's resident memory is what counts and the C allocator keeps what training freed (``allocator.py``) in
blocks the evaluation's tensors, of other sizes, seldom reuse; on a GPU, whose caching allocator reuses them
and where the peak of live tensors counts, the larger of the two phases instead of their sum.  R is the
process's resident memory after the probes (interpreter, libraries and their one-time set-up, the data), W the
student's and teacher's own weights, S the optimizer's state; the plan is never less than the process's peak
so far.  Measured against the peaks of real runs in tests/test_memory.py (within 25 %).  Probes use a
throwaway student (random teacher weights: memory does not depend on their values), never the run's own
objects; the run itself starts from its seed as before.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import resource
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .errors import SpiketandemError

PROBE_BATCHES = (4, 8)
PROBE_STEP = 2  # the batch of the optimizer's first step and of the whole-step probe (BatchNorm needs 2 samples)
PROBE_WINDOWS = (2, 4)
EVAL_BATCH = 256  # evaluation batches hold max(--batch-size, 256) images (data/feeding.py)
GIB = 2 ** 30


class LiveTensorBytes(TorchDispatchMode):
    """Inside ``with LiveTensorBytes() as live:``, ``live.peak`` is the most bytes of tensor storage created
    in the block that were alive at once (a storage is counted once, however many views it has, and until
    it is freed)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def _freed(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self._sizes:
                    self._sizes[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._freed, key)
        return out


@dataclass(frozen=True)
class LinearMemory:
    """P(B, T) = fixed + B (per_sample + per_step (T - T1)): peak tensor bytes of a step at batch B, window T."""

    fixed: float
    per_sample: float
    per_step: float
    T1: int

    def __call__(self, batch: int, T: int) -> float:
        return self.fixed + batch * (self.per_sample + self.per_step * (T - self.T1))

    @classmethod
    def fit(cls, measure, windows: tuple[int, ...]) -> "LinearMemory":
        """From ``measure(batch, T)`` at (B1, T1), (B2, T1) and, with a second window, (B1, T2)."""
        (b1, b2), t1 = PROBE_BATCHES, windows[0]
        p11, p21 = measure(b1, t1), measure(b2, t1)
        per_sample = max(0.0, (p21 - p11) / (b2 - b1))
        per_step = 0.0
        if len(windows) > 1:
            per_step = max(0.0, (measure(b1, windows[1]) - p11) / (b1 * (windows[1] - t1)))
        return cls(max(0.0, p11 - b1 * per_sample), per_sample, per_step, t1)


@dataclass(frozen=True)
class MemoryPlan:
    """The planned peak of a run (bytes) and its parts."""

    peak: float
    resident: float        # R: the process now
    weights: float         # W + S: student and teacher, the optimizer's state
    train: LinearMemory
    step: float            # a whole training step of two samples (the optimizer step's temporaries)
    evaluation: LinearMemory
    batch: int
    T: int
    eval_batch: int
    eval_T: int            # the largest evaluated window: max(T, eval_windows)
    eval_windows: int      # the largest of --eval-T (0 where only T is evaluated: ANNs, event frames)
    phases_share: bool     # the evaluation reuses what training freed (a GPU's caching allocator)

    def tensors(self, batch: int | None = None, T: int | None = None) -> float:
        """Tensor bytes at the peak, at ``batch`` and ``T`` (default: the run's; the evaluation's windows follow)."""
        batch, T = batch or self.batch, T or self.T
        training = max(self.train(batch, T), self.step)
        evaluation = self.evaluation(self.eval_batch, max(T, self.eval_windows))
        return max(training, evaluation) if self.phases_share else training + evaluation


def resident_bytes() -> int:
    """The process's resident memory now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_resident_bytes()


def peak_resident_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def available_bytes(device: torch.device) -> int | None:
    """Memory a run may still take: free GPU memory on CUDA; on the CPU the system's available memory
    (``MemAvailable``), or what the container's cgroup limit leaves, whichever is less.  None if unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            if limit != "max":
                found.append(int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


class _NoStep:
    """An optimizer whose ``step`` does nothing (everything else is the optimizer's own): a training step's
    forward and backward pass, measured alone."""

    def __init__(self, optimizer):
        self._optimizer = optimizer

    def step(self, *args, **kwargs):
        return None

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


def _subset(data, n: int):
    """The first ``n`` training and test samples of a built-in dataset (probes need a few)."""
    return dataclasses.replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n],
                               test_x=data.test_x[:n], test_y=data.test_y[:n])


def plan_memory(cfg, rule_cls, info, data, teacher, device: torch.device, final_evaluation) -> MemoryPlan:
    """Measure tiny steps of a throwaway ``rule_cls`` student (see the module docstring) and plan the peak of
    ``cfg``'s run: training at its per-process batch and T, evaluation at max(B, 256) images (at most the test
    set) and its largest window.  ``final_evaluation(rule, data, T)``: the run's own final evaluation."""
    from . import distributed
    from .data.feeding import calibration_images, evaluation_batches
    from .train import make_optimizer, training_context
    batch = max(1, cfg.batch_size // distributed.world_size())
    windowless = not rule_cls.spiking or cfg.encoding == "frames"  # one window: an ANN, or frames binned into T
    windows = (cfg.T,) if windowless or cfg.T <= PROBE_WINDOWS[-1] else PROBE_WINDOWS
    eval_windows = (cfg.T,) if windowless else PROBE_WINDOWS
    small = _subset(data, max(PROBE_BATCHES))
    images, labels = next(iter(evaluation_batches(small, cfg, device)))
    rules = {}

    def rule_at(T: int):
        """A throwaway student at window T, its step context and optimizer, after one step (the state)."""
        if T not in rules:
            rule = rule_cls(cfg.replace(T=T), info, teacher, calibration_images(small, device))
            rule.setup(small, device)
            context, optimizer = training_context(rule, cfg, device), make_optimizer(rule, cfg)
            if cfg.epochs > 0:  # a rule that trains nothing (conversion) has no training step to probe
                rule.train(True)
                with context():
                    rule.train_step(images[:PROBE_STEP], labels[:PROBE_STEP], optimizer, 0)
            rules[T] = (rule, context, optimizer)
        return rules[T]

    def train_peak(b: int, T: int, optimizer_steps: bool = False) -> float:
        rule, context, optimizer = rule_at(T)
        rule.train(True)
        with LiveTensorBytes() as live, context():
            rule.train_step(images[:b], labels[:b], optimizer if optimizer_steps else _NoStep(optimizer), 0)
        return live.peak

    def eval_peak(b: int, T: int) -> float:
        rule = rule_at(windows[0])[0]
        with LiveTensorBytes() as live:
            final_evaluation(rule, _subset(small, b), T)
        return live.peak

    state = torch.get_rng_state()
    try:
        if cfg.epochs > 0:
            train = LinearMemory.fit(train_peak, windows)
            step = train_peak(PROBE_STEP, windows[0], optimizer_steps=True)
        else:
            train, step = LinearMemory(0.0, 0.0, 0.0, windows[0]), 0.0
        evaluation = LinearMemory.fit(eval_peak, eval_windows)
        rule, _, optimizer = rules[windows[0]]
        modules = list(rule.modules().values()) + ([teacher] if teacher is not None else [])
        weights = sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()])
        weights += sum(t.numel() * t.element_size() for kept in optimizer.state.values() for t in kept.values()
                       if torch.is_tensor(t))
    finally:
        torch.set_rng_state(state)
    rules.clear()
    gc.collect()
    # after the probes: the libraries' one-time set-up (kernel libraries, their caches) is resident now, and
    # the allocator keeps what the probes freed for the run to reuse
    resident_now, peak_so_far = resident_bytes(), peak_resident_bytes()
    eval_windows = 0 if windowless else max(cfg.eval_T)
    eval_batch = min(max(cfg.batch_size, EVAL_BATCH), len(data.test_y))
    plan = MemoryPlan(0.0, resident_now, weights, train, step, evaluation, batch, cfg.T, eval_batch,
                      max(cfg.T, eval_windows), eval_windows, device.type == "cuda")
    return dataclasses.replace(plan, peak=max(peak_so_far, resident_now + weights + plan.tensors()))


def _largest(fits, upper: int) -> int:
    """The largest n in [1, upper] with ``fits(n)`` (``fits`` true up to some n, false after), else 0."""
    lo, hi = 0, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def refusal(plan: MemoryPlan, available: int, cfg, rule_cls) -> str:
    """The one line refusing a run planned above ``available`` bytes, with what would fit: a smaller batch, a
    shorter window (the evaluation at T included), or for offline LTL, training that does not keep every
    layer's T steps."""
    def needs(batch: int, T: int) -> float:  # above what the process holds now
        return plan.weights + plan.tensors(batch, T)
    fits = []
    batch = _largest(lambda b: needs(b, plan.T) <= available, plan.batch - 1)
    if batch:
        fits.append(f"--batch-size {batch}")
    if plan.train.per_step > 0 or plan.evaluation.per_step > 0:
        T = _largest(lambda t: needs(plan.batch, t) <= available, plan.T - 1)
        if T:
            fits.append(f"--T {T}")
    evaluation_fits = plan.weights + plan.step + plan.evaluation(plan.eval_batch, plan.eval_T) <= available
    if rule_cls.name == "ltl-offline" and evaluation_fits:  # then training's BPTT is what does not fit
        if cfg.options.get("schedule", "parallel") == "parallel":
            fits.append("--schedule sequential (one layer's BPTT at a time)")
        fits.append("--rule ltl-online (its memory does not grow with T)")
    return (f"this run needs about {plan.peak / GIB:.1f} GiB of memory at its peak (batch {plan.batch}, T = {plan.T}, "
            f"evaluation at T = {plan.eval_T}; {plan.resident / GIB:.1f} GiB in use now) but {available / GIB:.1f} GiB "
            "is available; what would fit: " + ("; ".join(fits) if fits else "a machine with more memory")
            + " (docs/performance.md: memory)")


def check_memory(cfg, rule_cls, info, data, teacher, device: torch.device, log, final_evaluation) -> MemoryPlan | None:
    """Plan the run's memory (``plan_memory``) and refuse it, in one line, where it cannot fit; else say the
    plan.  None (and nothing said) for runs planned elsewhere: pipelined stages, user data; None (and why
    said) where a probe cannot run, so that the planner never stops a run that could."""
    if cfg.pipeline_stages > 1 or not hasattr(data, "train_x"):
        return None
    if rule_cls.spiking and cfg.neuron_backend != "reference":
        from .kernels import prepare as prepare_kernels
        prepare_kernels(device)  # a one-time kernel build is announced, and kept out of the probes
    try:
        plan = plan_memory(cfg, rule_cls, info, data, teacher, device, final_evaluation)
    except SpiketandemError:
        raise  # a bad setting: the run itself would refuse it the same way
    except Exception as e:  # noqa: BLE001 - a probe the planner cannot run must not stop a run that can
        log(f"memory: not planned (a probe step failed: {type(e).__name__}: {str(e).splitlines()[0][:120]})")
        return None
    available = available_bytes(device)
    if available is not None and plan.peak - plan.resident > available:
        raise SpiketandemError(refusal(plan, available, cfg, rule_cls))
    room = f" of the {(available + plan.resident) / GIB:.1f} GiB it may use" if available is not None else ""
    log(f"memory: planned peak {plan.peak / GIB:.2f} GiB{room} (from tiny steps; docs/performance.md: memory)")
    return plan
