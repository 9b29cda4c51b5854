"""The student's fx graph translated node by node into the NIR export's own graph (``_Graph`` of ``_Node``): weight
layers, sum pools, flatten, neurons and the scales (spike amplitudes, 1/k^2 of average pools) still to be folded;
what NIR 1.0 cannot express is refused here, naming the node and the alternative (``nir_export.py`` has the
mapping)."""
from __future__ import annotations

import math
import operator
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import SpiketandemError
from ..neuron import SpikingNeuron, TimeRepeat
from ..models.vit import AttentionProduct
from ..student import ChannelAffine, Student

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
    "attention product": "NIR 1.0 has no node for a product of two spike tensors (s Q K^T V multiplies the spikes "
                         "of Q, K and V); a spiking transformer runs in spiketandem (eval, predict, load_student), "
                         "not through NIR",
}


def refuse_attention_products(student: Student) -> None:
    """A student whose graph multiplies spike tensors (an attention product) is refused before any other work."""
    for node in student.graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(student.graph_module.get_submodule(node.target), AttentionProduct):
            raise SpiketandemError(f"NIR export: the attention product at student node {node.name!r} cannot be "
                                   f"written: {NO_NIR_ALTERNATIVE['attention product']}")


def _np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64).astype(np.float32)


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
        self.refuse_products()
        was_training = self.gm.training
        self.gm.eval()
        try:
            with torch.no_grad():
                for node in self.gm.graph.nodes:
                    self.visit(node)
        finally:
            self.gm.train(was_training)
        return self.g

    def refuse_products(self) -> None:
        """Refuses a product of spike tensors before anything is evaluated (``refuse_attention_products``)."""
        refuse_attention_products(self.student)

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
            if isinstance(m, AttentionProduct):
                self.refuse(node, "the attention product", NO_NIR_ALTERNATIVE["attention product"])
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
        if m.groups > 1:
            depthwise = ", depthwise" if m.groups == m.in_channels else ""
            self.refuse(node, f"Conv{dims}d(groups={m.groups})", f"a grouped convolution (groups={m.groups}"
                        f"{depthwise}) does not type-check in NIR 1.0, whose Conv node takes in_channels / groups "
                        "input channels; use groups=1 (a dense convolution) and retrain the teacher")
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
