"""Running the Speck-mapped student: the chip's input events, spiketandem's own integer simulation of the
discretized layers, sinabs' forward of the mapped ``DynapcnnNetwork``, their per-layer spike counts and accuracy.

The integer simulation (:func:`integer_forward`) is written from the chip's neuron equations, not from sinabs'
layers: for each layer, in float64 (exact for these integers, all below 2^53)::

    I[t] = W * x[t] + b                         (integer weights W, bias b; conv, or a linear as a full-size conv)
    v   <- v + I[t]
    S[t] = [v >= theta]          (one spike per step: "single")   or   max(0, trunc(v / theta))  ("multi")
    v   <- v - theta S[t]        (reset by subtraction)          or   v [S[t] = 0]  (reset to zero)
    v   <- max(v, v_min)                                             (the 16-bit floor)
    x_next[t] = sum-pool_k(S[t])

with ``v`` starting at the discretized starting membrane.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rate_events(x: torch.Tensor, T: int, seed: int) -> torch.Tensor:
    """The chip's input for rate-encoded images ``x [B, C, H, W]``: ``[B, T, 2C, H, W]`` event counts (ON
    channels then OFF), drawn as the student draws its spikes: P(spike) = |x| / max|x| per sample, sign(x)."""
    g = torch.Generator().manual_seed(seed)
    peak = x.abs().flatten(1).amax(1).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
    prob = (x.abs() / peak).unsqueeze(1).expand(x.shape[0], T, *x.shape[1:])
    fired = torch.bernoulli(prob.double(), generator=g)
    sign = x.sign().unsqueeze(1)
    return torch.cat([fired * (sign > 0), fired * (sign < 0)], dim=2)


def integer_forward(layers: list[dict], events: torch.Tensor, spike_fn: str = "single",
                    starts: list[float] | None = None, highest: list | None = None) -> list[torch.Tensor]:
    """Spike counts per layer ``[B, C, H, W]`` (summed over time, before pooling) of the integer layers
    (``speck.integer_layers``) on ``events [B, T, C, H, W]`` (module docstring).  ``highest``: a list that
    receives each layer's largest membrane value (after integration, before the spike), to hold against the
    chip's 16-bit state (at most 32767)."""
    B, T = events.shape[:2]
    x = events.double().flatten(0, 1)
    counts = []
    for i, layer in enumerate(layers):
        current = F.conv2d(x, layer["weight"], layer["bias"], stride=layer["stride"], padding=layer["padding"])
        current = current.reshape(B, T, *current.shape[1:])
        v = torch.full_like(current[:, 0], float(starts[i]) if starts else 0.0)
        theta, v_min = layer["threshold"], layer["v_min"]
        spikes = torch.empty_like(current)
        top = float(v.max()) if v.numel() else 0.0
        for t in range(T):
            v = v + current[:, t]
            top = max(top, float(v.max()))
            if spike_fn == "single":
                s = (v >= theta).double()
            else:
                s = torch.where(v > 0, torch.div(v, theta, rounding_mode="trunc"), torch.zeros_like(v))
            v = v - theta * s if layer["reset"] == "subtract" else torch.where(s > 0, torch.zeros_like(v), v)
            v = torch.clamp(v, min=v_min)
            spikes[:, t] = s
        counts.append(spikes.sum(1))
        if highest is not None:
            highest.append(top)
        x = spikes.flatten(0, 1)
        k = layer["pool"]
        if k > 1:
            c = x.shape[1]
            x = F.conv2d(x, torch.ones(c, 1, k, k, dtype=x.dtype), stride=k, groups=c)
    return counts


def sinabs_forward(net, events: torch.Tensor, starts: list[float] | None = None) -> list[torch.Tensor]:
    """Spike counts per layer ``[B, C, H, W]`` (summed over time) of sinabs' forward of the mapped network."""
    B, T = events.shape[:2]
    layers = [layer for _, layer in sorted(net.dynapcnn_layers.items())]
    recorded: list = [None] * len(layers)
    hooks = []
    for i, layer in enumerate(layers):
        spk = layer.spk_layer
        spk.init_state_with_shape((B, *layer.get_neuron_shape()))
        if starts and starts[i]:
            spk.v_mem.fill_(float(starts[i]))
        hooks.append(spk.register_forward_hook(
            lambda m, a, out, i=i: recorded.__setitem__(i, out.detach().reshape(B, T, *out.shape[1:]).sum(1))))
    try:
        with torch.no_grad():
            net(events.float().flatten(0, 1))
    finally:
        for h in hooks:
            h.remove()
    return [r.double() for r in recorded]


def compare_counts(ours: list[torch.Tensor], theirs: list[torch.Tensor], names: list[str]) -> list[dict]:
    """Per layer: total spikes in each simulation and the neurons (per sample) whose counts differ."""
    rows = []
    for name, a, b in zip(names, ours, theirs):
        rows.append({"layer": name, "spikes_spiketandem": int(a.sum()), "spikes_sinabs": int(b.sum()),
                     "neurons_differing": int((a != b).sum()), "neurons": int(a.numel()),
                     "identical": bool(torch.equal(a, b))})
    return rows


def accuracy_of_counts(readout_counts: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of samples whose most-spiking readout neuron (the lowest index on a tie) is the label."""
    pred = readout_counts.flatten(1).argmax(1)
    return float((pred == labels).double().mean())
