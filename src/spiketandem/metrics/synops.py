"""Operation counting for any model: dense MACs of an ANN, synaptic operations (SynOps) of an SNN.

Convolutions and matrix products are intercepted with a ``TorchDispatchMode``, so any architecture
is counted without per-layer code.  Each conv / matmul input is either

- an **event tensor** (spikes, possibly scaled by a layer's amplitude, pooled, summed, reshaped):
  every event at an input position triggers one accumulate (AC) per synapse it feeds,
      SynOps = sum_i  E_i * fanout_i,
  where ``E_i`` is the number of events at input position i and ``fanout_i`` the number of weights
  that position reaches (for a conv this depends on padding, stride and dilation; for a linear
  layer it is ``out_features``); or
- an **analog tensor** (an image, a membrane current): one multiply-accumulate (MAC) per weight use,
      MACs = outputs * (in_channels / groups) * prod(kernel)      (conv; padded taps included, the
      MACs = N * K * M                                              usual FLOPs-counter convention)
                                                                    (matmul [N, K] @ [K, M])

How events are known: every tensor that flows through the counted call carries an event count
``E`` (a "shadow" of the same shape) or is analog.  A tensor whose non-zero entries all share one
magnitude (binary or amplitude-scaled spikes, a bool mask) starts a shadow ``E = 1[x != 0]``;
event-preserving ops carry it on: reshapes/views/copies/concatenation move it, a sum of two event
tensors adds their counts (a residual join delivers both streams), average pooling becomes *sum*
pooling (each event is routed to every pooled output whose window holds it, i.e. the pooling is
folded into the next layer's weights), max pooling keeps the picked entry's count, scaling by
anything keeps the count where the factor is non-zero (a graded spike is still one event).  Any
other op (adding a bias, a nonlinearity) makes the result analog.  Parameters and buffers of the
``named`` module are always analog, so a weight matrix is never mistaken for spikes.

The arguments of the counted call are the *inputs*, and what they are is not guessed from their values
when the counted model is spiking (``named`` holds spiking neuron layers): an analog-encoded student's
image is a constant current whatever its pixels (a binary image, all pixels of one magnitude, would
otherwise pass for spikes), so its input layer costs MACs; a rate-encoded student makes its input
spikes inside the forward, where they are recognised as events.  ``analog_inputs`` overrides this
(True: the arguments are analog; False: classify them by their values, as any intermediate tensor).

Event-camera frames (counts of events per pixel and time bin, ``count_ops(..., event_inputs=True)``)
are event tensors whose shadow is the count itself, ``E = x``: the first layer of a frames student
is event-driven, costing SynOps = sum_i x_i * fanout_i (exact convention: each event one AC per
synapse), not MACs.

Two conventions count the SynOps of an event input (``SYNOPS_CONVENTIONS``, both counted in one pass):

- **exact** (the default):        SynOps = sum_i  E_i * fanout_i            (the event shadow above);
- **standard** (the field's):     SynOps = sum_i  1[x_i != 0] * fanout_i    (x: the layer's actual input),

i.e. the standard count charges each non-zero input value of a conv/linear layer once per synapse,
whatever number of events it carries.  They differ only where one input value carries several events:
an average-pooled spike map (a pooled value holding 3 spikes counts 3 exact, 1 standard), a residual
sum of coincident spikes (2 vs 1), an event-camera frame pixel holding n events (n vs 1).  On spikes
fed straight into a layer (a strided conv, a linear layer after a neuron) they are equal.  Analog inputs
are MACs in both.  docs/metrics.md says which published numbers use which.

A layer that sees the constant analog input runs once per inference in spiketandem's students (its
current is held for all T steps), and is counted once.  Bias additions, BatchNorm, pooling and the
neuron updates themselves are not counted (the convention of the SNN literature and of the LTL
paper's Fig. 2b: SynOps of the SNN against MACs of the ANN).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from ..choices import SYNOPS_CONVENTIONS

aten = torch.ops.aten

UNATTRIBUTED = "(outside any layer)"
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear,
               nn.Bilinear)


def _one_magnitude(mag: torch.Tensor) -> bool:
    peak = mag.amax()
    return bool(((mag == 0) | (mag == peak)).all())


def is_spike_tensor(x: torch.Tensor) -> bool:
    """True when every non-zero entry has the same magnitude (binary spikes, possibly scaled, or a bool mask)."""
    if x.dtype == torch.bool:
        return True
    if not x.is_floating_point() or x.numel() == 0:
        return x.numel() == 0
    flat = x.detach().reshape(-1)
    # most analog tensors already fail on their first entries: test those before the whole tensor
    return _one_magnitude(flat[:256].abs()) and _one_magnitude(flat.abs())


# ---- counting rules -----------------------------------------------------------------------------

def conv_synapses(events: torch.Tensor, weight_shape, stride, padding, dilation, groups, transposed=False,
                  output_padding=None) -> int:
    """sum_i E_i * fanout_i for a convolution, exactly (padding, stride, dilation, groups).

    Every input channel of a group feeds ``out_channels / groups`` output channels, and an input
    position's number of kernel taps landing on valid outputs does not depend on the channel, so by
    linearity sum_{n,c} conv(E[n,c], ones) = conv(sum_{n,c} E[n,c], ones): one single-channel
    convolution of the event map summed over batch and channels (cheap on any layer size), in
    float64 so that large counts stay exact."""
    spatial = len(weight_shape) - 2
    total_map = events.sum(dim=(0, 1), dtype=torch.float64).reshape(1, 1, *events.shape[2:])
    ones = torch.ones(1, 1, *weight_shape[2:], dtype=torch.float64, device=events.device)
    if transposed:
        out_per_group = weight_shape[1]
        conv_t = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[spatial]
        taps = conv_t(total_map, ones, None, stride, padding, output_padding or 0, 1, dilation)
    else:
        out_per_group = weight_shape[0] // groups
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
        taps = conv(total_map, ones, None, stride, padding, dilation, 1)
    return int(round(float(taps.sum()))) * out_per_group


def conv_macs(x: torch.Tensor, w: torch.Tensor, out: torch.Tensor, transposed: bool = False) -> int:
    """Multiply-accumulates of a convolution (or a linear layer: weight [out, in]) that wrote ``out``:
    every output element times its fan-in (transposed: every input element times its fan-out)."""
    if transposed:  # every input element meets every weight of its group once
        return x.numel() * w.shape[1] * math.prod(w.shape[2:])
    return out.numel() * w[0].numel()


def _matmul_synops(ex, ew, x_shape, w_shape) -> int | None:
    """Events through x [.., N, K] @ w [.., K, M]; None when neither operand carries events."""
    if ex is not None and ew is not None:  # spike x spike: one AC per pair of co-active entries
        return int(round(float((ex.sum(-2, dtype=torch.float64) * ew.sum(-1, dtype=torch.float64)).sum())))
    if ex is not None:
        return int(round(float(ex.sum(dtype=torch.float64)))) * w_shape[-1]
    if ew is not None:
        return int(round(float(ew.sum(dtype=torch.float64)))) * x_shape[-2]
    return None


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    """1[x != 0]: the standard convention's count of an input entry (one, whatever events it carries)."""
    return (x.detach() != 0).to(torch.float32)


# ---- event propagation --------------------------------------------------------------------------

# ops whose output entries are copies of entries of their first argument (shapes and indices only)
_MOVES = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.t.default, aten.transpose.int,
    aten.permute.default, aten.expand.default, aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims,
    aten.squeeze.default, aten.slice.Tensor, aten.select.int, aten.clone.default, aten.alias.default,
    aten.detach.default, aten.flip.default, aten.roll.default, aten.repeat.default, aten.index_select.default,
    aten.narrow.default, aten.split.Tensor, aten.split_with_sizes.default, aten.unbind.int, aten.unfold.default,
}
_JOINS = {aten.cat.default, aten.stack.default}
_SUMS = {aten.add.Tensor, aten.add_.Tensor, aten.sub.Tensor, aten.sub_.Tensor}
_SCALES = {aten.mul.Tensor, aten.mul_.Tensor, aten.mul.Scalar, aten.mul_.Scalar, aten.div.Tensor, aten.div_.Tensor,
           aten.div.Scalar, aten.div_.Scalar, aten.neg.default, aten.neg_.default}
_AVG_POOLS = {aten.avg_pool2d.default, aten.avg_pool3d.default}
_MAX_POOLS = {aten.max_pool2d_with_indices.default, aten.max_pool3d_with_indices.default}
_COPIES = {aten._to_copy.default, aten.lift_fresh.default}


def _full(t, out) -> bool:
    """True when ``t`` is a tensor of the output's shape (not a broadcast factor)."""
    return isinstance(t, torch.Tensor) and isinstance(out, torch.Tensor) and t.shape == out.shape


def _adaptive_window_sizes(in_size: int, out_size: int, device) -> torch.Tensor:
    """Window lengths of adaptive pooling: [floor(i*In/Out), ceil((i+1)*In/Out))."""
    i = torch.arange(out_size, device=device)
    start = torch.div(i * in_size, out_size, rounding_mode="floor")
    end = torch.div((i + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
    return (end - start).to(torch.float32)


@dataclass
class OpCounts:
    """Operations of one counted call, per layer (conv/linear module path) and in total.

    ``macs`` are dense multiply-accumulates (analog inputs); ``synops`` the accumulates triggered by
    events in the exact convention, ``standard`` the same layers' SynOps in the standard one (see the
    module docstring); all are totals over the ``samples`` inputs of the call (use the ``*_per_sample``
    methods for one inference, and ``convention=`` to choose the SynOps count)."""

    macs: dict = field(default_factory=lambda: defaultdict(int))      # layer -> dense MACs
    synops: dict = field(default_factory=lambda: defaultdict(int))    # layer -> sum_i E_i fanout_i (exact)
    standard: dict = field(default_factory=lambda: defaultdict(int))  # layer -> sum_i 1[x_i != 0] fanout_i
    samples: int = 1

    def synops_of(self, convention: str = "exact") -> dict:
        """layer -> SynOps (total over the samples) in ``convention`` ("exact" or "standard")."""
        if convention not in SYNOPS_CONVENTIONS:
            from ..errors import SpiketandemError
            raise SpiketandemError(f"unknown SynOps convention {convention!r}; choose one of "
                                   f"{', '.join(SYNOPS_CONVENTIONS)} (docs/metrics.md: Conventions)")
        return self.synops if convention == "exact" else self.standard

    def total_macs(self) -> int:
        return sum(self.macs.values())

    def total_synops(self, convention: str = "exact") -> int:
        return sum(self.synops_of(convention).values())

    def macs_per_sample(self) -> float:
        return self.total_macs() / self.samples

    def synops_per_sample(self, convention: str = "exact") -> float:
        return self.total_synops(convention) / self.samples

    def layers(self) -> list[str]:
        """Layer names in the order they first ran."""
        return list(dict.fromkeys([*self.macs, *self.synops]))

    def per_layer(self, convention: str = "exact") -> dict[str, dict]:
        """layer -> {"macs", "synops" (in ``convention``), "synops_by_convention": {convention: SynOps}},
        all per sample."""
        chosen = self.synops_of(convention)
        by = {c: self.synops_of(c) for c in SYNOPS_CONVENTIONS}
        return {name: {"macs": self.macs.get(name, 0) / self.samples, "synops": chosen.get(name, 0) / self.samples,
                       "synops_by_convention": {c: d.get(name, 0) / self.samples for c, d in by.items()}}
                for name in self.layers()}


class _Counter(TorchDispatchMode):
    def __init__(self, counts: OpCounts, dense: bool, analog: list[torch.Tensor]):
        super().__init__()
        self.counts = counts
        self.dense = dense
        self.layers = [UNATTRIBUTED]
        self.events = WeakIdKeyDictionary()  # tensor -> event count tensor (float32) or None (analog)
        for t in analog:
            self.events[t] = None

    # -- events of a tensor (classified on first sight) --
    def event_of(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() == 0:  # scalars are factors, never spikes
            return None
        if x in self.events:
            return self.events[x]
        e = _nonzero(x) if is_spike_tensor(x) else None
        self.events[x] = e
        return e

    def _set(self, out, e) -> None:
        if isinstance(out, torch.Tensor):
            self.events[out] = e
        elif isinstance(out, (tuple, list)):
            for o, oe in zip(out, e if isinstance(e, (tuple, list)) else [None] * len(out)):
                self._set(o, oe)

    def _scaled(self, func, args, out):
        """Events of a product or quotient: a spike times any non-zero factor is still one event
        (the factor is applied by the receiving neuron); spike x spike is the coincidence."""
        a, b = args[0], (args[1] if len(args) > 1 else None)
        ea = self.event_of(a) if _full(a, out) else None
        eb = self.event_of(b) if _full(b, out) and func in (aten.mul.Tensor, aten.mul_.Tensor) else None
        if ea is not None and eb is not None:
            return ea * eb
        if ea is None and eb is None:
            return None
        e, factor = (ea, b) if ea is not None else (eb, a)
        return e * (factor != 0) if isinstance(factor, torch.Tensor) and factor.dim() > 0 else e

    def _count(self, macs: int, synops: int | None, standard: int | None) -> None:
        """Add a layer call: MACs when its input is analog (``synops`` None), else SynOps in both conventions."""
        layer = self.layers[-1]
        if synops is None:
            self.counts.macs[layer] += macs
        else:
            self.counts.synops[layer] += synops
            self.counts.standard[layer] += standard

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is aten.convolution.default:
            x, w = args[0], args[1]
            stride, padding, dilation, transposed, output_padding, groups = args[3:9]
            e = None if self.dense else self.event_of(x)
            syn = std = None
            if e is not None:
                geometry = (w.shape, stride, padding, dilation, groups, transposed, output_padding)
                syn, std = conv_synapses(e, *geometry), conv_synapses(_nonzero(x), *geometry)
            self._count(conv_macs(x, w, out, transposed), syn, std)
            self._set(out, None)
        elif func in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default):
            x, w = args[-2:] if func in (aten.mm.default, aten.bmm.default) else args[1:3]
            ex, ew = (None, None) if self.dense else (self.event_of(x), self.event_of(w))
            syn = _matmul_synops(ex, ew, x.shape, w.shape)
            std = _matmul_synops(None if ex is None else _nonzero(x), None if ew is None else _nonzero(w), x.shape,
                                 w.shape)
            self._count(math.prod(x.shape) * w.shape[-1], syn, std)
            self._set(out, None)
        elif not self.dense:
            self._propagate(func, args, kwargs, out)
        return out

    def _propagate(self, func, args, kwargs, out) -> None:
        """Carry event counts through event-preserving ops; everything else is analog (or unknown)."""
        if func in _MOVES or func in _COPIES:
            e = self.event_of(args[0])
            if e is not None:  # a dtype/device copy keeps the float32 counts, on the output's device
                e = e.to(out.device) if func in _COPIES else func(e, *args[1:], **kwargs)
            self._set(out, e)
        elif func in _JOINS:
            es = [self.event_of(t) for t in args[0]]
            self._set(out, None if any(e is None for e in es) else func(es, *args[1:], **kwargs))
        elif func is aten.constant_pad_nd.default:
            e = self.event_of(args[0])
            pad_value = args[2] if len(args) > 2 else kwargs.get("value", 0)
            self._set(out, func(e, args[1], 0.0) if e is not None and pad_value == 0 else None)
        elif func in _SUMS:  # both operands must be full-size event tensors (a residual join)
            ea, eb = (self.event_of(t) if _full(t, out) else None for t in args[:2])
            self._set(out, ea + eb if ea is not None and eb is not None else None)
        elif func in _SCALES:
            self._set(out, self._scaled(func, args, out))
        elif func in (aten.sum.dim_IntList, aten.sum.default, aten.mean.dim):
            e = self.event_of(args[0])
            if e is not None:
                dims = args[1] if len(args) > 1 else None
                keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
                e = e.sum(dims, keepdim=keepdim) if dims not in (None, []) else e.sum()
            self._set(out, e)
        elif func in _AVG_POOLS:
            e = self.event_of(args[0])
            if e is not None:  # the same pooling with divisor 1 is sum pooling
                full = list(args) + [None] * (7 - len(args))
                defaults = [None, None, [], 0, False, True, None]
                full = [a if a is not None else d for a, d in zip(full, defaults)]
                full[0], full[6] = e, 1
                e = func(*full)
            self._set(out, e)
        elif func is aten._adaptive_avg_pool2d.default:
            e = self.event_of(args[0])
            if e is not None:
                oh, ow = args[1]
                area = torch.outer(_adaptive_window_sizes(e.shape[-2], oh, e.device),
                                   _adaptive_window_sizes(e.shape[-1], ow, e.device))
                e = func(e, args[1]) * area
            self._set(out, e)
        elif func in _MAX_POOLS:
            e = self.event_of(args[0])
            values, indices = out
            if e is not None:  # indices address the flattened spatial dims of each (sample, channel)
                spatial = 2 if func is aten.max_pool2d_with_indices.default else 3
                e = e.flatten(-spatial).gather(-1, indices.flatten(-spatial)).reshape(values.shape)
            self._set(values, e)
        else:
            # unknown op: leave the outputs unclassified (they are looked at again if a layer uses them),
            # but an in-place op has changed its target, so forget what was known about it
            schema = getattr(func, "_schema", None)
            for i, arg in enumerate(schema.arguments if schema is not None else []):
                if arg.alias_info is not None and arg.alias_info.is_write and i < len(args):
                    target = args[i]
                    if isinstance(target, torch.Tensor) and target in self.events:
                        del self.events[target]


def _attribution_hooks(named: nn.Module, counter: _Counter) -> list:
    """Pre/post forward hooks that keep a stack of the conv/linear layer now running (or of a module marked
    ``counted_as_layer``: a spiking transformer's attention product, whose products are its own)."""
    def enter(name):
        return lambda module, inputs: counter.layers.append(name)

    def leave(module, inputs, output):
        counter.layers.pop()  # returns None: a forward hook's return value would replace the output

    hooks = []
    for name, module in named.named_modules():
        if isinstance(module, LAYER_TYPES) or getattr(module, "counted_as_layer", False):
            hooks.append(module.register_forward_pre_hook(enter(name or type(module).__name__)))
            hooks.append(module.register_forward_hook(leave))
    return hooks


def _check_event_counts(x: torch.Tensor) -> None:
    from ..errors import SpiketandemError
    if x.is_floating_point() and bool(((x < 0) | (x != x.round())).any()):
        raise SpiketandemError("count_ops(event_inputs=True) needs event counts (non-negative whole numbers, e.g. "
                               "binned event-camera frames); this input holds other values: count it as analog "
                               "(event_inputs=False)")


def _is_spiking(module: nn.Module) -> bool:
    from ..neuron import SpikingNeuron
    return any(isinstance(m, SpikingNeuron) for m in module.modules())


@torch.no_grad()
def count_ops(fn, *args, named: nn.Module | None = None, dense: bool = False, samples: int | None = None,
              event_inputs: bool = False, analog_inputs: bool | None = None, **kwargs) -> tuple[OpCounts, object]:
    """Run ``fn(*args, **kwargs)`` once (a model or any function), counting MACs and SynOps.

    Ops are attributed to the conv/linear layers of ``named`` (default: ``fn`` itself when it is a
    module) by module path.  ``dense=True`` counts every conv/matmul as MACs (an ANN, whatever its
    activations look like).  ``samples`` (default: the first argument's batch size) is the number of
    inferences the call makes, for the per-sample figures.  ``event_inputs=True``: the tensor
    arguments are event counts (event-camera frames), so the layers they reach cost SynOps
    ``sum_i x_i * fanout_i`` rather than MACs.  ``analog_inputs``: whether the tensor arguments are analog
    whatever their values (default: yes when ``named`` is a spiking network and ``event_inputs`` is off; an
    analog student's input layer is a MAC layer even for a binary image).  Returns the counts and ``fn``'s
    output."""
    if samples is None:
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        samples = int(first.shape[0]) if first is not None and first.dim() > 0 else 1
    counts = OpCounts(samples=max(1, samples))
    named = named if named is not None else (fn if isinstance(fn, nn.Module) else nn.Module())
    analog = [*named.parameters(), *named.buffers()]
    counter = _Counter(counts, dense, analog)
    if analog_inputs is None:
        analog_inputs = not event_inputs and _is_spiking(named)
    if analog_inputs and event_inputs:
        from ..errors import SpiketandemError
        raise SpiketandemError("count_ops: the inputs are either event counts (event_inputs=True) or analog "
                               "(analog_inputs=True), not both")
    for a in args:
        if not isinstance(a, torch.Tensor) or a.dim() == 0:
            continue
        if event_inputs:
            _check_event_counts(a)
            counter.events[a] = a.detach().to(torch.float32)  # shadow E = the event count itself
        elif analog_inputs:
            counter.events[a] = None  # the input is a current, whatever its values
    hooks = _attribution_hooks(named, counter)
    try:
        with counter:
            out = fn(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return counts, out
