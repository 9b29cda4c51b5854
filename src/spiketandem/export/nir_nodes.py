"""The NIR nodes of a folded graph: IF/LIF neurons (thresholds as the largest float32 below ours, the snnTorch
flavour's IF as LIF), weight nodes (and a quantized weight's grid), and the edges."""
from __future__ import annotations

import numpy as np

from ..errors import SpiketandemError
from ..neuron import SpikingNeuron

from .nir_graph import _Graph, _np

NIR_NEURON_KINDS = ("if", "lif")  # the neuron kinds (neuron.NEURON_MODELS) written as NIR nodes; others are refused
IF_AS_LIF_EXPONENT = 40  # flavour "snntorch": IF written as LIF with tau = 2^40 dt, membrane scaled by 2^-40


def _below(value) -> np.ndarray:
    """The largest float32 strictly below ``value`` (elementwise): NIR fires on v > v_threshold, we on
    U >= theta; on float32 membranes ``v > below(theta)`` is exactly ``v >= theta`` (ties are common:
    threshold balancing sets theta to an actual calibration activation)."""
    return np.nextafter(np.asarray(value, dtype=np.float32), np.float32(-np.inf))


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
    if m.config.kind not in NIR_NEURON_KINDS:
        raise SpiketandemError(f"NIR export: the {m.config.kind!r} neuron of layer {m.name or where} has no NIR node "
                               f"(NIR 1.0 has IF and LIF, written from {', '.join(NIR_NEURON_KINDS)} neurons); train the "
                               "student with --neuron if or lif to export it")
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
    n = None
    try:
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
    except ValueError as e:  # NIR's own checks (e.g. a grouped convolution it cannot represent): one line
        raise SpiketandemError(f"NIR cannot represent the student's {n.kind} layer {n.where}: {e}; export a student "
                               "whose teacher uses only the layers NIR has (docs/nir.md: what is written)") from None
    edges = [(names[i], names[key]) for key in order for i in g.nodes[key].inputs]
    return nodes, edges


# ---- public ------------------------------------------------------------------------------------------------
