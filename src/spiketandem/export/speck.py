"""Student -> SynSense Speck (DYNAP-CNN cores) through sinabs: conversion, discretization, core mapping.

The student goes to sinabs directly, not through NIR: NIR 1.0 has no reset by subtraction, no starting membrane
and no spike-encoded input, and the chip has all three.  The student's graph is first translated and folded as
for NIR (``nir_graph``/``nir_folding``: spike amplitudes and average pooling's 1/k^2 folded into the next weights,
average pooling written as sum pooling), then written as a ``sinabs`` sequence of ``Conv2d``/``Linear`` +
``IAFSqueeze`` (+ ``SumPool2d``) layers, one DYNAP-CNN layer (one core) per neuron layer, which
``DynapcnnNetwork`` discretizes and the chip's config builder maps onto cores.

What each chip layer computes, per time step t (integers after discretization, state s = 16-bit)::

    v[t] = max(v[t-1] + W * x[t] + b - theta S[t-1] ... , v_min)      with S[t] = H(v - theta) (one spike per step)

exactly as sinabs' ``IAFSqueeze`` with ``SingleSpike`` and ``MembraneSubtract`` (or ``MembraneReset`` for a
zero-reset student): ``v <- v + W x + b``; ``S = [v >= theta]``; ``v <- v - theta S``; ``v <- max(v, v_min)``.
Dropping ``v_min`` and the integer rounding, that is the student's IF neuron (Eq. 1-3: the subtraction of
``theta S[t-1]`` at the next step is the same spike train).

Input: Speck's cores take events.  A rate-encoded student (``--encoding rate``) sees signed Bernoulli spikes
``s in {-1, 0, 1}`` times the sample's peak ``|x|``; on the chip they are two event channels (ON for +1, OFF for
-1), the first weights ``[P W, -P W]`` with ``P`` the peak, fixed for all samples to the largest seen.  An
event-data student (``--encoding frames``) is fed counts of events per pixel, polarity and step: the chip's input
as it is.

Biases: on the chip a layer's bias is added by its leak clock (``leak_enable``), once per slow-clock tick; the
student adds it once per step.  The two agree when the slow clock ticks once per student step (one step's input
events between ticks): the export reports that rate.

Limits: 9 cores, each with its own kernel (weight), neuron (state) and bias memory, as sinabs declares them for
Speck (``sinabs.backend.dynapcnn.chips.dynapcnn.DynapcnnConfigBuilder.get_constraints``: kernel 16/16/16/32/32/
64/64/16/16 Ki entries, neuron 64/64/64/32/32/16/16/16/16 Ki, bias 1 Ki per core), with each layer's need
computed by sinabs (``DynapcnnLayer.memory_summary``: ``K = c 2^(ceil log2(k_x k_y) + ceil log2 f)``,
``N = f 2^(ceil log2 h + ceil log2 w)``).  Weights and biases are 8-bit, states and thresholds 16-bit
(``sinabs.backend.dynapcnn.discretize``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import SpiketandemError
from ..student import Student

CHIP = "speck2fmodule"
STATE_MIN = -(2 ** 15)          # the chip's 16-bit membrane floor
SPIKE_FNS = ("single", "multi")
SPECK_FORMAT = "spiketandem-speck-1"     # OUT/speck_network.pt


@dataclass
class ChipLayer:
    """One DYNAP-CNN layer (one core): weights (float64, folded), then IF neurons, then sum pooling."""

    where: str                    # the student's neuron layer (or "readout")
    kind: str                     # conv or linear
    weight: torch.Tensor
    bias: torch.Tensor
    in_shape: tuple
    threshold: float
    reset: str                    # subtract or zero
    start: float                  # starting membrane (float, same units as threshold)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    pool: int = 1
    flatten_before: bool = False
    params: dict = field(default_factory=dict)


def input_peak(images: torch.Tensor) -> float:
    """The fixed event weight P of a rate-encoded input: the largest per-sample peak ``max |x|`` of ``images``."""
    return float(images.abs().flatten(1).amax(1).max())


def chip_layers(student: Student, peak: float | None, readout_threshold: float) -> list[ChipLayer]:
    """The student as a chain of chip layers (refusals name the student node and the fix)."""
    from .nir_folding import _fold_scales, _materialise
    from .nir_graph import _Translator
    if student.encoding == "analog":
        raise SpiketandemError("Speck takes events, not analog currents: this student's first layer is fed the image "
                               "itself (--encoding analog); train it with --encoding rate (spike-encoded input) or on "
                               "event data (an event dataset with --encoding frames)")
    for name, m in student.neurons.items():
        if m.config.kind != "if" or float(m.alpha) != 1.0:
            raise SpiketandemError(f"Speck's neurons integrate without leak, but layer {name} is {m.config.kind!r} "
                                   f"(leak {float(m.alpha):g}); train with --neuron if")
        if m.threshold.numel() != 1:
            raise SpiketandemError(f"layer {name} has one threshold per channel; a Speck core has one threshold: "
                                   "train with the default per-layer threshold")
    g = _Translator(student).run()
    _fold_scales(g)
    _materialise(g)
    order = g.order()
    layers: list[ChipLayer] = []
    pending = None
    flatten = False
    for name in order:
        node = g.nodes[name]
        if len(node.inputs) > 1:
            raise SpiketandemError(f"--target speck: student node {node.where!r} sums several branches (a residual "
                                   "join); this export maps chains of layers; use a plain teacher (VGG, digits-cnn)")
        if node.kind in ("input", "output"):
            continue
        if node.kind == "flatten":
            flatten = True
            continue
        if node.kind in ("conv", "affine"):
            if pending is not None:
                raise SpiketandemError(f"--target speck: two weight layers in a row at student node {node.where!r}; "
                                       "every chip layer is weights followed by neurons")
            p = node.params
            if node.kind == "conv":
                w = p["weight"]
                if w.dim() != 4 or p["groups"] != 1 or tuple(p["dilation"]) != (1, 1) or w.shape[2] != w.shape[3]:
                    raise SpiketandemError(f"--target speck: the conv at student node {node.where!r} is not a square, "
                                           "ungrouped, undilated 2-d convolution, the only kind a Speck core runs")
                pending = ChipLayer(node.where, "conv", w, p["bias"], tuple(p["in_shape"]), 0.0, "subtract", 0.0,
                                    tuple(p["stride"]), tuple(p["padding"]), flatten_before=flatten)
            else:
                in_shape = g.nodes[node.inputs[0]].shape
                pending = ChipLayer(node.where, "linear", p["weight"], p["bias"], tuple(in_shape), 0.0, "subtract",
                                    0.0, flatten_before=flatten)
            flatten = False
            continue
        if node.kind == "neuron":
            if pending is None:
                raise SpiketandemError(f"--target speck: neuron layer {node.where!r} is not fed by a weight layer")
            m = node.params["module"]
            pending.where = m.name or node.where
            pending.threshold = float(m.threshold)
            pending.reset = m.config.reset
            pending.start = float(m.membrane_init) * float(m.threshold)
            layers.append(pending)
            pending = None
            continue
        if node.kind == "sumpool":
            k, s = tuple(node.params["kernel"]), tuple(node.params["stride"])
            if not layers or k[0] != k[1] or s != k or layers[-1].pool != 1:
                raise SpiketandemError(f"--target speck: the pooling at student node {node.where!r} is not a square "
                                       "pool with stride = kernel right after a neuron layer, the only pooling a Speck "
                                       "core does (on its output events)")
            layers[-1].pool = int(k[0])
            continue
        raise SpiketandemError(f"--target speck: student node {node.where!r} ({node.kind}) has no Speck counterpart")
    if pending is None:
        raise SpiketandemError("--target speck: the student ends with neurons, not a readout layer")
    pending.where, pending.threshold = "readout", float(readout_threshold)
    # the readout starts where the student's neurons do (theta/2: its spike counts round instead of floor)
    pending.start = max(layer.start / layer.threshold for layer in layers) * pending.threshold if layers else 0.0
    layers.append(pending)
    first = layers[0]
    if student.encoding == "frames":   # event counts per step and polarity: the chip's own input, as they are
        return layers
    # signed input spikes -> ON/OFF event channels: W s P = [P W, -P W] . [s+, s-]
    c = first.in_shape[0]
    if first.kind == "conv":
        first.weight = torch.cat([peak * first.weight, -peak * first.weight], dim=1)
    else:
        w = first.weight.reshape(first.weight.shape[0], c, -1)
        first.weight = torch.cat([peak * w, -peak * w], dim=1).reshape(first.weight.shape[0], -1)
    first.in_shape = (2 * c, *first.in_shape[1:])
    if first.kind == "linear" and len(student.input_shape) == 3:
        first.in_shape = (2 * student.input_shape[0], *student.input_shape[1:])
    return layers


def sinabs_sequence(layers: list[ChipLayer], T: int, spike_fn: str = "single") -> nn.Sequential:
    """The chip layers as a float ``sinabs`` network (``Conv2d``/``Linear`` + ``IAFSqueeze`` + ``SumPool2d``).

    Each neuron's floor ``min_v_mem = STATE_MIN / s`` with ``s`` the layer's weight/bias discretization scale, so
    that after discretization it is the chip's own 16-bit floor, and the threshold does not limit the scale."""
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike
    if spike_fn not in SPIKE_FNS:
        raise SpiketandemError(f"spike function {spike_fn!r} is not one of {SPIKE_FNS}")
    mods: list[nn.Module] = []
    for layer in layers:
        w, b = layer.weight.float(), layer.bias.float()
        if layer.flatten_before:
            mods.append(nn.Flatten())
        if layer.kind == "conv":
            conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], stride=layer.stride, padding=layer.padding)
        else:
            conv = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        mods.append(conv)
        mods.append(sl.IAFSqueeze(num_timesteps=T, spike_threshold=float(layer.threshold),
                                  min_v_mem=STATE_MIN / _weight_scale(layer),
                                  spike_fn=SingleSpike if spike_fn == "single" else MultiSpike,
                                  reset_fn=MembraneSubtract() if layer.reset == "subtract" else MembraneReset()))
        if layer.pool > 1:
            mods.append(sl.SumPool2d(layer.pool))
    return nn.Sequential(*mods)


def _scale(t: torch.Tensor, bits: int) -> float:
    """The factor that puts ``t``'s largest magnitude on the edge of a signed ``bits`` grid (as sinabs picks it)."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    tmin, tmax = float(t.min()), float(t.max())
    if tmin == 0 and tmax == 0:
        return math.inf
    return abs(hi / tmax) if abs(tmin) <= abs(tmax) * abs(lo / hi) else abs(lo / tmin)


def _weight_scale(layer: ChipLayer) -> float:
    """The largest factor that keeps the layer's weights and biases on the signed 8-bit grid."""
    return min(_scale(layer.weight.float(), 8), _scale(layer.bias.float(), 8))


def discretization_scale(layer: ChipLayer) -> float:
    """The one factor sinabs multiplies the layer's weights, bias, threshold and states by before rounding: the
    largest that keeps weights and biases within 8 bits and the threshold and floor within 16 bits."""
    w = _weight_scale(layer)
    return min(w, _scale(torch.tensor([STATE_MIN / w, layer.threshold], dtype=torch.float32), 16))


def _starts(layers: list[ChipLayer]) -> list[int]:
    """Each layer's starting membrane on the chip's integer scale."""
    return [round(layer.start * discretization_scale(layer)) for layer in layers]


def discretized_network(layers: list[ChipLayer], T: int, spike_fn: str = "single"):
    """``DynapcnnNetwork`` of the chip layers, discretized by sinabs (8-bit weights/biases, 16-bit states)."""
    from .speck_backend import dynapcnn_backend
    backend, _ = dynapcnn_backend()
    seq = sinabs_sequence(layers, T, spike_fn)
    net = backend.DynapcnnNetwork(seq, input_shape=tuple(layers[0].in_shape), discretize=True)
    return net


def integer_layers(net) -> list[dict]:
    """Each mapped layer's integer parameters, read from sinabs' discretized network."""
    out = []
    for index, layer in sorted(net.dynapcnn_layers.items()):
        conv, spk = layer.conv_layer, layer.spk_layer
        out.append({"index": index, "weight": conv.weight.detach().double(),
                    "bias": (conv.bias.detach().double() if conv.bias is not None
                             else torch.zeros(conv.out_channels, dtype=torch.float64)),
                    "stride": tuple(conv.stride), "padding": tuple(conv.padding),
                    "threshold": float(spk.spike_threshold), "v_min": float(spk.min_v_mem),
                    "reset": "zero" if type(spk.reset_fn).__name__ == "MembraneReset" else "subtract",
                    "pool": int(layer.pool[0][0]) if layer.pool else 1, "in_shape": tuple(layer.in_shape)})
    return out


def chip_limits() -> list[dict]:
    """Speck's per-core memories as sinabs declares them (kernel, neuron, bias entries)."""
    from .speck_backend import dynapcnn_backend
    dynapcnn_backend()
    from sinabs.backend.dynapcnn.chip_factory import ChipFactory
    builder = ChipFactory(CHIP).get_config_builder()
    return [{"core": i, "kernel": c.kernel_memory, "neuron": c.neuron_memory, "bias": c.bias_memory}
            for i, c in enumerate(builder.get_constraints())]


def resources(net, where: list[str]) -> dict:
    """Per layer: memory needed (sinabs' ``memory_summary``) and the core sinabs' mapper assigns; refuses in one
    line a layer that fits no core, naming it, its need, the largest core and the fix."""
    from sinabs.backend.dynapcnn.chip_factory import ChipFactory
    limits = chip_limits()
    need = net.memory_summary()
    rows = []
    for i, (index, layer) in enumerate(sorted(net.dynapcnn_layers.items())):
        row = {"layer": where[i], "index": index, "kernel": int(need["kernel"][index]),
               "neuron": int(need["neuron"][index]), "bias": int(need["bias"][index]),
               "shape": list(layer.get_neuron_shape())}
        fits = [c for c in limits if row["kernel"] <= c["kernel"] and row["neuron"] <= c["neuron"]
                and row["bias"] <= c["bias"]]
        if not fits:
            worst = max(("kernel", "neuron"), key=lambda k: row[k] / max(c[k] for c in limits))
            most = max(c[worst] for c in limits)
            fix = ("a narrower --width (fewer channels in or out of this layer)" if worst == "kernel" else
                   "a narrower --width or more pooling before this layer (fewer neurons)")
            raise SpiketandemError(f"--target speck: layer {row['layer']} needs {row[worst]} {worst} memory entries "
                                   f"but Speck's largest core holds {most} (sinabs' per-core limits); retrain with {fix}")
        rows.append(row)
    if len(rows) > len(limits):
        raise SpiketandemError(f"--target speck: the student has {len(rows)} layers but Speck has {len(limits)} cores "
                               "(one layer per core); use a shallower teacher")
    builder = ChipFactory(CHIP).get_config_builder()
    try:
        cores = builder.map_layers_to_cores(net.dynapcnn_layers)
    except ValueError:
        raise SpiketandemError("--target speck: every layer fits some core but no assignment fits them all (sinabs' "
                               "mapper); retrain with a narrower --width") from None
    for row in rows:
        core = cores[row["index"]]
        row["core"] = int(core)
        row.update({f"{k}_limit": limits[core][k] for k in ("kernel", "neuron", "bias")})
    return {"chip": CHIP, "cores": len(limits), "layers": rows,
            "limits_from": "sinabs.backend.dynapcnn.chips.dynapcnn.DynapcnnConfigBuilder.get_constraints (Speck); "
                           "needs from DynapcnnLayer.memory_summary; cores from sinabs' mapper (get_valid_mapping)"}


READOUT_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def readout_drive(student: Student, images: torch.Tensor, T: int) -> float:
    """The median over ``images`` of the winning class's mean readout input per step (float student)."""
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)              # the student draws its own input spikes: the same draw every export
        scores = student(images, T).mean(0)
    drive = float(scores.max(1).values.median())
    # a student whose winning class is driven below zero still needs a positive readout threshold
    return drive if drive > 0 else max(float(scores.abs().max()), 1e-6)


def export_speck(student: Student, T: int, test: tuple, held_out: tuple, *, seed: int = 0, log=None) -> dict:
    """Map ``student`` onto Speck and measure it.  ``test``/``held_out``: (images, labels), normalised as the
    student sees them.  The readout layer's threshold is chosen on ``held_out`` among ``READOUT_FACTORS`` times the
    readout's median winning drive per step (the chip classifies by the readout layer's spike counts).

    Returns the report: resources, input encoding, readout threshold, accuracy (float student, float chip network,
    discretized network with one spike per step and with several), and the spike-count comparison of the
    integer simulation with sinabs' forward; plus ``"network"``: the discretized ``DynapcnnNetwork``."""
    from .speck_backend import dynapcnn_backend
    from .speck_verify import accuracy_of_counts, compare_counts, integer_forward, rate_events, sinabs_forward
    log = log or (lambda *a, **k: None)
    backend, samna = dynapcnn_backend()
    student = student.cpu().eval()
    (x_test, y_test), (x_held, y_held) = test, held_out
    rate = student.encoding == "rate"
    peak = input_peak(torch.cat([x_test, x_held])) if rate else None
    # refusals (encoding, neuron kind, graph, memory) before any simulation; the readout threshold moves no memory
    layers = chip_layers(student, peak, 1.0)
    report = {"resources": resources(discretized_network(layers, T), [layer.where for layer in layers])}
    if rate:
        ev_test, ev_held = rate_events(x_test, T, seed), rate_events(x_held, T, seed + 1)
    else:                             # event frames [B, T, 2, H, W]: counts of events per pixel, polarity, step
        ev_test, ev_held = x_test, x_held
    drive = readout_drive(student, x_held, T)
    best = None
    for factor in READOUT_FACTORS:
        layers = chip_layers(student, peak, factor * drive)
        net = discretized_network(layers, T, "single")
        acc = accuracy_of_counts(sinabs_forward(net, ev_held, _starts(layers))[-1], y_held)
        log(f"readout threshold {factor:g} x {drive:.4g}: held-out accuracy {100 * acc:.2f}%")
        if best is None or acc > best[0]:
            best = (acc, factor, layers, net)
    _, factor, layers, net = best
    names = [layer.where for layer in layers]
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        float_test = float((student(x_test, T).mean(0).argmax(1) == y_test).double().mean())
        float_held = float((student(x_held, T).mean(0).argmax(1) == y_held).double().mean())
    float_net = backend.DynapcnnNetwork(sinabs_sequence(layers, T, "single"), input_shape=tuple(layers[0].in_shape),
                                        discretize=False)
    ints = integer_layers(net)
    float_starts = [layer.start for layer in layers]
    starts = _starts(layers)
    highest: list = []
    ours, theirs = integer_forward(ints, ev_test, "single", starts, highest), sinabs_forward(net, ev_test, starts)
    multi_net = discretized_network(layers, T, "multi")
    ours_m, theirs_m = integer_forward(ints, ev_test, "multi", starts), sinabs_forward(multi_net, ev_test, starts)
    peaks = x_test.abs().flatten(1).amax(1) if rate else None
    report.update({
        "chip": CHIP, "T": T,
        "route": "direct from the student (NIR 1.0 carries no reset by subtraction, starting membrane or spike input)",
        "input": ({"encoding": "rate", "events": "2 channels per image channel: ON (+1 spikes) then OFF (-1 "
                   "spikes), at most one event per pixel and step", "event_weight_peak": peak,
                   "test_images_at_that_peak": float((peaks >= peak * (1 - 1e-6)).double().mean())} if rate else
                  {"encoding": "frames", "events": "the recording's events as they are: each frame's count per "
                   "pixel and polarity is that many events in that step",
                   "events_per_sample": float(x_test.sum() / max(1, x_test.shape[0]))}),
        "bias": "added by each core's leak clock: set the slow clock to one tick per student step (one step's "
                "events between ticks) for the student's timing",
        "readout": {"threshold_float": factor * drive, "factor": factor, "median_winning_drive": drive,
                    "classify": "most readout spikes over T steps"},
        "accuracy": {
            "float_student": {"test": float_test, "held_out": float_held},
            "float_chip_network": {"test": accuracy_of_counts(sinabs_forward(float_net, ev_test, float_starts)[-1],
                                                              y_test),
                                   "held_out": accuracy_of_counts(sinabs_forward(float_net, ev_held, float_starts)[-1],
                                                                  y_held)},
            "discretized_single_spike": {"test": accuracy_of_counts(theirs[-1], y_test),
                                         "held_out": best[0]},
            "discretized_multi_spike": {"test": accuracy_of_counts(theirs_m[-1], y_test),
                                        "held_out": accuracy_of_counts(sinabs_forward(multi_net, ev_held, starts)[-1],
                                                                       y_held)},
            "test_images": int(y_test.numel()), "held_out_images": int(y_held.numel())},
        "verify": {"single_spike": compare_counts(ours, theirs, names),
                   "multi_spike": compare_counts(ours_m, theirs_m, names)},
        "integer_layers": [{"layer": name, "threshold": int(p["threshold"]), "v_min": int(p["v_min"]),
                            "weight_range": [int(p["weight"].min()), int(p["weight"].max())],
                            "bias_range": [int(p["bias"].min()), int(p["bias"].max())], "pool": p["pool"],
                            "start": int(s), "reset": p["reset"], "membrane_max": int(top),
                            "membrane_within_16_bit": top <= 2 ** 15 - 1}
                           for name, p, s, top in zip(names, ints, starts, highest)],
        "samna": samna,
    })
    report["network"], report["parameters"] = net, ints
    return report


def load_speck_network(path, spike_fn: str = "single"):
    """The ``DynapcnnNetwork`` written by ``export --target speck`` (``OUT/speck_network.pt``), rebuilt from its
    integer parameters (not discretized again), ready for sinabs: its forward simulates the chip, and with
    SynSense's samna installed ``net.to("speck2fdevkit:0")`` or ``net.make_config(...)`` puts it on a board.

    Each layer computes ``v <- v + W x + b``, spikes by ``spike_fn`` (``single``: ``[v >= theta]``, the student's
    rule; ``multi``: ``floor(v / theta)``), resets by subtraction (or to zero) and floors ``v`` at ``v_min``."""
    import sinabs.layers as sl
    from sinabs.activation import MembraneReset, MembraneSubtract, MultiSpike, SingleSpike
    from ..runs import safe_load
    from .speck_backend import dynapcnn_backend
    if spike_fn not in SPIKE_FNS:
        raise SpiketandemError(f"spike function {spike_fn!r} is not one of {SPIKE_FNS}")
    path = Path(path)
    if path.is_dir():
        path = path / "speck_network.pt"
    saved = safe_load(path, "a Speck network (export --target speck)", expected_format=SPECK_FORMAT)
    backend, _ = dynapcnn_backend()
    mods: list[nn.Module] = []
    for p in saved["layers"]:
        w = p["weight"].float()
        conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=p["stride"], padding=p["padding"])
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(p["bias"].float())
        mods.append(conv)
        mods.append(sl.IAFSqueeze(num_timesteps=int(saved["T"]), spike_threshold=float(p["threshold"]),
                                  min_v_mem=float(p["v_min"]),
                                  spike_fn=SingleSpike if spike_fn == "single" else MultiSpike,
                                  reset_fn=MembraneSubtract() if p["reset"] == "subtract" else MembraneReset()))
        if p["pool"] > 1:
            mods.append(sl.SumPool2d(p["pool"]))
    return backend.DynapcnnNetwork(nn.Sequential(*mods), input_shape=tuple(saved["layers"][0]["in_shape"]),
                                   discretize=False)
