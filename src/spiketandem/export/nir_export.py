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
from pathlib import Path

from ..errors import SpiketandemError
from ..student import Student

from .nir_folding import _fold_scales, _materialise
from .nir_graph import _Translator, refuse_attention_products
from .nir_nodes import IF_AS_LIF_EXPONENT, _emit
from .options import DEFAULT_DT, FLAVOURS

FORMAT = "spiketandem-nir-2"


def _need_nir():
    try:
        import nir
    except ImportError:
        raise SpiketandemError("NIR export needs the `nir` package: pip install 'spiketandem[nir]' "
                               "(or pip install nir)") from None
    return nir


def refuse_membrane_start(student: Student, what: str = "this student") -> None:
    """NIR neurons start at v = 0: a student whose membranes start charged (U[0] = f * theta, f > 0) would be
    written as another network, so it is refused, naming the fix.  A spiking transformer is refused first: no
    change of its membranes makes its attention product writable (``nir_graph.refuse_attention_products``)."""
    refuse_attention_products(student)
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
    refuse_attention_products(student)  # before the checks whose fixes would not help a spiking transformer
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
