"""Student -> NIR graph (Neuromorphic Intermediate Representation, https://neuroir.org).

Our neuron is a discrete-time map (``neuron.py``, Eq. 1-3)::

    U[t] = a U[t-1] + I[t]   (- theta S[t-1] for reset by subtraction; x (1 - S[t-1]) for reset to zero)
    S[t] = H(U[t] - theta)

NIR neurons are ODEs.  Forward-Euler with step ``dt`` of the NIR LIF ``tau dv/dt = (v_leak - v) + r I``
gives ``v[t] = (1 - dt/tau) v[t-1] + (dt/tau) r I[t]``.  We choose

    LIF: tau = dt / (1 - a),  r = 1,  v_leak = 0,  v_threshold = (1 - a) theta,  v_reset = 0
         -> v[t] = a v[t-1] + (1 - a) I[t], i.e. v = (1 - a) U exactly, same spikes;
    IF:  r = 1 / dt,  v_threshold = theta,  v_reset = 0   (dv/dt = r I  ->  v[t] = v[t-1] + I[t]).

``r = 1`` for LIF is what the Norse and snnTorch importers assume.  snnTorch refuses IF nodes with
``r != 1``; the opt-in ``flavour="snntorch"`` writes every IF layer as a LIF with ``tau = 2^40 dt``, whose
leak ``1 - 2^-40`` is exactly 1 in float32 (and below float32 resolution over 2^16 steps in float64),
with the membrane scaled by ``2^-40`` (a power of two: exact) so that ``r = 1`` still holds.

The graph is the student's fx graph, node for node, with three rewrites:

- a neuron layer emits ``amplitude * S``; NIR neurons emit unit spikes.  The amplitude becomes a scale
  on the spike signal, which is folded into the next weight layer (``W (A S) + b = (A W) S + b``), passing
  through sum pooling and flatten (both linear) on the way;
- average pooling is written as ``SumPool2d`` and a scale ``1/k^2``, folded the same way (forward into the
  next weights, or back into the conv before it); a padded or 1-d pool becomes a conv with fixed weights;
- a residual addition is NIR's own: a node with several incoming edges receives their sum.  A scale that
  meets no weight (the spikes of an identity shortcut reaching the next neuron directly) is written as
  a 1x1 conv (or affine) with the scale on its diagonal, which every importer reads.

Refused, naming the node and the alternative: what NIR 1.0 cannot express (max pooling, concatenation,
slicing, non-flatten reshapes, unevenly dividing adaptive pooling) and rate-encoded inputs.
"""
from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import SpiketandemError
from ..neuron import SpikingNeuron, TimeRepeat
from ..student import ChannelAffine, Student

from .options import DEFAULT_DT, FLAVOURS

FORMAT = "spiketandem-nir-2"
IF_AS_LIF_EXPONENT = 40  # flavour "snntorch": IF written as LIF with tau = 2^40 dt, membrane scaled by 2^-40
ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
FLATTEN_METHODS = ("flatten", "view", "reshape")
PASS_METHODS = ("contiguous",)
NON_SIGNAL_METHODS = ("size", "dim")
POOL_MODULES = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
NO_NIR_ALTERNATIVE = {
    "max pooling": "NIR 1.0 has no max-pooling node; use average pooling in the teacher (the zoo's VGG default, "
                   "pool='avg') and retrain",
    "concatenation": "NIR 1.0 has no concatenation node; sum the branches (add) instead, or export the branches "
                     "as separate graphs",
    "slicing": "NIR 1.0 has no slicing/indexing node; use a strided 1x1 conv (e.g. a ResNet option-B shortcut) "
               "instead of x[:, :, ::2, ::2]",
}


def _need_nir():
    try:
        import nir
    except ImportError:
        raise SpiketandemError("NIR export needs the `nir` package: pip install 'spiketandem[nir]' "
                               "(or pip install nir)") from None
    return nir


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64).astype(np.float32)


def _below(value) -> np.ndarray:
    """The largest float32 strictly below ``value`` (elementwise): NIR fires on v > v_threshold, we on
    U >= theta; on float32 membranes ``v > below(theta)`` is exactly ``v >= theta`` (ties are common:
    threshold balancing sets theta to an actual calibration activation)."""
    return np.nextafter(np.asarray(value, dtype=np.float32), np.float32(-np.inf))


def _pair(v, n: int = 2) -> tuple:
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v) if len(v) == n else tuple(int(v[0]) for _ in range(n))
    return tuple(int(v) for _ in range(n))


# ---- the intermediate graph --------------------------------------------------------------------------

@dataclass
class _Node:
    """One node of the graph being written.  ``inputs``: the nodes whose *sum* is this node's input.
    kinds: input, output, conv (weight [O, I/g, *k]), affine, sumpool, flatten, neuron,
    scale (y = scale * x + shift; scale/shift broadcastable to ``shape``)."""

    kind: str
    shape: tuple          # per-sample output shape
    inputs: list
    where: str            # the student's fx node, for messages and metadata
    params: dict = field(default_factory=dict)
    index: int = 0        # creation order: ties of the topological order are broken by it


class _Graph:
    def __init__(self):
        self.nodes: dict[str, _Node] = {}
        self.count = 0

    def add(self, kind, shape, inputs, where, **params) -> str:
        self.count += 1
        name = f"n{self.count}"
        self.nodes[name] = _Node(kind, tuple(shape), list(inputs), where, params, self.count)
        return name

    def consumers(self, name: str) -> list[str]:
        return [m for m, n in self.nodes.items() if name in n.inputs]

    def replace_input(self, consumer: str, old: str, new: list[str]) -> None:
        inputs = self.nodes[consumer].inputs
        i = inputs.index(old)
        inputs[i:i + 1] = [n for n in new if n not in inputs]

    def can_remove(self, name: str) -> bool:
        """Whether the consumers of ``name`` can read its inputs directly (none reads one of them already:
        one edge cannot carry a signal twice)."""
        inputs = set(self.nodes[name].inputs)
        return all(not inputs & (set(self.nodes[c].inputs) - {name}) for c in self.consumers(name))

    def remove(self, name: str) -> None:
        """Remove a node with one input and no shift from the signal path: its consumers read its input."""
        node = self.nodes.pop(name)
        for c in self.consumers(name):
            self.replace_input(c, name, node.inputs)

    def order(self) -> list[str]:
        """Topological order; among ready nodes the earliest created first (stable, deterministic)."""
        indeg = {n: len(set(node.inputs)) for n, node in self.nodes.items()}
        users: dict[str, list] = {}
        for n, node in self.nodes.items():
            for i in set(node.inputs):
                users.setdefault(i, []).append(n)
        ready = sorted((n for n, d in indeg.items() if d == 0), key=lambda n: self.nodes[n].index)
        out = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for m in users.get(n, []):
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
            ready.sort(key=lambda k: self.nodes[k].index)
        return out


def _as_scale(value, shape: tuple) -> torch.Tensor:
    """A scale/shift as a float64 tensor broadcastable (torch's right-aligned rule) to the per-sample
    ``shape``: a scalar, one value per channel (``[C, 1, ...]``) or a full tensor."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().clone()
    if t.numel() == 1:
        return t.reshape(())
    while t.dim() > len(shape):
        if t.shape[0] != 1:
            raise SpiketandemError(f"NIR export: a constant of shape {list(t.shape)} depends on the batch; only "
                                   "per-sample constants can be written")
        t = t[0]
    torch.broadcast_shapes(t.shape, shape)  # raises if it is not broadcastable
    return t


def _per_channel(s: torch.Tensor, shape: tuple) -> torch.Tensor | None:
    """``s`` as one value per channel (dim 0 of ``shape``), or None when it varies within a channel."""
    if s.dim() == 0:
        return s.expand(shape[0]).clone()
    full = s.expand(shape) if len(shape) else s
    flat = full.reshape(shape[0], -1)
    if bool((flat == flat[:, :1]).all()):
        return flat[:, 0].clone()
    return None


# ---- translation of the student's fx graph -----------------------------------------------------------

class _Translator:
    def __init__(self, student: Student):
        self.student = student
        self.gm = student.graph_module
        self.g = _Graph()
        self.value: dict[fx.Node, object] = {}    # probe value of every fx node (batch of 2)
        self.signal: dict[fx.Node, list | None] = {}  # fx node -> graph nodes whose sum it is (None: no signal)

    def refuse(self, node: fx.Node, what: str, why: str) -> None:
        stack = node.meta.get("nn_module_stack") or {}
        inside = f" inside {list(stack)[-1]!r}" if stack else ""
        raise SpiketandemError(f"NIR export: {what} at student node {node.name!r}{inside} cannot be written: {why}")

    def run(self) -> _Graph:
        was_training = self.gm.training
        self.gm.eval()
        try:
            with torch.no_grad():
                for node in self.gm.graph.nodes:
                    self.visit(node)
        finally:
            self.gm.train(was_training)
        return self.g

    def shape(self, node: fx.Node) -> tuple:
        return tuple(self.value[node].shape[1:])

    def is_signal(self, a) -> bool:
        return isinstance(a, fx.Node) and self.signal.get(a) is not None

    def evaluate(self, node: fx.Node):
        args = fx.node.map_arg(node.args, lambda n: self.value[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: self.value[n])
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            if isinstance(m, (SpikingNeuron, TimeRepeat)):
                return args[0]
            return m(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        return getattr(args[0], node.target)(*args[1:], **kwargs)

    def visit(self, node: fx.Node) -> None:
        if node.op == "placeholder":
            probe = torch.randn(2, *self.student.input_shape)
            self.value[node] = probe
            self.signal[node] = [self.g.add("input", probe.shape[1:], [], node.name)]
            return
        if node.op == "get_attr":
            target = self.gm
            for part in node.target.split("."):
                target = getattr(target, part)
            self.value[node], self.signal[node] = target, None
            return
        if node.op == "output":
            self.output(node)
            return
        signals = [a for a in node.all_input_nodes if self.is_signal(a)]
        self.value[node] = self.evaluate(node)
        if not signals or not isinstance(self.value[node], torch.Tensor):  # sizes, shapes, constants
            self.signal[node] = None
            return
        self.signal[node] = self.translate(node, signals)

    def output(self, node: fx.Node) -> None:
        out = node.args[0]
        if not self.is_signal(out):
            self.refuse(node, "the output", "it is not computed from the input")
        inputs = self.signal[out]
        if len(inputs) > 1:  # NIR Output nodes take one edge (nirtorch returns a tuple for several)
            inputs = [self.g.add("scale", self.shape(out), inputs, out.name, scale=torch.tensor(1.0), shift=None)]
        self.g.add("output", self.shape(out), inputs, node.name)

    # -- one student operation --
    def translate(self, node: fx.Node, signals: list) -> list:
        x = node.args[0] if node.args else None
        if node.op == "call_module":
            m = self.gm.get_submodule(node.target)
            if isinstance(m, (TimeRepeat, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)):
                return self.signal[x]
            if isinstance(m, SpikingNeuron):
                return self.neuron(node, m)
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                return self.conv(node, m)
            if isinstance(m, nn.Linear):
                return self.linear(node, m)
            if isinstance(m, POOL_MODULES):
                return self.pool(node, x, m)
            if isinstance(m, nn.Flatten):
                return self.reshape(node, x)
            if isinstance(m, ChannelAffine):
                return self.scale(node, x, m.scale.detach(), m.shift.detach())
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                return self.batchnorm(node, x, m)
            if isinstance(m, MAX_POOLS):
                self.refuse(node, type(m).__name__, NO_NIR_ALTERNATIVE["max pooling"])
            self.refuse(node, type(m).__name__, "it has no NIR counterpart (NIR 1.0 has conv, affine, sum/avg pooling, "
                        "flatten, scale and neuron nodes)")
        if node.op == "call_function":
            f = node.target
            if f in ADD_FUNCTIONS:
                return self.add(node)
            if f is torch.flatten:
                return self.reshape(node, x)
            if f in (F.avg_pool2d, F.adaptive_avg_pool2d, F.avg_pool1d, F.adaptive_avg_pool1d):
                return self.pool(node, x, None)
            if "max_pool" in getattr(f, "__name__", "") or f in (F.max_pool1d, F.max_pool2d, F.adaptive_max_pool2d):
                self.refuse(node, "max pooling", NO_NIR_ALTERNATIVE["max pooling"])
            if f is torch.cat:
                self.refuse(node, "torch.cat", NO_NIR_ALTERNATIVE["concatenation"])
            if f in (operator.getitem, getattr):
                self.refuse(node, "indexing", NO_NIR_ALTERNATIVE["slicing"])
            name = getattr(f, "__name__", str(f))
            self.refuse(node, name, "it has no NIR counterpart")
        # call_method
        if node.target in FLATTEN_METHODS:
            return self.reshape(node, x)
        if node.target in PASS_METHODS:
            return self.signal[x]
        if node.target in ("add", "add_"):
            return self.add(node)
        self.refuse(node, f"Tensor.{node.target}", "it has no NIR counterpart")

    def neuron(self, node, m: SpikingNeuron) -> list:
        shape = self.shape(node)
        name = self.g.add("neuron", shape, self.signal[node.args[0]], node.name, module=m)
        amplitude = _as_scale(m.amplitude, shape)
        if bool((amplitude == 1).all()):
            return [name]
        return [self.g.add("scale", shape, [name], node.name, scale=amplitude, shift=None)]

    def conv(self, node, m) -> list:
        x = node.args[0]
        dims = 2 if isinstance(m, nn.Conv2d) else 1
        if m.padding_mode != "zeros":
            self.refuse(node, f"Conv{dims}d(padding_mode={m.padding_mode!r})", "NIR convolutions pad with zeros; "
                        "use padding_mode='zeros'")
        kernel, dilation = _pair(m.kernel_size, dims), _pair(m.dilation, dims)
        padding = m.padding
        if padding == "valid":
            padding = (0,) * dims
        elif padding == "same":
            total = [d * (k - 1) for d, k in zip(dilation, kernel)]
            if any(t % 2 for t in total):
                self.refuse(node, f"Conv{dims}d(padding='same')", "with an even kernel it pads asymmetrically, which "
                            "NIR's symmetric padding cannot express; give integer padding")
            padding = tuple(t // 2 for t in total)
        bias = m.bias.detach() if m.bias is not None else torch.zeros(m.out_channels)
        name = self.g.add("conv", self.shape(node), self.signal[x], node.name, weight=m.weight.detach().double(),
                          bias=bias.double(), stride=_pair(m.stride, dims), padding=_pair(padding, dims),
                          dilation=dilation, groups=int(m.groups), in_shape=self.shape(x))
        return [name]

    def linear(self, node, m: nn.Linear) -> list:
        x = node.args[0]
        if len(self.shape(x)) != 1:
            self.refuse(node, "Linear", f"it acts on the last axis of a {list(self.shape(x))} tensor; NIR's Affine "
                        "maps vectors: flatten (x.flatten(1)) before the linear layer")
        bias = m.bias.detach() if m.bias is not None else torch.zeros(m.out_features)
        return [self.g.add("affine", self.shape(node), self.signal[x], node.name, weight=m.weight.detach().double(),
                           bias=bias.double())]

    def batchnorm(self, node, x, m) -> list:
        if m.running_mean is None:
            self.refuse(node, type(m).__name__, "it normalises with batch statistics (track_running_stats=False), "
                        "which no fixed NIR node expresses; fold it or keep running statistics")
        scale = 1 / torch.sqrt(m.running_var + m.eps)
        if m.affine:
            scale = scale * m.weight.detach()
        shift = (m.bias.detach() if m.affine else 0) - m.running_mean * scale
        return self.scale(node, x, scale, shift)

    def scale(self, node, x, scale, shift) -> list:
        """A per-channel affine map (BatchNorm at its running statistics): channel = dim 1 of [B, C, ...]."""
        shape = self.shape(x)
        per_channel = (-1, *([1] * (len(shape) - 1)))
        s = _as_scale(torch.as_tensor(scale).reshape(per_channel), shape)
        b = _as_scale(torch.as_tensor(shift).reshape(per_channel), shape)
        return [self.g.add("scale", shape, self.signal[x], node.name, scale=s, shift=b)]

    def add(self, node) -> list:
        args = list(node.args)
        alpha = node.kwargs.get("alpha", 1)
        terms: list[tuple] = []  # (signal nodes, factor)
        constant = 0.0
        for i, a in enumerate(args[:2]):
            factor = alpha if i == 1 else 1
            if self.is_signal(a):
                terms.append((self.signal[a], factor))
            elif isinstance(a, fx.Node):
                constant = constant + factor * torch.as_tensor(self.value[a])
            else:
                constant = constant + factor * torch.as_tensor(a, dtype=torch.float64)
        shape = self.shape(node)
        inputs: list = []
        for names, factor in terms:
            if factor != 1:
                names = [self.g.add("scale", shape, names, node.name, scale=torch.tensor(float(factor)), shift=None)]
            inputs += names
        repeated = Counter(inputs)
        unique = []
        for name, k in repeated.items():  # x + x: one edge cannot carry it twice
            unique.append(name if k == 1 else
                          self.g.add("scale", shape, [name], node.name, scale=torch.tensor(float(k)), shift=None))
        if isinstance(constant, torch.Tensor) and bool((constant != 0).any()):
            unique = [self.g.add("scale", shape, unique, node.name, scale=torch.tensor(1.0),
                                 shift=_as_scale(constant.double(), shape))]
        return unique

    def reshape(self, node, x) -> list:
        before, after = self.shape(x), self.shape(node)
        if self.value[node].shape[0] != self.value[x].shape[0]:
            self.refuse(node, "a reshape", f"it mixes samples of the batch ({list(self.value[x].shape)} -> "
                        f"{list(self.value[node].shape)}); keep the batch axis: x.flatten(1) or x.view(x.size(0), -1)")
        if after == before:
            return self.signal[x]
        if len(after) == 1:
            return [self.g.add("flatten", after, self.signal[x], node.name, in_shape=before)]
        self.refuse(node, "a reshape", f"{list(before)} -> {list(after)} is not a flatten to a vector, and NIR 1.0 has "
                    "Flatten only; flatten fully before the linear layer")

    def pool(self, node, x, m) -> list:
        """Average pooling = sum pooling (or, padded / 1-d, a conv with fixed weights) times 1/k^2."""
        before, after = self.shape(x), self.shape(node)
        dims = len(before) - 1
        if m is None:  # functional: its parameters from the call
            sig = {"avg_pool2d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override"),
                   "avg_pool1d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
                   "adaptive_avg_pool2d": ("input", "output_size"), "adaptive_avg_pool1d": ("input", "output_size")}
            fname = node.target.__name__
            p = dict(zip(sig[fname], node.args))
            p.update(node.kwargs)
            adaptive = fname.startswith("adaptive")
        else:
            adaptive = isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d))
            p = ({"output_size": m.output_size} if adaptive else
                 {"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding, "ceil_mode": m.ceil_mode,
                  "count_include_pad": m.count_include_pad, "divisor_override": getattr(m, "divisor_override", None)})
        what = "adaptive average pooling" if adaptive else "average pooling"
        if adaptive:
            if any(s % o for s, o in zip(before[1:], after[1:])):
                self.refuse(node, what, f"from {list(before[1:])} to {list(after[1:])} its windows differ in size, "
                            "which no fixed-kernel NIR pool describes; choose an output size that divides the input")
            kernel = tuple(s // o for s, o in zip(before[1:], after[1:]))
            stride, padding, divisor = kernel, (0,) * dims, math.prod(kernel)
        else:
            kernel = _pair(p["kernel_size"], dims)
            stride = _pair(p.get("stride") or kernel, dims)
            padding = _pair(p.get("padding", 0), dims)
            divisor = p.get("divisor_override") or math.prod(kernel)
            if any(padding) and not p.get("count_include_pad", True) and not p.get("divisor_override"):
                self.refuse(node, what, "count_include_pad=False divides border windows by fewer taps, a position-"
                            "dependent scale; use count_include_pad=True or no padding")
        expected = tuple((s + 2 * q - k) // st + 1 for s, k, st, q in zip(before[1:], kernel, stride, padding))
        if expected != tuple(after[1:]):  # ceil_mode that adds a partial window
            self.refuse(node, what, f"ceil_mode adds partial windows ({list(after[1:])} instead of {list(expected)}); "
                        "use ceil_mode=False or an input size the kernel divides")
        shape = after
        if dims == 2 and not any(padding):
            pooled = self.g.add("sumpool", shape, self.signal[x], node.name, kernel=kernel, stride=stride)
        else:  # a conv with fixed weights: importers ignore SumPool2d padding, and NIR has no 1-d pool
            channels = before[0]
            weight = torch.zeros(channels, channels, *kernel, dtype=torch.float64)
            weight[torch.arange(channels), torch.arange(channels)] = 1.0
            pooled = self.g.add("conv", shape, self.signal[x], node.name, weight=weight,
                                bias=torch.zeros(channels, dtype=torch.float64), stride=stride, padding=padding,
                                dilation=(1,) * dims, groups=1, in_shape=before, role="sum pooling")
        return [self.g.add("scale", shape, [pooled], node.name, scale=torch.tensor(1.0 / divisor), shift=None)]


# ---- scale folding -------------------------------------------------------------------------------------

def _fold_into_consumer(node: _Node, s: torch.Tensor, in_shape: tuple) -> bool:
    """W (s x) = (W s) x for a conv/affine consumer; False when s varies within an input channel."""
    w = node.params["weight"]
    if node.kind == "affine":
        node.params["weight"] = w * (s.reshape(()) if s.dim() == 0 else s.expand(in_shape).reshape(1, -1))
        return True
    per = _per_channel(s, in_shape)
    if per is None:
        return False
    groups = node.params["groups"]
    out, per_group = w.shape[0], w.shape[1]
    channel = (torch.arange(out) // (out // groups)).unsqueeze(1) * per_group + torch.arange(per_group)
    node.params["weight"] = w * per[channel].reshape(out, per_group, *([1] * (w.dim() - 2)))
    return True


def _fold_into_producer(node: _Node, s: torch.Tensor, shift, shape: tuple) -> bool:
    """s (W x + b) + shift = (s W) x + (s b + shift) for a conv/affine producer."""
    if node.kind == "affine":
        per = s.expand(shape).reshape(-1) if s.dim() else s.expand(shape[0]).clone()
        sh = torch.zeros(shape[0], dtype=torch.float64) if shift is None else shift.expand(shape).reshape(-1)
    else:
        per = _per_channel(s, shape)
        sh = torch.zeros(shape[0], dtype=torch.float64) if shift is None else _per_channel(shift, shape)
        if per is None or sh is None:
            return False
    w = node.params["weight"]
    node.params["weight"] = w * per.reshape(-1, *([1] * (w.dim() - 1)))
    node.params["bias"] = node.params["bias"] * per + sh
    return True


def _through_flatten(t, in_shape):
    """A scale/shift after flatten, given it before (broadcastable to ``in_shape``)."""
    return t if t is None or t.dim() == 0 else t.expand(in_shape).reshape(-1).clone()


def _fold_scales(g: _Graph) -> None:
    """Fold every scale node into a neighbouring weight where the algebra allows; repeat until none moves."""
    changed = True
    while changed:
        changed = False
        for name in list(g.nodes):
            node = g.nodes.get(name)
            if node is None or node.kind != "scale":
                continue
            if _fold_step(g, name, node):
                changed = True


def _fold_step(g: _Graph, name: str, node: _Node) -> bool:
    s, shift = node.params["scale"], node.params["shift"]
    users = g.consumers(name)
    if not users:
        return False
    # 1. the identity
    if bool((s == 1).all()) and shift is None and len(node.inputs) == 1 and g.can_remove(name):
        g.remove(name)
        return True
    # 2. two scales in a row
    if len(users) == 1 and g.nodes[users[0]].kind == "scale" and g.nodes[users[0]].inputs == [name]:
        nxt = g.nodes[users[0]]
        t, tshift = nxt.params["scale"], nxt.params["shift"]
        nxt.params["scale"] = s * t
        nxt.params["shift"] = (None if shift is None and tshift is None else
                               (0 if shift is None else shift * t) + (0 if tshift is None else tshift))
        nxt.inputs = list(node.inputs)
        del g.nodes[name]
        return True
    moved = False
    # 3. forward into weight consumers whose only input this is (a shift only into an affine)
    for u in users:
        c = g.nodes[u]
        if c.inputs != [name] or c.kind not in ("conv", "affine"):
            continue
        if shift is not None:
            if c.kind != "affine":
                continue
            c.params["bias"] = c.params["bias"] + c.params["weight"] @ shift.expand(node.shape).reshape(-1)
        if _fold_into_consumer(c, s, node.shape):
            c.inputs = list(node.inputs)
            moved = True
    # 4. forward through sum pooling / flatten consumers whose only input this is
    for u in g.consumers(name):
        c = g.nodes[u]
        if c.inputs != [name] or c.kind not in ("sumpool", "flatten"):
            continue
        if c.kind == "sumpool":
            if _per_channel(s, node.shape) is None or (shift is not None and _per_channel(shift, node.shape) is None):
                continue
            k = math.prod(c.params["kernel"])
            new_s = s if s.dim() == 0 else _per_channel(s, node.shape).reshape(-1, 1, 1)
            new_shift = None if shift is None else _per_channel(shift, node.shape).reshape(-1, 1, 1) * k
        else:
            new_s, new_shift = _through_flatten(s, node.shape), _through_flatten(shift, node.shape)
        after = g.consumers(u)
        c.inputs = list(node.inputs)
        moved_scale = g.add("scale", c.shape, [u], node.where, scale=new_s, shift=new_shift)
        g.nodes[moved_scale].index = c.index  # keep the creation order of its place
        for a in after:
            g.replace_input(a, u, [moved_scale])
        moved = True
    if not g.consumers(name):
        del g.nodes[name]
        return True
    if moved:
        return True
    # 5. back into the weight layer that produced it (through sum pooling / flatten used only here)
    if len(node.inputs) != 1:
        return False
    chain, cur, t, tshift = [], node.inputs[0], s, shift
    while g.nodes[cur].kind in ("sumpool", "flatten") and len(g.consumers(cur)) == 1 and len(g.nodes[cur].inputs) == 1:
        below = g.nodes[g.nodes[cur].inputs[0]].shape
        if g.nodes[cur].kind == "flatten":  # back to per-channel form of the unflattened shape
            t = t if t.dim() == 0 else _per_channel(t.reshape(below), below)
            tshift = tshift if tshift is None or tshift.dim() == 0 else _per_channel(tshift.reshape(below), below)
            if t is None or (shift is not None and tshift is None):
                return False
            t = t if t.dim() == 0 else t.reshape(-1, *([1] * (len(below) - 1)))
            tshift = tshift if tshift is None or tshift.dim() == 0 else tshift.reshape(-1, *([1] * (len(below) - 1)))
        else:
            if tshift is not None:
                tshift = tshift / math.prod(g.nodes[cur].params["kernel"])
        chain.append(cur)
        cur = g.nodes[cur].inputs[0]
    producer = g.nodes[cur]
    if producer.kind not in ("conv", "affine") or len(g.consumers(cur)) != 1:
        return False
    if not _fold_into_producer(producer, t, tshift, producer.shape):
        return False
    g.remove(name)
    return True


def _materialise(g: _Graph) -> None:
    """Scale nodes that meet no weight become a 1x1 conv (or affine) with the scale on the diagonal."""
    for name, node in list(g.nodes.items()):
        if node.kind != "scale":
            continue
        shape = node.shape
        s, shift = node.params["scale"], node.params["shift"]
        if len(shape) == 1:
            weight = torch.diag(s.expand(shape).reshape(-1).clone())
            bias = torch.zeros(shape[0], dtype=torch.float64) if shift is None else shift.expand(shape).reshape(-1)
            g.nodes[name] = _Node("affine", shape, node.inputs, node.where,
                                  {"weight": weight, "bias": bias.clone(), "role": "scale"}, node.index)
            continue
        per = _per_channel(s, shape)
        sh = torch.zeros(shape[0], dtype=torch.float64) if shift is None else _per_channel(shift, shape)
        if per is None or sh is None:
            raise SpiketandemError(f"NIR export: the scale at student node {node.where!r} varies within a channel, "
                                   "which no conv/affine NIR node expresses")
        dims = len(shape) - 1
        weight = torch.zeros(shape[0], shape[0], *([1] * dims), dtype=torch.float64)
        weight[torch.arange(shape[0]), torch.arange(shape[0])] = per.reshape(-1, *([1] * dims))
        g.nodes[name] = _Node("conv", shape, node.inputs, node.where,
                              {"weight": weight, "bias": sh.clone(), "stride": (1,) * dims, "padding": (0,) * dims,
                               "dilation": (1,) * dims, "groups": 1, "in_shape": shape, "role": "scale"}, node.index)


# ---- NIR nodes --------------------------------------------------------------------------------------------

def _snntorch_exact_tau(alpha: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """A float32 tau near dt/(1-a) with ``float32(1 - float32(dt)/tau) == a`` (the leak snnTorch's importer
    computes), and x = float32(dt)/tau (= 1 - a in float32); elementwise."""
    a32 = np.asarray(alpha, dtype=np.float32)
    dt32 = np.float32(dt)
    tau = np.asarray(np.float64(dt) / (1.0 - a32.astype(np.float64)), dtype=np.float32)
    best = tau.copy()
    found = np.zeros(a32.shape, dtype=bool)
    up, down = tau.copy(), tau.copy()
    for _ in range(64):
        for cand in (up, down):
            ok = ~found & (np.float32(1) - dt32 / cand == a32)
            best[ok] = cand[ok]
            found |= ok
        if found.all():
            break
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(0))
    return best, dt32 / best


def _threshold_for(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A float32 v near x * target with float32(v / x) == target (snnTorch's importer divides the LIF
    threshold by r dt / tau = x), elementwise; v / x is then target to float32 precision everywhere."""
    v = np.asarray(x.astype(np.float64) * target.astype(np.float64), dtype=np.float32)
    best, found = v.copy(), v / x == target
    up, down = v.copy(), v.copy()
    for _ in range(64):
        if found.all():
            break
        up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
        for cand in (up, down):
            ok = ~found & (cand / x == target)
            best[ok] = cand[ok]
            found |= ok
    return best


def _neuron_node(nir, m: SpikingNeuron, shape: tuple, dt: float, reset: str, flavour: str, where: str):
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float32), shape).copy()  # noqa: E731
    theta = full(_np(m.threshold))
    a = full(_np(m.alpha))
    meta = {"spiketandem_layer": m.name or where, "teacher_relu": m.path, "reset": reset,
            "spiketandem_threshold": float(theta.flat[0]) if np.all(theta == theta.flat[0]) else theta.tolist(),
            "spiketandem_leak": float(a.flat[0]) if np.all(a == a.flat[0]) else a.tolist()}
    is_if = m.config.kind == "if" or bool(np.all(a >= 1.0))
    if is_if and flavour == "nir":
        # ours subtracts theta one step later, unleaked; with a = 1 that equals subtracting theta now
        meta["reset_subtract_amount"] = float(theta.flat[0])
        return nir.IF(r=full(1.0 / dt), v_threshold=_below(theta), v_reset=full(0.0), metadata=meta)
    if is_if:  # flavour snntorch: IF as LIF with a leak of exactly 1 in float32, membrane scaled by 2^-40
        scale = np.float32(2.0 ** -IF_AS_LIF_EXPONENT)
        meta.update(if_as_lif=True, membrane_scale=float(scale), reset_subtract_amount=float(theta.flat[0] * scale))
        return nir.LIF(tau=full(dt * 2.0 ** IF_AS_LIF_EXPONENT), r=full(1.0), v_leak=full(0.0),
                       v_threshold=(_below(theta) * scale).astype(np.float32), v_reset=full(0.0), metadata=meta)
    # ours: U[t] = a U[t-1] + I[t] - theta S[t-1] = a (U[t-1] - (theta/a) S[t-1]) + I[t]: subtracting
    # theta/a right after the spike (in v = (1-a) U units: (1-a) theta / a) is the same network
    tau, x = _snntorch_exact_tau(a, dt)
    meta["reset_subtract_amount"] = float(((1.0 - a) * theta / a).flat[0])
    return nir.LIF(tau=tau, r=full(1.0), v_leak=full(0.0), v_threshold=_threshold_for(x, _below(theta)),
                   v_reset=full(0.0), metadata=meta)


def _weight_grid(w: np.ndarray, bits: int | None) -> dict:
    """Where the exported weights lie on a k-bit grid: {"weight_bits", "weight_step", "weight_offset"}."""
    if not bits or w.size == 0:
        return {}
    w64 = w.astype(np.float64)
    m = 2 ** (bits - 1) - 1
    step = np.abs(w64).max() / m
    if step > 0 and np.allclose(w64, step * np.round(w64 / step), rtol=0, atol=1e-5 * step):
        return {"weight_bits": bits, "weight_step": float(step), "weight_offset": 0.0, "weight_grid": "symmetric"}
    lo, hi = w64.min(), w64.max()
    step = (hi - lo) / (2 ** bits - 1)
    if step > 0 and np.allclose(w64, lo + step * np.round((w64 - lo) / step), rtol=0, atol=1e-5 * step):
        return {"weight_bits": bits, "weight_step": float(step), "weight_offset": float(lo), "weight_grid": "minmax"}
    return {}


def _emit(nir, g: _Graph, dt: float, reset: str, flavour: str, weight_bits: int | None):
    order = g.order()
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    nodes = {}
    for key in order:
        n = g.nodes[key]
        p = n.params
        neuron = _neuron_node(nir, p["module"], n.shape, dt, reset, flavour, n.where) if n.kind == "neuron" else None
        if neuron is not None:
            base = "if" if isinstance(neuron, nir.IF) else "lif"
        elif p.get("role") == "scale":
            base = "scale"
        elif p.get("role") == "sum pooling":
            base = "poolconv"
        else:
            base = n.kind
        counts[base] = counts.get(base, 0) + 1
        names[key] = base if base in ("input", "output") else f"{base}{counts[base]}"
        meta = {"spiketandem_node": n.where}
        if p.get("role"):
            meta["role"] = p["role"]
        if n.kind == "input":
            node = nir.Input(input_type=np.array(n.shape))
        elif n.kind == "output":
            node = nir.Output(output_type=np.array(n.shape))
        elif n.kind == "conv":
            w = _np(p["weight"])
            if p.get("role") is None:
                meta.update(_weight_grid(w, weight_bits))
            cls = nir.Conv2d if len(n.shape) == 3 else nir.Conv1d
            spatial = tuple(p["in_shape"][1:])
            node = cls(input_shape=spatial if cls is nir.Conv2d else spatial[0], weight=w,
                       stride=p["stride"] if cls is nir.Conv2d else p["stride"][0],
                       padding=p["padding"] if cls is nir.Conv2d else p["padding"][0],
                       dilation=p["dilation"] if cls is nir.Conv2d else p["dilation"][0], groups=p["groups"],
                       bias=_np(p["bias"]), metadata=meta)
        elif n.kind == "affine":
            w = _np(p["weight"])
            if p.get("role") is None:
                meta.update(_weight_grid(w, weight_bits))
            node = nir.Affine(weight=w, bias=_np(p["bias"]), metadata=meta)
        elif n.kind == "sumpool":
            node = nir.SumPool2d(kernel_size=np.array(p["kernel"]), stride=np.array(p["stride"]),
                                 padding=np.array((0, 0)), metadata=meta)
        elif n.kind == "flatten":
            node = nir.Flatten(input_type={"input": np.array(p["in_shape"])}, start_dim=0, end_dim=-1, metadata=meta)
        elif neuron is not None:
            node = neuron
        else:  # pragma: no cover - every kind is handled above
            raise AssertionError(n.kind)
        nodes[names[key]] = node
    edges = [(names[i], names[key]) for key in order for i in g.nodes[key].inputs]
    return nodes, edges


# ---- public ------------------------------------------------------------------------------------------------

def refuse_membrane_start(student: Student, what: str = "this student") -> None:
    """NIR neurons start at v = 0: a student whose membranes start charged (U[0] = f * theta, f > 0) would be
    written as another network, so it is refused, naming the fix."""
    start = max(student.membrane_inits().values())
    if start:
        raise SpiketandemError(f"{what} starts every membrane at {start:g} x its threshold (--membrane-init, --recipe "
                               "low-latency or qcfs's shift), but NIR neurons start at v = 0, so the file would "
                               "compute another network; pass --retarget zero-reset to `spiketandem export` (it also "
                               "moves the start to 0 and recovers the accuracy by LTL) or train with --membrane-init 0")


def student_to_nir(student: Student, dt: float = DEFAULT_DT, allow_subtract_reset: bool = False,
                   extra_metadata: dict | None = None, flavour: str = "nir", weight_bits: int | None = None):
    """Translate a trained ``Student`` into a ``nir.NIRGraph`` (see the module docstring for the mapping).

    ``dt`` is the NIR time step in seconds that reproduces our per-step dynamics under forward Euler.
    ``flavour="snntorch"`` writes IF layers as LIF nodes with a leak of exactly 1 in float32 (snnTorch
    1.0's importer refuses IF nodes with r != 1); it needs the step snnTorch assumes, dt = 1e-4 s.
    Reset by subtraction has no NIR 1.0 neuron (NIR neurons reset to ``v_reset``): it is refused
    unless ``allow_subtract_reset``, which writes the nodes with ``v_reset = 0`` and marks the graph
    and every neuron node ``metadata["reset"] = "subtract"`` for an importer that can honour it.  Each
    neuron node's ``metadata["reset_subtract_amount"]`` is the amount to subtract right after a spike
    (LIF: v_threshold / a, because our subtraction is applied one step later and is not leaked).
    ``weight_bits``: the weights were quantized to k bits (``export --weight-bits``); each weight node
    whose values lie on one k-bit grid records it (``weight_step``, ``weight_offset``, ``weight_grid``).
    """
    nir = _need_nir()
    if not dt > 0:
        raise SpiketandemError(f"NIR export: dt must be > 0 seconds, got {dt}")
    if flavour not in FLAVOURS:
        raise SpiketandemError(f"NIR export flavour {flavour!r} is not one of {', '.join(FLAVOURS)}")
    if flavour == "snntorch" and not math.isclose(dt, DEFAULT_DT, rel_tol=1e-9):
        raise SpiketandemError(f"the snntorch flavour needs dt = {DEFAULT_DT} s, the step snnTorch's importer "
                               f"hard-codes (got --dt {dt}); drop --dt")
    if student.encoding != "analog":
        raise SpiketandemError(f"NIR export writes students with analog input; this one uses {student.encoding!r} "
                               "encoding, whose input spikes are made outside the network (rate: random per run; "
                               "frames: the event data). Train with --encoding analog to deploy through NIR")
    resets = {n.config.reset for n in student.neurons.values()}
    reset = resets.pop() if len(resets) == 1 else "mixed"
    if reset != "zero" and not allow_subtract_reset:
        raise SpiketandemError(
            "NIR export: this student resets by subtraction (U -= theta after a spike), but NIR 1.0's IF/LIF nodes "
            "reset the membrane to v_reset; writing them would silently change the network. Either retarget it: "
            "`spiketandem export RUN OUT --retarget zero-reset` (a zero-reset copy recovered by LTL against the run's "
            "teacher, --calibrate-epochs N), or train with `--reset zero`, or pass --allow-subtract-reset to write "
            "the graph with metadata reset='subtract' on the graph and every neuron node (importers that ignore "
            "metadata will then simulate reset to zero).")
    refuse_membrane_start(student)
    g = _Translator(student).run()
    _fold_scales(g)
    _materialise(g)
    nodes, edges = _emit(nir, g, dt, reset, flavour, weight_bits)
    layers = {name: n.metadata["spiketandem_layer"] for name, n in nodes.items() if isinstance(n, (nir.IF, nir.LIF))}
    extra_nodes = {name: n.metadata["spiketandem_node"] for name, n in nodes.items()
                   if (n.metadata or {}).get("role") == "scale"}
    metadata = {
        "format": FORMAT,
        "flavour": flavour,
        "dt": dt,
        "time_unit": "seconds",
        "discretisation": "forward Euler with step dt: LIF v[t] = v[t-1] + dt/tau (v_leak - v[t-1] + r I[t]); "
                          "IF v[t] = v[t-1] + dt r I[t]; spike and reset in the same step",
        "spike_condition": ">",
        "threshold_encoding": "v_threshold is the largest float32 below spiketandem's threshold (times the "
                              "membrane scale), so NIR's v > v_threshold equals our U >= theta",
        "reset": reset,
        "input": "analog: feed the normalised input at every step as a constant current (no input spikes)",
        "readout": "class scores = mean over the T steps of the Output (the last affine layer's current)",
        "edges": "a node with several incoming edges receives their sum (residual additions)",
        "amplitude_folding": "each neuron layer's spike amplitude (and 1/k^2 of average pools) is multiplied into "
                             "the next conv/affine weight; NIR neurons emit unit spikes",
        "neuron_layers": layers,
        **({"scale_nodes": extra_nodes,
            "scale_nodes_note": "1x1 conv/affine nodes with the scale on the diagonal, where a spike amplitude meets "
                                "no weight (an identity shortcut into the next neuron)"} if extra_nodes else {}),
        **({"if_as_lif": f"IF layers written as LIF with tau = 2^{IF_AS_LIF_EXPONENT} dt (leak exactly 1 in float32) "
                         f"and the membrane scaled by 2^-{IF_AS_LIF_EXPONENT}"} if flavour == "snntorch" else {}),
        **({"weight_bits": int(weight_bits)} if weight_bits else {}),
        **(extra_metadata or {}),
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def write_nir(student: Student, path: str | Path, **kwargs) -> Path:
    """``student_to_nir`` then ``nir.write`` to ``path`` (through a temporary file: nothing half-written
    is left behind); returns the path."""
    nir = _need_nir()
    graph = student_to_nir(student, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        nir.write(str(tmp), graph)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def neuron_node_names(graph) -> list[str]:
    """Names of the IF/LIF nodes of a NIR graph, in topological order from the input."""
    nir = _need_nir()
    return [n for n in _topological(graph) if isinstance(graph.nodes[n], (nir.IF, nir.LIF))]


def neuron_layers(graph) -> dict[str, str]:
    """NIR neuron node -> the student's neuron layer name (``Student.layers[i].name``), from the metadata."""
    out = {}
    for name in neuron_node_names(graph):
        meta = graph.nodes[name].metadata or {}
        out[name] = meta.get("spiketandem_layer", (graph.metadata or {}).get("neuron_layers", {}).get(name, name))
    return out


def _topological(graph) -> list[str]:
    """Topological order of a NIR graph's nodes; ties broken by the order of ``graph.nodes``."""
    position = {n: i for i, n in enumerate(graph.nodes)}
    nexts: dict[str, list] = {}
    indeg = {n: 0 for n in graph.nodes}
    for a, b in set(map(tuple, graph.edges)):
        nexts.setdefault(a, []).append(b)
        indeg[b] += 1
    ready = sorted((n for n, d in indeg.items() if d == 0), key=position.get)
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in nexts.get(n, []):
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
        ready.sort(key=position.get)
    return order
