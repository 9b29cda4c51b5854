"""Cutting an fx graph (the student's, or the teacher's with its taps) into S contiguous segments.

Some nodes have a fixed segment (the student's neuron layers, the teacher's ReLU taps: the partition of
the layers); every other node goes to the *latest* segment that is no later than any of its users
(``stage = min(stage of its users)``), so the stateless layers feeding a neuron layer (its conv, a
residual block's downsample conv and add) run in that layer's segment, and what crosses a cut is, in
the zoo's VGGs and ResNets, only neuron outputs (spikes) or teacher activations.  Inputs
(placeholders) and attributes (``get_attr``) are available in every segment: every rank has the batch.

A segment is an ``fx.GraphModule`` sharing the modules (and parameters) of the graph it was cut from;
``Segment.run(values)`` reads its inputs by node name from ``values`` and writes its outputs into it.
``Cut.crossing[b]`` lists the values that cross boundary ``b`` (from segment ``b`` to ``b + 1``): those
produced at or before ``b`` that a later segment uses; a value used two segments on is relayed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch import nn

from ..errors import SpiketandemError
from ..neuron import SpikingNeuron, TimeAware

FREE = ("placeholder", "get_attr")


@dataclass
class Segment:
    module: fx.GraphModule
    inputs: list[str]     # node names read from the values (graph inputs or values of earlier segments)
    outputs: list[str]    # node names written to the values
    timed: list = field(default_factory=list)  # TimeAware submodules (need the RunContext)

    def run(self, values: dict, ctx=None) -> dict:
        for m in self.timed:
            m.ctx = ctx
        try:
            out = self.module(*[values[name] for name in self.inputs])
        finally:
            for m in self.timed:
                m.ctx = None
        values.update(zip(self.outputs, out))
        return values


@dataclass
class Cut:
    segments: list[Segment]
    crossing: list[list[str]]   # crossing[b]: node names crossing from segment b to b + 1, in graph order
    nodes: dict                 # node name -> fx.Node of the source graph
    stage: dict                 # node name -> segment index (free nodes absent)


def assign(graph: fx.Graph, fixed: dict[fx.Node, int], wanted: dict[fx.Node, int], stages: int) -> dict[fx.Node, int]:
    """The segment of every non-free node: ``fixed`` ones as given, the others as late as their users allow.
    ``wanted[n] = s``: segment ``s`` must have ``n`` (it is produced there or earlier)."""
    stage: dict[fx.Node, int] = {}
    for node in reversed(list(graph.nodes)):
        if node.op in FREE or node.op == "output":
            continue
        if node in fixed:
            stage[node] = fixed[node]
            continue
        bounds = [stage[u] for u in node.users if u.op != "output"]
        if node in wanted:
            bounds.append(wanted[node])
        stage[node] = min(bounds) if bounds else stages - 1
    for node, s in stage.items():  # a fixed node after one of its inputs' segments: an order the cut cannot keep
        for arg in node.all_input_nodes:
            if arg.op not in FREE and stage[arg] > s:
                raise SpiketandemError(f"cannot cut the graph into pipeline stages: {node.name!r} (stage {s + 1}) uses "
                                       f"{arg.name!r} of a later stage ({stage[arg] + 1})")
    return stage


def cut(gm: fx.GraphModule, fixed: dict[fx.Node, int], wanted: dict[fx.Node, int], stages: int) -> Cut:
    """Cut ``gm`` into ``stages`` segments; segment ``s`` returns the values it produces that later segments
    use, and the values ``wanted`` at ``s`` (the graph's own output node is not used)."""
    stage = assign(gm.graph, fixed, wanted, stages)
    nodes = [n for n in gm.graph.nodes if n.op != "output"]
    later: dict[fx.Node, int] = {}  # the last segment that needs a node
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg.op not in FREE and node in stage:
                later[arg] = max(later.get(arg, -1), stage[node])
    for node, s in wanted.items():
        later[node] = max(later.get(node, -1), s)
    crossing = [[n.name for n in nodes if n in stage and stage[n] <= b < later.get(n, -1)] for b in range(stages - 1)]
    segments = []
    for s in range(stages):
        members = [n for n in nodes if stage.get(n) == s]
        needed = {n for n in nodes if n in stage and stage[n] == s and later.get(n, -1) > s}
        outputs = [n for n in nodes if n in needed or (wanted.get(n) == s)]
        segments.append(_segment(gm, members, outputs, stage, s))
    return Cut(segments, crossing, {n.name: n for n in nodes}, {n.name: s for n, s in stage.items()})


def _segment(gm: fx.GraphModule, members: list[fx.Node], outputs: list[fx.Node], stage: dict, s: int) -> Segment:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    inputs: list[str] = []
    outside = []  # values this segment reads but does not produce, in graph order
    seen = set()
    for node in members + [o for o in outputs if stage.get(o) != s]:
        for arg in (node.all_input_nodes if node in members else [node]):
            if arg.op == "get_attr" or stage.get(arg) == s or arg in seen:
                continue
            seen.add(arg)
            outside.append(arg)
    for arg in outside:
        env[arg] = graph.placeholder(arg.name)
        inputs.append(arg.name)
    for node in members:
        for arg in node.all_input_nodes:
            if arg.op == "get_attr" and arg not in env:
                env[arg] = graph.get_attr(arg.target)
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[o] for o in outputs))
    module = fx.GraphModule(gm, graph)
    module.graph.lint()
    module.recompile()
    return Segment(module, inputs, [o.name for o in outputs], [m for m in module.modules() if isinstance(m, TimeAware)])


# ---- the student and its teacher -------------------------------------------------------------------

def neuron_nodes(gm: fx.GraphModule) -> dict[str, fx.Node]:
    """Layer name -> the fx node of that neuron layer in a student's graph."""
    found = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), SpikingNeuron):
            found[gm.get_submodule(node.target).name] = node
    return found


def cut_student(student, stage_of_layer: dict[str, int], stages: int, gm: fx.GraphModule | None = None) -> Cut:
    """The student cut at the layer partition ``stage_of_layer``; the last segment returns the readout.
    Refuses a cut that a gradient would have to cross (a weight whose value reaches a later stage other
    than through a neuron layer's detached output).  ``gm``: another graph of the student's modules to cut
    (online LTL's one-step graph); default its own."""
    gm = student.graph_module if gm is None else gm
    neurons = neuron_nodes(gm)
    fixed = {neurons[name]: s for name, s in stage_of_layer.items()}
    output = next(n for n in gm.graph.nodes if n.op == "output")
    result = cut(gm, fixed, {output.args[0]: stages - 1}, stages)
    _check_no_gradient_crosses(gm, result, set(neurons.values()))
    _check_modules_in_one_stage(gm, result)
    return result


def _carries_gradient(gm: fx.GraphModule, node: fx.Node, neurons: set, memo: dict) -> bool:
    """Whether ``node``'s value depends on a parameter other than through a (detached) neuron output."""
    if node in memo:
        return memo[node]
    if node in neurons or node.op == "placeholder":
        memo[node] = False
    elif node.op == "get_attr":
        memo[node] = isinstance(getattr_path(gm, node.target), nn.Parameter)
    elif node.op == "call_module" and any(True for _ in gm.get_submodule(node.target).parameters()):
        memo[node] = True
    else:
        memo[node] = any(_carries_gradient(gm, a, neurons, memo) for a in node.all_input_nodes)
    return memo[node]


def getattr_path(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _check_no_gradient_crosses(gm, result: Cut, neurons: set) -> None:
    memo: dict = {}
    for b, names in enumerate(result.crossing):
        for name in names:
            if _carries_gradient(gm, result.nodes[name], neurons, memo):
                raise SpiketandemError(
                    f"cannot pipeline this student between stages {b + 1} and {b + 2}: the value {name!r} crosses the "
                    "cut with a gradient (it depends on weights other than through a neuron layer's detached "
                    "output), and the pipeline sends no backward messages; use fewer --pipeline-stages")


def _check_modules_in_one_stage(gm, result: Cut) -> None:
    where: dict[str, int] = {}
    for name, s in result.stage.items():
        node = result.nodes[name]
        if node.op == "call_module" and any(True for _ in gm.get_submodule(node.target).parameters(recurse=True)):
            if where.setdefault(node.target, s) != s:
                raise SpiketandemError(f"cannot pipeline this student: module {node.target!r} is called in stages "
                                       f"{where[node.target] + 1} and {s + 1}; its weights would be trained twice")


def stage_parameters(student, result: Cut, s: int) -> list[nn.Parameter]:
    """The parameters segment ``s`` trains (its modules' and its attributes'), each once."""
    gm = student.graph_module
    found, seen = [], set()
    for name, stage in result.stage.items():
        node = result.nodes[name]
        if stage != s:
            continue
        params = list(gm.get_submodule(node.target).parameters()) if node.op == "call_module" else []
        for arg in node.all_input_nodes:
            if arg.op == "get_attr" and isinstance(getattr_path(gm, arg.target), nn.Parameter):
                params.append(getattr_path(gm, arg.target))
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                found.append(p)
    return found


def stage_buffers(student, result: Cut, s: int) -> list[torch.Tensor]:
    """The buffers of segment ``s``'s modules (neuron thresholds, amplitudes, leaks; BatchNorm statistics)."""
    gm = student.graph_module
    found, seen = [], set()
    for name, stage in result.stage.items():
        node = result.nodes[name]
        if stage == s and node.op == "call_module":
            for b in gm.get_submodule(node.target).buffers():
                if id(b) not in seen:
                    seen.add(id(b))
                    found.append(b)
    return found


def cut_teacher(taps, stage_of_layer: dict[str, int], stages: int) -> Cut:
    """``TeacherTaps``' graph cut at the same layer partition: segment ``s`` returns the activations of
    its own layers (by layer name) and the last one also the logits (node ``Cut.logits``)."""
    gm = taps.graph_module
    output = next(n for n in gm.graph.nodes if n.op == "output")
    logits, tap_nodes = output.args[0]
    fixed = {tap_nodes[name]: s for name, s in stage_of_layer.items()}
    wanted = dict(fixed)
    wanted[logits] = stages - 1
    result = cut(gm, fixed, wanted, stages)
    result.logits = logits.name
    result.taps = {name: node.name for name, node in tap_nodes.items()}
    return result
