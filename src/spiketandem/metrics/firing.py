"""Firing statistics of a student's neuron layers, from the spikes a forward records.

For a layer with spikes ``S[t, b, i]`` over a window of T steps (``student.context(T, B, records={})``):

    rate     = mean_{t,b,i} S[t,b,i]                 spikes per neuron per time step
    silent   = mean_b  mean_i 1[sum_t S[t,b,i] = 0]    fraction of neurons that stay silent for a sample
    dead     = mean_i  1[sum_{t,b} S[t,b,i] = 0]       fraction silent for every sample seen
    hist[k]  = fraction of (sample, neuron) pairs with exactly k spikes, k = 0..T (rate k / T)
"""
from __future__ import annotations

import torch



class FiringStats:
    """Accumulates per-layer firing statistics over batches of recorded spikes ``{name: [T, B, ...]}``."""

    def __init__(self):
        self.T: int | None = None
        self._spikes: dict[str, float] = {}
        self._silent: dict[str, float] = {}
        self._samples: dict[str, int] = {}
        self._neurons: dict[str, int] = {}
        self._ever: dict[str, torch.Tensor] = {}
        self._hist: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, records: dict) -> None:
        for name, spikes in records.items():
            T, B = spikes.shape[:2]
            if self.T is None:
                self.T = T
            elif T != self.T:
                raise ValueError(f"FiringStats got a window of {T} steps after {self.T}; use one per window")
            counts = (spikes.detach() != 0).reshape(T, B, -1).sum(0)  # [B, neurons]: spikes per neuron
            self._neurons[name] = counts.shape[1]
            self._samples[name] = self._samples.get(name, 0) + B
            self._spikes[name] = self._spikes.get(name, 0.0) + float(counts.sum(dtype=torch.float64))
            self._silent[name] = self._silent.get(name, 0.0) + float((counts == 0).sum(dtype=torch.float64))
            fired = (counts > 0).any(0).cpu()
            self._ever[name] = fired | self._ever[name] if name in self._ever else fired
            hist = torch.bincount(counts.flatten().cpu(), minlength=T + 1)[: T + 1].to(torch.float64)
            self._hist[name] = self._hist[name] + hist if name in self._hist else hist

    def summary(self) -> dict[str, dict]:
        """name -> {rate, silent, dead, neurons, samples}, in recording order."""
        out = {}
        for name, n in self._neurons.items():
            pairs = self._samples[name] * n
            out[name] = {"rate": self._spikes[name] / (pairs * self.T), "silent": self._silent[name] / pairs,
                         "dead": 1.0 - float(self._ever[name].double().mean()), "neurons": n,
                         "samples": self._samples[name]}
        return out

    def histograms(self) -> dict[str, list[float]]:
        """name -> fractions of (sample, neuron) pairs with k = 0..T spikes in the window."""
        return {name: (h / h.sum()).tolist() for name, h in self._hist.items()}


def spike_raster(records: dict, sample: int = 0, max_neurons: int = 64, seed: int = 0) -> dict[str, dict]:
    """Spike times of one sample: per layer, up to ``max_neurons`` neurons drawn at random (fixed
    seed) among those that fire at least once in the window, listed by their flat index.

    name -> {"neurons": layer size, "active": neurons that fired, "shown": [index, ...],
    "times": [[t, ...] per shown neuron], "T": window}."""
    generator = torch.Generator().manual_seed(seed)
    raster = {}
    for name, spikes in records.items():
        T = spikes.shape[0]
        s = (spikes[:, sample].detach() != 0).reshape(T, -1).cpu()  # [T, neurons]
        active = torch.nonzero(s.any(0)).flatten()
        pick = active[torch.randperm(active.numel(), generator=generator)[:max_neurons]].sort().values
        raster[name] = {"neurons": s.shape[1], "active": int(active.numel()), "shown": pick.tolist(),
                        "times": [torch.nonzero(s[:, i]).flatten().tolist() for i in pick.tolist()], "T": T}
    return raster


@torch.no_grad()
def record_activity(student, batches, T: int, max_samples: int = 512, raster_neurons: int = 64) -> dict:
    """Run a ``Student`` at window T over (x, y) batches (up to ``max_samples`` images), recording
    every neuron layer.  Returns {"T", "samples", "layers": summary (plus each layer's teacher module
    ``path``), "histograms", "raster" (first image)}."""
    stats, raster, seen = FiringStats(), None, 0
    was_training = student.training
    student.train(False)
    try:
        for x, _ in batches:
            x = x[: max_samples - seen]
            ctx = student.context(T, x.shape[0], records={})
            student.run(x, ctx)
            stats.update(ctx.records)
            if raster is None:
                raster = spike_raster(ctx.records, 0, raster_neurons)
            seen += x.shape[0]
            if seen >= max_samples:
                break
    finally:
        student.train(was_training)
    layers = stats.summary()
    neurons = getattr(student, "neurons", {})
    for name, entry in layers.items():  # the teacher's module path of the ReLU each layer replaced
        entry["path"] = getattr(neurons.get(name), "path", name)
    return {"T": T, "samples": seen, "layers": layers, "histograms": stats.histograms(), "raster": raster or {}}
