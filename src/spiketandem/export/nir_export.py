"""Student -> NIR graph (Neuromorphic Intermediate Representation, https://neuroir.org).

Our neuron is a discrete-time map (``neuron.py``, Eq. 1-3)::

    U[t] = a U[t-1] + I[t]   (- theta S[t-1] for reset by subtraction; x (1 - S[t-1]) for reset to zero)
    S[t] = H(U[t] - theta)

NIR neurons are ODEs.  Forward-Euler with step ``dt`` of the NIR LIF ``tau dv/dt = (v_leak - v) + r I``
gives ``v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t]``.  We choose

    LIF: tau = dt / (1 - a),  r = 1,  v_leak = 0,  v_threshold = (1 - a) theta,  v_reset = 0
         -> v[t] = a v[t-1] + (1 - a) I[t], i.e. v = (1 - a) U exactly, same spikes;
    IF:  r = 1 / dt,  v_threshold = theta,  v_reset = 0   (dv/dt = r I  ->  v[t] = v[t-1] + I[t]).

``r = 1`` for LIF is what the Norse and snnTorch importers assume; scaling the membrane by (1 - a)
and the threshold with it leaves every spike unchanged.

Spike amplitude: a student layer emits ``amplitude * S``.  NIR neurons emit unit spikes, so the
amplitude is folded into the next weight layer: ``W (A S) + b = (A W) S + b``.  Average pooling (and
flatten) between the two is linear, so the factor passes through it; an average pool followed by a
weight layer before the next neuron is written as a sum pool with its ``1/k^2`` folded in the same
way (Norse imports SumPool2d but not AvgPool2d).
"""
from __future__ import annotations

import operator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import SpiketandemError
from ..neuron import SpikingNeuron, TimeRepeat
from ..student import Student

FORMAT = "spiketandem-nir-1"
FLATTEN_METHODS = ("flatten", "view", "reshape")
IGNORED_METHODS = ("size", "contiguous")
DEFAULT_DT = 1e-4  # seconds; snnTorch's importer hard-codes this step


def _need_nir():
    try:
        import nir
    except ImportError:
        raise SpiketandemError("NIR export needs the `nir` package: pip install 'spiketandem[nir]' "
                               "(or pip install nir)") from None
    return nir


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy().astype(np.float32)


def _chain(gm: fx.GraphModule) -> list[fx.Node]:
    """The student's nodes as one chain (input -> ... -> output); refuses branching graphs."""
    nodes = []
    for node in gm.graph.nodes:
        if node.op == "get_attr" or (node.op in ("call_method", "call_function") and _is_ignored(node)):
            continue
        nodes.append(node)
    for prev, node in zip(nodes, nodes[1:]):
        tensor_inputs = [n for n in node.all_input_nodes if not _is_ignored(n)]
        if tensor_inputs != [prev]:
            raise SpiketandemError(
                f"NIR export handles feed-forward chains (conv/linear/pool/flatten/neurons); the student's node "
                f"{node.name!r} takes {[n.name for n in tensor_inputs]} as input (a residual or branching graph). "
                "Export a plain (VGG-style or MLP/CNN) student instead.")
    return nodes


def _is_ignored(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in IGNORED_METHODS
    if node.op == "call_function":
        return node.target in (getattr, operator.getitem)
    return False


def _kind(gm: fx.GraphModule, node: fx.Node) -> str:
    """A short name of what a chain node does: module class, 'flatten', 'input', 'output'."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, (TimeRepeat, nn.Identity)):
            return "identity"
        if isinstance(m, nn.Flatten):
            return "flatten"
        return type(m).__name__
    if node.op == "call_method" and node.target in FLATTEN_METHODS:
        return "flatten"
    if node.op == "call_function" and node.target is torch.flatten:
        return "flatten"
    name = getattr(node.target, "__name__", str(node.target))
    raise SpiketandemError(f"NIR export: the student operation {name} (fx node {node.name!r}) has no NIR "
                           "counterpart here; only conv/linear/avg-pool/flatten/IF/LIF chains are exported")


def _pool_params(m: nn.Module, in_shape: tuple) -> tuple[tuple, tuple, tuple]:
    """(kernel, stride, padding) of an AvgPool2d or an evenly dividing AdaptiveAvgPool2d."""
    if isinstance(m, nn.AdaptiveAvgPool2d):
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size, m.output_size)
        out = tuple(in_shape[-2 + i] if o is None else o for i, o in enumerate(out))
        if any(s % o for s, o in zip(in_shape[-2:], out)):
            raise SpiketandemError(f"NIR export: adaptive average pooling from {in_shape[-2:]} to {out} does not "
                                   "divide evenly, so it is no fixed-kernel pool NIR can describe")
        k = tuple(s // o for s, o in zip(in_shape[-2:], out))
        return k, k, (0, 0)
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    if m.ceil_mode:
        raise SpiketandemError("NIR export: AvgPool2d(ceil_mode=True) has no NIR counterpart; use ceil_mode=False")
    return pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)


def _below(value: float) -> float:
    """The largest float32 strictly below ``value``: NIR fires on v > v_threshold, we on U >= theta;
    on float32 membranes ``v > below(theta)`` is exactly ``v >= theta`` (ties are common: threshold
    balancing sets theta to an actual calibration activation)."""
    return float(np.nextafter(np.float32(value), np.float32(-np.inf)))


def _neuron_node(nir, neuron: SpikingNeuron, shape: tuple, dt: float, reset: str):
    theta = float(neuron.threshold)
    a = float(neuron.alpha)
    full = lambda v: np.full(shape, v, dtype=np.float32)  # noqa: E731
    meta = {"spiketandem_threshold": theta, "spiketandem_leak": a, "reset": reset, "teacher_relu": neuron.path}
    if neuron.config.kind == "if" or a >= 1.0:
        # ours subtracts theta one step later, unleaked; with a = 1 that equals subtracting theta now
        meta["reset_subtract_amount"] = theta
        return nir.IF(r=full(1.0 / dt), v_threshold=full(_below(theta)), v_reset=full(0.0), metadata=meta)
    # ours: U[t] = a U[t-1] + I[t] - theta S[t-1] = a (U[t-1] - (theta/a) S[t-1]) + I[t]: subtracting
    # theta/a right after the spike (in v = (1-a) U units: (1-a) theta / a) is the same network
    meta["reset_subtract_amount"] = (1.0 - a) * theta / a
    return nir.LIF(tau=full(dt / (1.0 - a)), r=full(1.0), v_leak=full(0.0), v_threshold=full(_below((1.0 - a) * theta)),
                   v_reset=full(0.0), metadata=meta)


def student_to_nir(student: Student, dt: float = DEFAULT_DT, allow_subtract_reset: bool = False,
                   extra_metadata: dict | None = None):
    """Translate a trained ``Student`` into a ``nir.NIRGraph`` (see the module docstring for the mapping).

    ``dt`` is the NIR time step in seconds that reproduces our per-step dynamics under forward Euler.
    Reset by subtraction has no NIR 1.0 neuron (NIR neurons reset to ``v_reset``): it is refused
    unless ``allow_subtract_reset``, which writes the nodes with ``v_reset = 0`` and marks the graph
    and every neuron node ``metadata["reset"] = "subtract"`` for an importer that can honour it
    (Norse: ``from_nir(graph, reset_method=reset_subtract)``, exact for IF only).  Each neuron node's
    ``metadata["reset_subtract_amount"]`` is the amount to subtract right after a spike (LIF: v_threshold
    / a, because our subtraction is applied one step later and is not leaked).
    """
    nir = _need_nir()
    if not dt > 0:
        raise SpiketandemError(f"NIR export: dt must be > 0 seconds, got {dt}")
    if student.encoding != "analog":
        raise SpiketandemError(f"NIR export writes students with analog input; this one uses {student.encoding!r} "
                               "encoding, whose random input spikes are not part of the network")
    gm = student.graph_module
    resets = {n.config.reset for n in student.neurons.values()}
    reset = resets.pop() if len(resets) == 1 else "mixed"
    if reset != "zero" and not allow_subtract_reset:
        raise SpiketandemError(
            "NIR export: this student resets by subtraction (U -= theta after a spike), but NIR 1.0's IF/LIF nodes "
            "reset the membrane to v_reset; writing them would silently change the network. Either train with "
            "`--reset zero`, or pass --allow-subtract-reset to write the graph with metadata reset='subtract' on the "
            "graph and every neuron node (Norse honours it: norse.torch.from_nir(g, reset_method=reset_subtract); "
            "importers that ignore metadata will then simulate reset to zero).")
    chain = _chain(gm)
    kinds = [_kind(gm, n) for n in chain]
    probe = torch.zeros(1, *student.input_shape)
    nodes, edges, prev = {}, [], None
    scale = 1.0  # pending factor on the signal: spike amplitude x 1/k^2 of sum pools, not yet in a weight
    counts: dict[str, int] = {}

    def add(base: str, node) -> None:
        nonlocal prev
        counts[base] = counts.get(base, 0) + 1
        name = f"{base}{counts[base]}" if base not in ("input", "output") else base
        nodes[name] = node
        if prev is not None:
            edges.append((prev, name))
        prev = name

    with torch.no_grad():
        for i, (node, kind) in enumerate(zip(chain, kinds)):
            shape = tuple(probe.shape[1:])
            if kind == "input":
                add("input", nir.Input(input_type=np.array(shape)))
            elif kind == "output":
                if scale != 1.0:
                    raise SpiketandemError("NIR export: the student's output is scaled spikes without a readout layer")
                add("output", nir.Output(output_type=np.array(shape)))
            elif kind == "identity":
                continue
            elif kind == "Conv2d":
                m = gm.get_submodule(node.target)
                if isinstance(m.padding, str) or m.padding_mode != "zeros":
                    raise SpiketandemError(f"NIR export: conv {node.target} uses padding={m.padding!r}/"
                                           f"{m.padding_mode}; use integer zero padding")
                bias = m.bias if m.bias is not None else torch.zeros(m.out_channels)
                add("conv", nir.Conv2d(input_shape=shape[-2:], weight=_np(m.weight * scale), stride=m.stride,
                                       padding=m.padding, dilation=m.dilation, groups=m.groups, bias=_np(bias)))
                probe, scale = m(probe), 1.0
            elif kind == "Linear":
                m = gm.get_submodule(node.target)
                bias = m.bias if m.bias is not None else torch.zeros(m.out_features)
                add("affine", nir.Affine(weight=_np(m.weight * scale), bias=_np(bias)))
                probe, scale = m(probe), 1.0
            elif kind == "SpikingNeuron":
                if scale != 1.0:
                    raise SpiketandemError(f"NIR export: neuron layer {node.target} receives scaled spikes without a "
                                           "weight layer in between; there is no weight to fold the amplitude into")
                neuron = gm.get_submodule(node.target)
                add(neuron.config.kind, _neuron_node(nir, neuron, shape, dt, reset))
                scale = float(neuron.amplitude)
            elif kind in ("AvgPool2d", "AdaptiveAvgPool2d"):
                m = gm.get_submodule(node.target)
                k, s, p = _pool_params(m, shape)
                rest = kinds[i + 1:]
                next_weight = next((j for j, r in enumerate(rest) if r in ("Conv2d", "Linear")), None)
                next_neuron = next((j for j, r in enumerate(rest) if r == "SpikingNeuron"), len(rest))
                if next_weight is not None and next_weight < next_neuron and p == (0, 0):
                    add("sumpool", nir.SumPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p)))
                    scale /= k[0] * k[1]
                else:
                    add("avgpool", nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p)))
                probe = F.avg_pool2d(probe, k, s, p)
            elif kind == "flatten":
                flat = probe.flatten(1)
                add("flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
                probe = flat
            else:
                raise SpiketandemError(f"NIR export: {kind} (student node {node.name!r}) has no NIR counterpart; "
                                       "NIR 1.0 has no max pooling or batch norm (fold BN, use average pooling)")
    first_weight = next(k for k in kinds if k in ("Conv2d", "Linear"))
    metadata = {
        "format": FORMAT,
        "dt": dt,
        "time_unit": "seconds",
        "discretisation": "forward Euler with step dt: LIF v[t] = v[t-1] + dt/tau (v_leak - v[t-1] + r I[t]); "
                          "IF v[t] = v[t-1] + dt r I[t]; spike and reset in the same step",
        "spike_condition": ">",
        "threshold_encoding": "v_threshold is the largest float32 below spiketandem's threshold, so NIR's "
                              "v > v_threshold equals our U >= theta",
        "reset": reset,
        "input": f"analog: feed the normalised input at every step as a constant current into the first "
                 f"{first_weight} (no input spikes)",
        "readout": "class scores = mean over the T steps of the Output (the last affine layer's current)",
        "amplitude_folding": "each neuron layer's spike amplitude (and 1/k^2 of sum pools) is multiplied into "
                             "the next conv/affine weight; NIR neurons emit unit spikes",
        **(extra_metadata or {}),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(student: Student, path: str | Path, **kwargs) -> Path:
    """``student_to_nir`` then ``nir.write`` to ``path``; returns the path."""
    nir = _need_nir()
    graph = student_to_nir(student, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path


def neuron_node_names(graph) -> list[str]:
    """Names of the IF/LIF nodes of a NIR graph, in chain order from the input."""
    nir = _need_nir()
    order = _topological(graph)
    return [n for n in order if isinstance(graph.nodes[n], (nir.IF, nir.LIF))]


def _topological(graph) -> list[str]:
    nexts: dict[str, list] = {}
    indeg = {n: 0 for n in graph.nodes}
    for a, b in graph.edges:
        nexts.setdefault(a, []).append(b)
        indeg[b] += 1
    ready = [n for n, d in indeg.items() if d == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in nexts.get(n, []):
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order

