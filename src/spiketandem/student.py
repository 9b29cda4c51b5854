"""Teacher -> student: the teacher's graph with every ReLU replaced by a spiking neuron layer.

The teacher is traced with ``torch.fx`` so that reused ReLU modules (torchvision's BasicBlock) and
functional ``F.relu`` calls are all found.  In the student, stateless layers run once on the folded
``[T*B, ...]`` batch; each neuron layer unfolds to ``[T, B, ...]`` and runs over time.  Layers that
see only the constant analog input (the first conv and its BN) run once on ``[B, ...]``: their
output current is the same at every step.  BatchNorm is folded into the preceding conv/linear.
Neuron layers are named by the fx node of the ReLU they replace, and the teacher's activation at
that same node is the layer's LTL target (``TeacherTaps``).
"""
from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .choices import ENCODINGS, INITS  # declared torch-free for the command line
from .errors import SpiketandemError
from .models.quantized import QCFS, quantize_activation
from .neuron import NeuronConfig, RunContext, SpikingNeuron, TimeAware, TimeRepeat
from .percentile import percentile_of

RELU_MODULES = (nn.ReLU, nn.ReLU6)
RELU_FUNCTIONS = (F.relu, torch.relu, F.relu6)
RELU_METHODS = ("relu", "relu_")
STATELESS_MODULES = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
                     nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten,
                     nn.Identity, nn.Dropout, nn.Dropout2d)
STATELESS_FUNCTIONS = (operator.add, operator.iadd, torch.add, torch.flatten, torch.cat, F.avg_pool2d, F.max_pool2d,
                       F.adaptive_avg_pool2d, F.dropout, operator.getitem, getattr)
STATELESS_METHODS = ("view", "reshape", "flatten", "size", "add", "add_", "contiguous")


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    """ReLU, ReLU6, clipped ReLUs (Hardtanh with a lower bound of 0) and quantized ones (QCFS) become spiking
    neurons."""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        return (isinstance(module, RELU_MODULES + (QCFS,))
                or (isinstance(module, nn.Hardtanh) and module.min_val == 0))
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    return node.op == "call_method" and node.target in RELU_METHODS


def _ceiling(gm: fx.GraphModule, node: fx.Node) -> float:
    """The upper clip of a ReLU node: inf for ReLU, 6 for ReLU6, max_val for a clipped ReLU (Hardtanh(0, c)),
    the learned clip s of a QCFS activation."""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if isinstance(module, QCFS):
            return float(module.scale.detach())
        return 6.0 if isinstance(module, nn.ReLU6) else float(getattr(module, "max_val", math.inf))
    return 6.0 if node.target is F.relu6 else math.inf


def _levels(gm: fx.GraphModule, node: fx.Node) -> tuple[int | None, float]:
    """(L, phi) of a QCFS activation node; (None, 0) for a full-precision one."""
    module = gm.get_submodule(node.target) if node.op == "call_module" else None
    return (module.levels, module.shift) if isinstance(module, QCFS) else (None, 0.0)


class _TeacherTracer(fx.Tracer):
    """fx's tracer, with the QCFS activation kept as one call (it is a neuron layer, not its arithmetic)."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, QCFS) or super().is_leaf_module(m, qualified_name)


def _describe(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    where = f" inside {list(stack)[-1]!r}" if stack else ""
    return f"{node.op} {getattr(node.target, '__name__', node.target)!s} (fx node {node.name!r}{where})"


def _check_mappable(gm: fx.GraphModule) -> None:
    """Refuse teachers with operations that have no spiking counterpart, naming the first one."""
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr") or _is_relu(gm, node):
            continue
        if node.op == "call_module":
            ok = isinstance(gm.get_submodule(node.target), STATELESS_MODULES)
            kind = type(gm.get_submodule(node.target)).__name__
        elif node.op == "call_function":
            ok, kind = node.target in STATELESS_FUNCTIONS, getattr(node.target, "__name__", str(node.target))
        else:
            ok, kind = node.target in STATELESS_METHODS, f"Tensor.{node.target}"
        if not ok:
            raise SpiketandemError(
                f"cannot build a spiking student: teacher operation {kind} at {_describe(node)} has no spiking "
                f"counterpart. A teacher may use conv/linear/BatchNorm/pooling/flatten/dropout/add and ReLU; replace "
                f"{kind} (e.g. GELU/SiLU/Sigmoid -> ReLU) and retrain the teacher.")


def trace_teacher(teacher: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """fx-trace a teacher and annotate shapes; clear errors for untraceable or unmappable teachers."""
    try:
        gm = fx.GraphModule(teacher, _TeacherTracer().trace(teacher), type(teacher).__name__)
    except Exception as e:  # fx raises many kinds for data-dependent control flow
        raise SpiketandemError(f"cannot trace the teacher with torch.fx ({type(e).__name__}: {e}); its forward must not "
                               "branch on tensor values") from None
    _check_mappable(gm)
    was_training = teacher.training
    gm.eval()
    with torch.no_grad():
        ShapeProp(gm).propagate(example_input)
    gm.train(was_training)
    return gm


def relu_nodes(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in gm.graph.nodes if _is_relu(gm, n)]


def _relu_path(node: fx.Node, seen: dict) -> str:
    """Teacher module path of a ReLU call ("layer1.0.relu", "layer1.0.relu@1" for its second call)."""
    if node.op == "call_module":
        base = node.target
    else:
        stack = node.meta.get("nn_module_stack") or {}
        base = f"{list(stack)[-1]}.{node.name}" if stack else node.name
    k = seen.get(base, 0)
    seen[base] = k + 1
    return base if k == 0 else f"{base}@{k}"


class TeacherTaps(nn.Module):
    """Runs the teacher and returns ``(logits, {neuron name: ReLU output})`` (shares the teacher's weights)."""

    def __init__(self, teacher: nn.Module, example_input: torch.Tensor):
        super().__init__()
        gm = trace_teacher(teacher, example_input)
        graph = gm.graph
        taps = {}
        for node in relu_nodes(gm):
            if _levels(gm, node)[0] is not None:  # a QCFS activation is not in place: it is its own tap
                taps[node.name] = node
                continue
            # tap a non-inplace copy of the activation so later in-place ops cannot alter the recorded one
            with graph.inserting_after(node):
                clean = graph.call_function(F.hardtanh, (node.args[0], 0.0, _ceiling(gm, node)))
            node.replace_all_uses_with(clean)
            graph.erase_node(node)
            clean.name = node.name
            taps[node.name] = clean
        out = next(n for n in graph.nodes if n.op == "output")
        out.args = ((out.args[0], taps),)
        graph.lint()
        self.graph_module = fx.GraphModule(teacher, graph)
        self.names = list(taps)

    def forward(self, x):
        if x.dim() == 5:  # event frames [B, T, C, H, W]: the teacher sees their time average
            x = x.mean(1)
        return self.graph_module(x)


def _fold_batchnorm(gm: fx.GraphModule) -> None:
    """Fold every BN that directly follows a conv/linear (used only there) into that layer's weights;
    turn any other BN into a fixed per-channel affine map (eval-mode statistics).  Rewrites the
    modules of ``gm`` in place: trace a copy of the teacher, never the teacher itself."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), (nn.BatchNorm1d, nn.BatchNorm2d)):
            continue
        bn = gm.get_submodule(node.target)
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias.detach() if bn.affine else 0) - bn.running_mean * scale
        prev = node.args[0]
        layer = gm.get_submodule(prev.target) if prev.op == "call_module" else None
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Linear)) and len(prev.users) == 1:
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(scale)
            layer.weight = nn.Parameter(layer.weight.detach() * scale.reshape(shape))
            layer.bias = nn.Parameter(bias * scale + shift)
            node.replace_all_uses_with(prev)
            gm.graph.erase_node(node)
        else:
            gm.add_submodule(node.target, ChannelAffine(scale, shift))
    gm.delete_all_unused_submodules()


class ChannelAffine(nn.Module):
    """y = scale * x + shift per channel (dim 1): a BatchNorm frozen at its running statistics."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.scale = nn.Parameter(scale.clone())
        self.shift = nn.Parameter(shift.clone())

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.scale.reshape(shape) + self.shift.reshape(shape)


def _mark_time(gm: fx.GraphModule, neuron_names: set, static_input: bool) -> None:
    """Decide which nodes are time-constant (computed once on [B, ...]) and insert TimeRepeat where a
    constant tensor meets a time-varying one."""
    static = {}
    repeat_count = 0
    for node in list(gm.graph.nodes):
        if node.op == "placeholder":
            static[node] = static_input
            continue
        if node.op == "get_attr":
            static[node] = True
            continue
        inputs = node.all_input_nodes
        if node.op == "call_module" and node.target in neuron_names:
            gm.get_submodule(node.target).static_input = static[inputs[0]]
            static[node] = False
            continue
        if node.op == "output":
            if static[inputs[0]]:
                raise SpiketandemError("the teacher's output does not pass through any ReLU: there is nothing to make spiking")
            continue
        flags = {n: static[n] for n in inputs}
        if all(flags.values()) or not any(flags.values()):
            static[node] = all(flags.values()) if flags else True
            continue
        for arg, is_static in flags.items():
            if not is_static:
                continue
            if "tensor_meta" not in arg.meta:
                raise SpiketandemError(
                    f"teacher operation at {_describe(node)} uses a value ({arg.name}) computed from the input's batch "
                    "size; under time folding it would be wrong. Use x.flatten(1) or x.view(x.size(0), -1) on the "
                    "tensor itself.")
            name = f"time_repeat_{repeat_count}"
            repeat_count += 1
            gm.add_submodule(name, TimeRepeat())
            with gm.graph.inserting_before(node):
                rep = gm.graph.call_module(name, (arg,))
            node.replace_input_with(arg, rep)
            static[rep] = False
        static[node] = False


def _owned_modules(gm: fx.GraphModule, start: fx.Node, neuron_names: set) -> list[str]:
    """Module targets between ``start`` and the nearest upstream neuron layers (or the input)."""
    owned, stack, seen = [], list(start.all_input_nodes), set()
    while stack:
        node = stack.pop()
        if node in seen or (node.op == "call_module" and node.target in neuron_names):
            continue
        seen.add(node)
        if node.op == "call_module" and node.target not in owned:
            owned.append(node.target)
        stack.extend(node.all_input_nodes)
    return owned


@dataclass
class LayerInfo:
    name: str        # neuron module name (the fx node name of the teacher ReLU)
    path: str        # the teacher's module path of that ReLU
    modules: list    # targets of the stateless modules that feed this neuron layer
    ceiling: float = math.inf  # the teacher activation's upper clip (inf: ReLU; 6: ReLU6; c: Hardtanh(0, c); QCFS: s)
    levels: int | None = None  # a quantized (QCFS) teacher activation's L; None: full precision
    shift: float = 0.0         # and its phi

    def ann_activation(self, z: torch.Tensor) -> torch.Tensor:
        """The teacher's activation of this layer, for rules that run some layers as the ANN."""
        if self.levels is not None:
            return quantize_activation(z, self.ceiling, self.levels, self.shift)
        return F.hardtanh(z, 0.0, self.ceiling)


class Student(nn.Module):
    """A spiking network built from a teacher. ``forward(x [B,C,H,W], T) -> logits [T, B, classes]``."""

    def __init__(self, graph_module: fx.GraphModule, layers: list[LayerInfo], readout: list[str], encoding: str,
                 input_shape: tuple):
        super().__init__()
        self.graph_module = graph_module
        self.layers = layers
        self.readout = readout
        self.encoding = encoding
        self.input_shape = tuple(input_shape)

    @property
    def neurons(self) -> dict[str, SpikingNeuron]:
        return {info.name: self.graph_module.get_submodule(f"neurons.{info.name}") for info in self.layers}

    def set_scales(self, scales: dict) -> None:
        """Threshold = spike amplitude = the given scale, per named layer (threshold balancing)."""
        for name, scale in scales.items():
            self.neurons[name].set_scale(scale)

    def set_membrane_init(self, fraction: float) -> None:
        """Every neuron layer starts each window at U[0] = fraction * threshold (``SpikingNeuron.membrane_init``)."""
        for neuron in self.neurons.values():
            neuron.set_membrane_init(fraction)

    def membrane_inits(self) -> dict[str, float]:
        """Each neuron layer's starting membrane f (U[0] = f * theta), by layer."""
        return {name: float(m.membrane_init) for name, m in self.neurons.items()}

    def start_state(self) -> dict | None:
        """The states every layer starts a window from (None when all start at U = 0)."""
        states = {name: m.start_state() for name, m in self.neurons.items()}
        return states if any(s is not None for s in states.values()) else None

    def layer_parameters(self, name: str) -> list[nn.Parameter]:
        info = next(i for i in self.layers if i.name == name)
        return [p for t in info.modules for p in self.graph_module.get_submodule(t).parameters()]

    def readout_parameters(self) -> list[nn.Parameter]:
        return [p for t in self.readout for p in self.graph_module.get_submodule(t).parameters()]

    def encode(self, x: torch.Tensor, T: int) -> torch.Tensor:
        """analog: the image itself, a constant current; rate: signed Bernoulli spikes with
        P = |x| / max|x| per sample, scaled so the expected input equals x ([T*B, ...]);
        frames: x is [B, T, C, H, W] (event frames), step t sees frame t ([T*B, ...])."""
        if self.encoding == "analog":
            return x
        if self.encoding == "frames":
            return x.transpose(0, 1).flatten(0, 1)
        peak = x.abs().flatten(1).amax(1).clamp_min(1e-12).reshape(-1, *([1] * (x.dim() - 1)))
        prob = (x.abs() / peak).unsqueeze(0).expand(T, *x.shape)
        return (torch.bernoulli(prob) * x.sign() * peak).flatten(0, 1)

    def context(self, T: int, batch: int, **fields) -> RunContext:
        """The context of one call of this student over T steps (``fields``: RunContext's records, state_in,
        hooks, ...).  Every RunContext is built here: a rule's (``Rule.context``) adds its own fields."""
        return RunContext(T=T, batch=batch, **fields)

    def run(self, x: torch.Tensor, ctx: RunContext) -> torch.Tensor:
        """Run with an explicit context (records, carried state, hooks); returns logits [T, B, ...]."""
        if self.encoding == "frames":
            if x.dim() != len(self.input_shape) + 2 or tuple(x.shape[2:]) != self.input_shape or x.shape[1] != ctx.T:
                raise SpiketandemError(f"a frames student expects [B, T={ctx.T}, {', '.join(map(str, self.input_shape))}]"
                                       f" (one frame per step), got {list(x.shape)}; bin the events into T={ctx.T} frames")
        elif tuple(x.shape[1:]) != self.input_shape:
            raise SpiketandemError(f"student expects inputs of shape [B, {', '.join(map(str, self.input_shape))}], "
                                   f"got {list(x.shape)}")
        timed = [m for m in self.graph_module.modules() if isinstance(m, TimeAware)]
        for m in timed:
            m.ctx = ctx
        try:
            out = self.graph_module(self.encode(x, ctx.T))
        finally:
            for m in timed:
                m.ctx = None
        return out.reshape(ctx.T, ctx.batch, *out.shape[1:])

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.run(x, self.context(T, x.shape[0]))


@torch.no_grad()
def activation_scales(taps: TeacherTaps, images: torch.Tensor, percentile: float, batch_size: int = 256) -> dict[str, float]:
    """Per-layer activation scale: the given percentile of each teacher ReLU output over ``images``."""
    collected: dict[str, list] = {}
    for chunk in images.split(batch_size):
        _, acts = taps(chunk)
        for name, a in acts.items():
            collected.setdefault(name, []).append(a.flatten())
    return {name: percentile_of(torch.cat(v), percentile) for name, v in collected.items()}


def _redraw_weights(model: nn.Module) -> None:
    """Fresh random weights, and BatchNorm reset to the identity (running mean 0, variance 1)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.reset_parameters()
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_parameters()


def build_student(teacher: nn.Module, neuron: NeuronConfig, example_input: torch.Tensor, *, init: str = "teacher",
                  encoding: str = "analog", calibration_images: torch.Tensor | None = None,
                  percentile: float = 99.9, keep_batchnorm: bool = False, membrane_init: float = 0.0) -> Student:
    """Make the spiking student of ``teacher``.

    init="teacher": the teacher's weights with BN folded.  init="random": the same graph with weights
    re-drawn (PyTorch's default initialisers, BN reset to the identity).  Either way every layer's
    threshold and spike amplitude are then set to the ``percentile`` of that layer's ANN activation on
    ``calibration_images`` (threshold balancing; Rueckauer et al. 2017), or for a quantized (QCFS) teacher
    activation to its clip s (its L steps of s / L are then what L time steps can emit), so spikes start in a useful
    range: a randomly initialised deep student with fixed thresholds is typically silent from its
    second layer on and receives no surrogate gradient at all.
    keep_batchnorm=True leaves BatchNorm layers unfolded: they then normalise over the folded
    ``[T*B, ...]`` batch, i.e. over (time, batch, H, W) as threshold-dependent BN (tdBN) does.
    ``membrane_init`` f: every neuron starts each window at U[0] = f * threshold (part of the student).
    """
    if init not in INITS:
        raise SpiketandemError(f"init {init!r} is not one of {INITS}")
    if encoding not in ENCODINGS:
        raise SpiketandemError(f"encoding {encoding!r} is not one of {ENCODINGS}")
    teacher_mode = teacher.training
    teacher.eval()
    source = copy.deepcopy(teacher)
    for p in source.parameters():  # a frozen teacher must not give a frozen student
        p.requires_grad_(True)
    if init == "random":
        _redraw_weights(source)
    scales_source = copy.deepcopy(source)
    gm = trace_teacher(source, example_input)
    if not keep_batchnorm:
        _fold_batchnorm(gm)
    graph = gm.graph
    layers, seen = [], {}
    for node in relu_nodes(gm):
        name, path, ceiling, (levels, shift) = node.name, _relu_path(node, seen), _ceiling(gm, node), _levels(gm, node)
        gm.add_submodule(f"neurons.{name}", SpikingNeuron(neuron, name=name, path=path))
        with graph.inserting_after(node):
            new = graph.call_module(f"neurons.{name}", (node.args[0],))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        layers.append(LayerInfo(name, path, [], ceiling, levels, shift))
    if not layers:
        raise SpiketandemError("the teacher has no ReLU: there is nothing to make spiking")
    for node in list(graph.nodes):  # dropout is the identity at inference and on spikes
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), (nn.Dropout, nn.Dropout2d)):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
        elif node.op == "call_function" and node.target is F.dropout:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    names = {f"neurons.{info.name}" for info in layers}
    _mark_time(gm, names, static_input=(encoding == "analog"))
    graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    by_target = {n.target: n for n in graph.nodes if n.op == "call_module"}
    for info in layers:
        info.modules = _owned_modules(gm, by_target[f"neurons.{info.name}"], names)
    output = next(n for n in graph.nodes if n.op == "output")
    readout = _owned_modules(gm, output, names)
    student = Student(gm, layers, readout, encoding, tuple(example_input.shape[1:]))

    images = calibration_images if calibration_images is not None else example_input
    scales = activation_scales(TeacherTaps(scales_source, example_input), images, percentile)
    # a quantized teacher layer's clip s is the threshold and amplitude at which L steps reproduce it (QCFS)
    scales.update({info.name: info.ceiling for info in layers if info.levels is not None})
    student.set_scales({name: scales[name] for name in student.neurons})
    student.set_membrane_init(membrane_init)
    teacher.train(teacher_mode)
    return student
