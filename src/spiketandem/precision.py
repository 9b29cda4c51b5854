"""Mixed precision (``--amp bf16``) and the channels_last memory format (``--channels-last``).

bf16 autocast runs convolutions and matrix products in bfloat16 (8 significant bits) and keeps
reductions and losses (``cross_entropy``, ``mse_loss``) in float32, as ``torch.autocast`` does.
Spiking layers are the exception the autocast lists do not know about: a membrane potential
``U[t] = a U[t-1] + I[t] - theta S[t-1]`` accumulates T currents, and in bfloat16 each addition
would round U to 8 bits, so a neuron's spike count could drift by several spikes over the window.
Each neuron layer's input current is therefore cast to float32 on entry (a forward pre-hook), so
the whole neuron state, its spikes and the LTL losses built on them are float32; only the weight
layers between neurons run in bfloat16.  Spikes (0 or 1) are exact in bfloat16, the per-layer
spike amplitude (a scalar) is rounded to 8 bits when the next layer consumes it.

channels_last stores conv weights and image batches as NHWC, which cuDNN's and oneDNN's fastest
convolution kernels prefer; the values (and, up to the order of floating-point sums, the results)
are the same as with the default NCHW layout.
"""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch
from torch import nn

from .errors import SpiketandemError
from .choices import AMP_MODES  # declared torch-free for the command line
from .neuron import SpikingNeuron


def check_amp(amp: str, device: torch.device) -> None:
    if amp not in AMP_MODES:
        raise SpiketandemError(f"--amp {amp!r} is not one of {', '.join(AMP_MODES)}")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SpiketandemError("--amp bf16: this GPU has no bfloat16 support; use --amp off")


def autocast_factory(amp: str, device: torch.device) -> Callable[[], ContextManager]:
    """A function returning the context every training/evaluation step runs in."""
    check_amp(amp, device)
    if amp == "off":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _float32_current(module: nn.Module, args: tuple):
    return (args[0].float(),) + tuple(args[1:])


def keep_neurons_float32(model: nn.Module) -> None:
    """Cast the input current of every ``SpikingNeuron`` in ``model`` to float32 (idempotent)."""
    for m in model.modules():
        if isinstance(m, SpikingNeuron) and not getattr(m, "_float32_hook", False):
            m.register_forward_pre_hook(_float32_current)
            m._float32_hook = True


def trainable_modules(rule) -> list[nn.Module]:
    """The modules the rule trains (``Rule.modules()``); never its teacher."""
    return list(rule.modules().values())


def prepare_rule(rule, amp: str, channels_last: bool, device: torch.device) -> Callable[[], ContextManager]:
    """Apply ``channels_last`` to the rule's modules (and its teacher) and, for bf16, keep neuron
    layers in float32; returns the autocast context factory for its steps."""
    factory = autocast_factory(amp, device)
    modules = trainable_modules(rule)
    if getattr(rule, "teacher", None) is not None:
        modules.append(rule.teacher)
    for module in modules:
        if channels_last:
            module.to(memory_format=torch.channels_last)
        if amp != "off":
            keep_neurons_float32(module)
    return factory


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format
