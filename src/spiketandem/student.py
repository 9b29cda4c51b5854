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
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .choices import ATTENTION_TIMES, ENCODINGS, INITS  # declared torch-free for the command line
from .errors import SpiketandemError
from .models.quantized import QCFS, quantize_activation
from .models.vit import AttentionProduct
from .neuron import NeuronConfig, RunContext, SpikingNeuron, TimeAware, TimeRepeat
from .percentile import percentile_of

# ---- what each teacher operation becomes: the one table of operations, shared by the builder and check_teacher ----

NEURON, LAYER, DROPOUT, REFUSED = "neuron", "layer", "dropout", "refused"  # an operation's role in the student


@dataclass(frozen=True)
class Operation:
    """One operation in all its forms (module classes, functions, Tensor methods), what it becomes in the student
    (``role``: a NEURON layer, a stateless LAYER, a DROPOUT that vanishes, or REFUSED with ``problem`` and ``fix``), and
    ``refusal(gm, node) -> (problem, fix) | None``, which refuses some calls of an otherwise accepted operation."""

    name: str
    role: str
    modules: tuple = ()
    functions: tuple = ()
    methods: tuple = ()
    problem: str = ""
    fix: str = ""
    refusal: object = None

    def matches(self, gm: fx.GraphModule, node: fx.Node) -> bool:
        if node.op == "call_module":
            return isinstance(gm.get_submodule(node.target), self.modules)
        if node.op == "call_function":
            return node.target in self.functions
        return node.op == "call_method" and node.target in self.methods


def _arg(node: fx.Node, index: int, name: str, default):
    """Argument ``index`` (counting the input as 0) of a function or method call, given by position or by ``name``."""
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _bounds(gm: fx.GraphModule, node: fx.Node) -> tuple:
    """(lower, upper) clip of an activation node: (0, inf) for ReLU, (0, 6) for ReLU6, (min_val, max_val) for
    Hardtanh, (min, max) for clamp (+-inf where it has none), (0, s) for a QCFS activation with learned clip s."""
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if isinstance(module, QCFS):
            return 0.0, float(module.scale.detach())
        if isinstance(module, nn.ReLU6):
            return 0.0, 6.0
        if isinstance(module, nn.Hardtanh):
            return module.min_val, module.max_val
        return 0.0, math.inf
    if node.target in (F.hardtanh, F.hardtanh_):
        return _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)
    if node.target in CLAMPS or node.target in CLAMP_METHODS:
        lower, upper = _arg(node, 1, "min", None), _arg(node, 2, "max", None)
        return -math.inf if lower is None else lower, math.inf if upper is None else upper
    return 0.0, 6.0 if node.target is F.relu6 else math.inf


def _clip_refusal(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str] | None:
    """A clip is a ReLU (a neuron layer) only with constant bounds, the lower one 0 and the upper one above it."""
    lower, upper = _bounds(gm, node)
    if not all(isinstance(b, (int, float)) for b in (lower, upper)):
        return ("its bounds are tensors or computed in forward",
                "give constant bounds, e.g. F.hardtanh(x, 0.0, 2.0), and retrain the teacher")
    if lower != 0 or upper <= 0:
        return (f"it clips to [{lower:g}, {upper:g}], and a neuron's output (spike count x amplitude) is a ReLU clipped to "
                "[0, c] with c > 0", "clip to [0, c]: nn.Hardtanh(0.0, c), F.hardtanh(x, 0.0, c) or x.clamp(0.0, c), "
                "and retrain the teacher")
    return None


def _batchnorm_refusal(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str] | None:
    """BatchNorm is folded at its running statistics: one without them is refused."""
    if gm.get_submodule(node.target).running_var is not None:
        return None
    return ("it normalises with each batch's statistics (track_running_stats=False), and the student folds BatchNorm "
            "at running statistics", "keep running statistics (track_running_stats=True, the default) and retrain "
            "the teacher")


def _product_refusal(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str] | None:
    """The attention product multiplies spike trains only: each of Q, K and V must be an activation's output."""
    if all(isinstance(a, fx.Node) and role_of(gm, a) == NEURON for a in node.args) and len(node.args) == 3:
        return None
    return ("its Q, K and V are not all outputs of a ReLU, so the student would multiply currents, not spikes",
            "give each of Q, K and V its own clipped ReLU (nn.Hardtanh(0.0, c)) right before the product "
            "(models/vit.py's SpikingSelfAttention) and retrain the teacher")


CLAMPS = (torch.clamp, torch.clip)
CLAMP_METHODS = ("clamp", "clamp_", "clip", "clip_")
RETRAIN = "and retrain the teacher"
OPERATIONS: tuple[Operation, ...] = (
    # neuron layers: the ReLUs, clipped (ReLU6, Hardtanh(0, c), clamp(0, c)) or quantized (QCFS); ReLU6 is a Hardtanh
    Operation("ReLU", NEURON, (nn.ReLU,), (F.relu, F.relu_, torch.relu, torch.relu_), ("relu", "relu_")),
    Operation("ReLU6", NEURON, (nn.ReLU6,), (F.relu6,)),
    Operation("QCFS", NEURON, (QCFS,)),
    Operation("clipped ReLU", NEURON, (nn.Hardtanh,), (F.hardtanh, F.hardtanh_) + CLAMPS, CLAMP_METHODS,
              refusal=_clip_refusal),
    # stateless layers (computed on the folded [T*B, ...] batch), and dropout (the identity on spikes)
    Operation("convolution", LAYER, (nn.Conv1d, nn.Conv2d)),
    Operation("linear", LAYER, (nn.Linear,)),
    Operation("BatchNorm", LAYER, (nn.BatchNorm1d, nn.BatchNorm2d), refusal=_batchnorm_refusal),
    Operation("average pooling", LAYER, (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d),
              (F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d)),
    Operation("max pooling", LAYER, (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d),
              (F.max_pool1d, F.max_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d)),
    Operation("flatten", LAYER, (nn.Flatten,), (torch.flatten, torch.reshape), ("flatten", "view", "reshape")),
    Operation("identity", LAYER, (nn.Identity,)),
    # s (Q K^T) V of three activations: spike trains in the student (SpikingAttentionProduct defines it in time)
    Operation("attention product", LAYER, (AttentionProduct,), refusal=_product_refusal),
    Operation("addition", LAYER, (), (operator.add, operator.iadd, torch.add), ("add", "add_")),
    Operation("concatenation", LAYER, (), (torch.cat, torch.concat)),
    Operation("shape and indexing", LAYER, (), (operator.getitem, getattr), ("size", "contiguous")),
    Operation("dropout", DROPOUT, (nn.Dropout, nn.Dropout1d, nn.Dropout2d), (F.dropout, F.dropout1d, F.dropout2d)),
    # refused, each with its fix
    Operation("activation", REFUSED,
              (nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.SELU, nn.CELU, nn.LeakyReLU, nn.PReLU, nn.RReLU,
               nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink),
              (F.gelu, F.silu, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh, F.elu, F.selu, torch.selu, F.celu,
               F.leaky_relu, F.prelu, torch.prelu, F.rrelu, F.mish, F.hardswish, F.hardsigmoid, F.softplus, F.softsign,
               F.logsigmoid, F.tanhshrink),
              ("sigmoid", "sigmoid_", "tanh", "tanh_"),
              problem="an activation other than ReLU has no spiking counterpart (a neuron's spike count is a ReLU of "
                      "its input)",
              fix=f"use nn.ReLU() or F.relu (nn.Hardtanh(0.0, c) for a clipped ReLU) {RETRAIN}"),
    Operation("mean", REFUSED, (), (torch.mean,), ("mean",),
              problem="a mean over dimensions is no layer the student has",
              fix="average with pooling: x.mean((2, 3)) is F.adaptive_avg_pool2d(x, 1).flatten(1) (or "
                  "nn.AdaptiveAvgPool2d(1) then nn.Flatten()), the same values, so the trained weights stay"),
    Operation("softmax", REFUSED, (nn.Softmax, nn.LogSoftmax, nn.Softmax2d),
              (F.softmax, torch.softmax, F.log_softmax, torch.log_softmax), ("softmax", "log_softmax"),
              problem="a softmax inside the network has no spiking counterpart",
              fix="remove it and return the logits: the loss applies the softmax (F.cross_entropy), and the "
                  "predicted class (argmax) is the same"),
    Operation("normalisation", REFUSED,
              (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.LocalResponseNorm),
              (F.layer_norm, F.group_norm, F.instance_norm, F.local_response_norm, F.normalize),
              problem="it normalises by each input's own statistics, which no fixed layer of the student computes",
              fix=f"use nn.BatchNorm2d / nn.BatchNorm1d (folded into the preceding conv/linear) {RETRAIN}"),
    Operation("weight layer as a function", REFUSED, (),
              (F.conv1d, F.conv2d, torch.conv1d, torch.conv2d, F.linear, F.batch_norm),
              problem="a weight layer called as a function has no module whose weights the student can take",
              fix="hold the weights in the module (nn.Conv2d, nn.Linear, nn.BatchNorm2d) and call it"),
    Operation("product", REFUSED, (),
              (operator.mul, operator.imul, torch.mul, operator.truediv, torch.div, operator.matmul, torch.matmul,
               torch.bmm), ("mul", "mul_", "div", "div_", "matmul"),
              problem="a product or quotient of tensors (gating, attention, squeeze-and-excitation, a scale) has no "
                      "spiking counterpart",
              fix=f"remove it (a constant factor folds into the preceding conv/linear's weights) {RETRAIN}"),
)
UNLISTED = Operation("other", REFUSED, problem="it has no spiking counterpart",
                     fix="a teacher is built of conv/linear/BatchNorm, pooling, flatten, dropout, add, concatenation and "
                         f"ReLU (clipped: nn.Hardtanh(0.0, c)); express it with those {RETRAIN}")


def operation_of(gm: fx.GraphModule, node: fx.Node) -> Operation | None:
    """The row of ``OPERATIONS`` that a call node is (``UNLISTED`` when none); None for the graph's own nodes
    (input, output, attribute reads)."""
    if node.op in ("placeholder", "output", "get_attr"):
        return None
    return next((op for op in OPERATIONS if op.matches(gm, node)), UNLISTED)


def role_of(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """What a teacher node becomes in the student: NEURON, LAYER, DROPOUT or REFUSED (None: the graph's own)."""
    op = operation_of(gm, node)
    if op is None:
        return None
    return REFUSED if op.refusal is not None and op.refusal(gm, node) else op.role


def op_label(gm: fx.GraphModule, node: fx.Node) -> str:
    """The operation as the teacher's code names it: "GELU", "F.gelu", "torch.mean", "Tensor.mean"."""
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    name = getattr(node.target, "__name__", str(node.target))
    for prefix, namespace in (("F.", F), ("torch.", torch), ("operator.", operator)):
        if getattr(namespace, name, None) is node.target:
            return prefix + name
    return name


def node_location(node: fx.Node) -> str:
    """Where a teacher node is: "module 'layer1.0.conv1'" for a module call, "node 'mean' inside 'head'" otherwise."""
    if node.op == "call_module":
        return f"module {node.target!r}"
    stack = node.meta.get("nn_module_stack") or {}
    return f"node {node.name!r}" + (f" inside {list(stack)[-1]!r}" if stack else "")


@dataclass(frozen=True)
class Finding:
    """One thing found at one operation of a teacher: ``kind`` REFUSED (the student builder refuses it), "nir" (NIR
    export refuses it) or "short-window" (what to expect at short windows); ``op`` as the code names it, ``where``
    it is (``node_location``), the problem and its fix."""

    kind: str
    op: str
    where: str
    problem: str
    fix: str

    def line(self) -> str:
        """One line: the operation and where it is, the problem, the fix (a finding about the whole teacher names
        no operation; one whose problem says its fix has no separate fix)."""
        head = " at ".join(part for part in (self.op, self.where) if part)
        text = f"{head}: {self.problem}" if head else self.problem
        return f"{text}; fix: {self.fix}" if self.fix else text


def refused_operations(gm: fx.GraphModule) -> list[Finding]:
    """Every operation of a traced teacher that the builder refuses, in graph order, each with its fix."""
    found = []
    for node in gm.graph.nodes:
        op = operation_of(gm, node)
        if op is None or op.role != REFUSED and op.refusal is None:
            continue
        why = (op.problem, op.fix) if op.role == REFUSED else op.refusal(gm, node)
        if why:
            found.append(Finding(REFUSED, op_label(gm, node), node_location(node), *why))
    return found


def render_findings(heading: str, findings: list[Finding]) -> str:
    """``heading``, then one indented line per finding."""
    return "\n".join([heading] + [f"  {f.line()}" for f in findings])


def refusal_heading(findings: list[Finding]) -> str:
    """The heading of the builder's refusal: how many problems the listed lines name."""
    count = f"{len(findings)} problem{'s' if len(findings) != 1 else ''}"
    return f"cannot build a spiking student from this teacher ({count}, each with its fix):"


class TeacherRefused(SpiketandemError):
    """The builder's refusal of a teacher: every operation it cannot make spiking (``findings``), each with its fix,
    rendered as ``check_teacher`` renders them."""

    def __init__(self, findings: list[Finding]):
        self.findings = list(findings)
        super().__init__(render_findings(refusal_heading(self.findings), self.findings))


def _is_relu(gm: fx.GraphModule, node: fx.Node) -> bool:
    """ReLU, ReLU6, clipped ReLUs (a Hardtanh or clamp with a lower bound of 0, module or function) and quantized ones
    (QCFS) become spiking neurons."""
    return role_of(gm, node) == NEURON


def _ceiling(gm: fx.GraphModule, node: fx.Node) -> float:
    """The upper clip of a ReLU node: inf for ReLU, 6 for ReLU6, c for a clipped ReLU (Hardtanh(0, c), clamp(0, c)),
    the learned clip s of a QCFS activation."""
    return float(_bounds(gm, node)[1])


def _levels(gm: fx.GraphModule, node: fx.Node) -> tuple[int | None, float]:
    """(L, phi) of a QCFS activation node; (None, 0) for a full-precision one."""
    module = gm.get_submodule(node.target) if node.op == "call_module" else None
    return (module.levels, module.shift) if isinstance(module, QCFS) else (None, 0.0)


class _TeacherTracer(fx.Tracer):
    """fx's tracer, with the QCFS activation (a neuron layer, not its arithmetic) and the attention product (one
    operation on three activations) kept as one call each."""

    def is_leaf_module(self, m: nn.Module, qualified_name: str) -> bool:
        return isinstance(m, (QCFS, AttentionProduct)) or super().is_leaf_module(m, qualified_name)


def _describe(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    where = f" inside {list(stack)[-1]!r}" if stack else ""
    return f"{node.op} {getattr(node.target, '__name__', node.target)!s} (fx node {node.name!r}{where})"


def trace_graph(teacher: nn.Module) -> fx.GraphModule:
    """The teacher's fx graph (QCFS activations kept as one call); one clear error for a teacher fx cannot trace."""
    try:
        return fx.GraphModule(teacher, _TeacherTracer().trace(teacher), type(teacher).__name__)
    except Exception as e:  # fx raises many kinds for data-dependent control flow
        raise SpiketandemError(f"cannot trace the teacher with torch.fx ({type(e).__name__}: {e}); its forward must not "
                               "branch on tensor values") from None


def trace_teacher(teacher: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """fx-trace a teacher and annotate shapes; clear errors for untraceable or unmappable teachers (every refused
    operation at once, ``TeacherRefused``)."""
    gm = trace_graph(teacher)
    refused = refused_operations(gm)
    if refused:
        raise TeacherRefused(refused)
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


DEFAULT_ATTENTION_TIME = ATTENTION_TIMES[0]  # choices.ATTENTION_TIMES: how the attention product is defined in time


class SpikingAttentionProduct(AttentionProduct, TimeAware):
    """The teacher's attention product A = s (Q K^T) V (``models.vit.AttentionProduct``, per head) on the student's
    spike trains Q[t], K[t], V[t] (each spikes times its layer's amplitude), defined in time by ``time``:

    - ``step`` (the default): A[t] = s Q[t] K[t]^T V[t], the product of the spikes of step t alone.  Every
      multiplication is a coincidence of two spikes (an addition of amplitudes), and each step needs nothing but that
      step's spikes, so the layer runs one step at a time (online LTL, a chip).  Its window mean
      (1/T) sum_t A[t] differs from the teacher's s r_Q r_K^T r_V (r: rates x amplitude) by the correlation of the
      spike trains: spikes that coincide count, rates alone do not;
    - ``rate``: A[t] = s r_Q[t] r_K[t]^T r_V[t] with r_X[t] = (1/t) sum_{tau<=t} X[tau], the product of the running
      rates: tends to the teacher's product as the rates settle, but multiplies graded values (MACs, not additions);
    - ``increment``: A[t] = P[t] - P[t-1] with P[t] = t s r_Q[t] r_K[t]^T r_V[t] (P[0] = 0), so the input summed over
      steps 1..t is exactly t times the product of the running rates (the spike-equivalent form of SpikeZIP-TF,
      You et al. 2024): the receiving neuron's count after T steps follows the teacher's product; graded values too.

    Inputs and output are folded ``[T*B, D, N]``.  ``rate`` and ``increment`` need the whole window in one call (their
    running sums are not carried between calls); ``step`` has no state."""

    def __init__(self, heads: int, scale: float, time: str = DEFAULT_ATTENTION_TIME):
        super().__init__(heads, scale)
        self.register_buffer("time_index", torch.tensor(0))
        self.set_time(time)

    def set_time(self, time: str) -> None:
        if time not in ATTENTION_TIMES:
            raise SpiketandemError(f"attention product in time {time!r} is not one of {', '.join(ATTENTION_TIMES)}")
        self.time_index.fill_(ATTENTION_TIMES.index(time))

    @property
    def time(self) -> str:
        return ATTENTION_TIMES[int(self.time_index)]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, time={self.time}"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.time == "step":
            return super().forward(q, k, v)
        ctx = self.context()
        if ctx.state_in is not None:
            raise SpiketandemError(f"the attention product in time {self.time!r} needs the whole window in one call; "
                                   "a student run step by step (online LTL, carried states) takes time 'step'")
        T = ctx.T
        steps = torch.arange(1, T + 1, dtype=q.dtype, device=q.device).reshape(T, 1, 1, 1, 1)

        def running_rate(x):
            x = self.split(x)
            return (x.reshape(T, -1, *x.shape[1:]).cumsum(0) / steps).flatten(0, 1)

        a = self.product(running_rate(q), running_rate(k), running_rate(v))
        if self.time == "increment":
            p = a.reshape(T, -1, *a.shape[1:]) * steps
            a = torch.cat([p[:1], p[1:] - p[:-1]]).flatten(0, 1)
        return self.merge(a)


def attention_products(student: "Student") -> dict[str, SpikingAttentionProduct]:
    """The student's attention products by module path."""
    return {name: m for name, m in student.graph_module.named_modules() if isinstance(m, SpikingAttentionProduct)}


def _spiking_products(gm: fx.GraphModule) -> None:
    """Every teacher attention product becomes its spiking form (same heads and scale, ``DEFAULT_ATTENTION_TIME``)."""
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), AttentionProduct):
            teacher_product = gm.get_submodule(node.target)
            gm.add_submodule(node.target, SpikingAttentionProduct(teacher_product.heads, teacher_product.scale,
                                                                  DEFAULT_ATTENTION_TIME))


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


def _owned_modules(gm: fx.GraphModule, start: fx.Node, neuron_names: set, op: str = "call_module") -> list[str]:
    """Module targets between ``start`` and the nearest upstream neuron layers (or the input); with
    ``op="get_attr"`` the parameters read there instead (a learned position embedding added to a current)."""
    owned, stack, seen = [], list(start.all_input_nodes), set()
    while stack:
        node = stack.pop()
        if node in seen or (node.op == "call_module" and node.target in neuron_names):
            continue
        seen.add(node)
        if node.op == op and node.target not in owned:
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
    attributes: list = field(default_factory=list)  # parameters read directly (get_attr) on the way to it

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

    def set_attention_time(self, time: str) -> None:
        """How every attention product is defined in time: step, rate or increment (``SpikingAttentionProduct``)."""
        for product in attention_products(self).values():
            product.set_time(time)

    def membrane_inits(self) -> dict[str, float]:
        """Each neuron layer's starting membrane f (U[0] = f * theta), by layer."""
        return {name: float(m.membrane_init) for name, m in self.neurons.items()}

    def start_state(self) -> dict | None:
        """The states every layer starts a window from (None when all start at U = 0)."""
        states = {name: m.start_state() for name, m in self.neurons.items()}
        return states if any(s is not None for s in states.values()) else None

    def layer_parameters(self, name: str) -> list[nn.Parameter]:
        info = next(i for i in self.layers if i.name == name)
        read = []
        for target in info.attributes:  # a parameter read directly (a position embedding); buffers train nothing
            try:
                read.append(self.graph_module.get_parameter(target))
            except AttributeError:
                pass
        return [p for t in info.modules for p in self.graph_module.get_submodule(t).parameters()] + read

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
    _spiking_products(gm)
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
        if role_of(gm, node) == DROPOUT:
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
        info.attributes = _owned_modules(gm, by_target[f"neurons.{info.name}"], names, op="get_attr")
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
