"""A reference simulator of a NIR graph, written from the NIR node definitions alone.

It reads nothing of spiketandem's student code: each node is simulated from its NIR parameters,
with the graph's metadata giving the time step ``dt``, the spike condition and the reset scheme::

    a node's input is the sum of the outputs of its incoming edges (residual additions)
    Affine:    y = W x + b                 Conv1d/Conv2d: y = conv(x, W) + b      Scale: y = s x
    SumPool2d: y = sum over each k x k window   AvgPool2d: its mean      Flatten: y = x.flatten()
    LIF:       v <- v + dt/tau (v_leak - v + r I)       IF: v <- v + dt r I
               z = [v >= v_threshold] (metadata "spike_condition" ">=", else v > v_threshold)
               reset "zero": v <- v_reset where z;  "subtract": v <- v - amount where z, with amount the
               node's metadata "reset_subtract_amount" (default v_threshold)

Used to check an exported file independently of any third-party importer.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .nir_export import _need_nir, _topological


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def simulate_nir(graph, x: torch.Tensor, T: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``graph`` for T steps on the constant input ``x`` [B, ...] (fed at every step).

    Returns the Output node's value at every step ``[T, B, ...]`` and, per IF/LIF node, the spike
    count of each neuron summed over time ``[B, ...]``.  Computed in float64.
    """
    nir = _need_nir()
    meta = graph.metadata or {}
    dt = float(meta.get("dt", 1.0))
    strict = meta.get("spike_condition", ">") != ">="
    reset = meta.get("reset", "zero")
    order = _topological(graph)
    inputs: dict[str, list] = {}
    for a, b in dict.fromkeys(map(tuple, graph.edges)):  # an edge listed twice is still one edge
        inputs.setdefault(b, []).append(a)
    x = x.detach().cpu().double()
    state: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    outputs = []
    for _ in range(T):
        values: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                values[name] = x
                continue
            if name not in inputs:
                raise ValueError(f"reference simulator: node {name} has no input edge")
            v_in = sum(values[i] for i in inputs[name])
            if isinstance(node, nir.Output):
                values[name] = v_in
                outputs.append(v_in)
            elif isinstance(node, nir.Affine):
                values[name] = v_in @ _t(node.weight).T + _t(node.bias)
            elif isinstance(node, nir.Linear):
                values[name] = v_in @ _t(node.weight).T
            elif isinstance(node, nir.Scale):
                values[name] = v_in * _t(node.scale)
            elif isinstance(node, nir.Conv1d):
                values[name] = F.conv1d(v_in, _t(node.weight), _t(node.bias), int(np.atleast_1d(node.stride)[0]),
                                        int(np.atleast_1d(node.padding)[0]), int(np.atleast_1d(node.dilation)[0]),
                                        int(node.groups))
            elif isinstance(node, nir.Conv2d):
                values[name] = F.conv2d(v_in, _t(node.weight), _t(node.bias), tuple(np.atleast_1d(node.stride)),
                                        tuple(np.atleast_1d(node.padding)), tuple(np.atleast_1d(node.dilation)),
                                        int(node.groups))
            elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                k = tuple(int(v) for v in node.kernel_size)
                y = F.avg_pool2d(v_in, k, tuple(int(v) for v in node.stride), tuple(int(v) for v in node.padding))
                values[name] = y * (k[0] * k[1]) if isinstance(node, nir.SumPool2d) else y
            elif isinstance(node, nir.Flatten):
                # NIR shapes exclude the batch: dims shift by one here
                end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
                values[name] = v_in.flatten(node.start_dim + 1, end)
            elif isinstance(node, (nir.IF, nir.LIF)):
                v = state.get(name, torch.zeros_like(v_in))
                if isinstance(node, nir.LIF):
                    v = v + dt / _t(node.tau) * (_t(node.v_leak) - v + _t(node.r) * v_in)
                else:
                    v = v + dt * _t(node.r) * v_in
                thr = _t(node.v_threshold)
                z = (v > thr) if strict else (v >= thr)
                z = z.double()
                amount = (node.metadata or {}).get("reset_subtract_amount", thr)
                v = v - z * _t(amount) if reset == "subtract" else torch.where(z > 0, _t(node.v_reset).expand_as(v), v)
                state[name] = v
                counts[name] = counts.get(name, 0) + z
                values[name] = z
            else:
                raise TypeError(f"reference simulator: unsupported NIR node {type(node).__name__} ({name})")
    return torch.stack(outputs), counts
