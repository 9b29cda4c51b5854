"""The fused neuron's two kernels as torch custom ops (``torch.ops.spiketandem.neuron_forward`` and
``neuron_backward``), so TorchDispatchMode tools (``bench.memory.LiveTensorBytes``, the op counter)
and ``torch.compile`` see each as one op.  Implementations: CPU -> compiled C++ (``cpu.py``) or, if
that cannot be built, the torch loop (``torch_loop.py``, with a one-time warning); CUDA -> Triton
(``triton_neuron.py``).  Tensors arrive flattened: currents ``[T, N]`` (``[N]`` if static), states ``[N]``.
"""
from __future__ import annotations

import logging
import warnings

import torch
from torch import Tensor

from . import cpu, torch_loop
from .codes import MASK, U_TRACE

_warned = False


def _cpu_module():
    global _warned
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its "no CUDA runtime" notice is noise on a CPU-only machine
    try:
        module = cpu.load()
    finally:
        logger.setLevel(level)
    if module is None and not _warned:
        _warned = True
        warnings.warn(f"spiketandem: the fused neuron's C++ kernel could not be built ({cpu.failure()}); using the "
                      "slower torch loop. Install a C++ compiler and ninja (pip install ninja) to get it.",
                      RuntimeWarning, stacklevel=3)
    return module


@torch.library.custom_op("spiketandem::neuron_forward", mutates_args=())
def neuron_forward(I: Tensor, u0: Tensor, s0: Tensor, steps: int, is_static: bool, a: float, theta: float,
                   zero: bool, save: int, half_width: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(S [T, N], U[T-1], S[T-1], saved): saved is the uint8 gate|spike mask, U [T, N], or empty."""
    raise NotImplementedError(f"no fused neuron kernel for device {I.device.type}")


@neuron_forward.register_kernel("cpu")
def _forward_cpu(I, u0, s0, steps, is_static, a, theta, zero, save, half_width):
    module = _cpu_module()
    impl = module.neuron_forward if module is not None else torch_loop.forward
    return tuple(impl(I, u0, s0, steps, is_static, a, theta, zero, save, half_width))


@neuron_forward.register_kernel("cuda")
def _forward_cuda(I, u0, s0, steps, is_static, a, theta, zero, save, half_width):
    from . import triton_neuron
    return triton_neuron.forward(I, u0, s0, steps, is_static, a, theta, zero, save, half_width)


@neuron_forward.register_fake
def _forward_fake(I, u0, s0, steps, is_static, a, theta, zero, save, half_width):
    N = u0.numel()
    S = I.new_empty(steps, N)
    saved = (I.new_empty(steps, N, dtype=torch.uint8) if save == MASK else I.new_empty(steps, N) if save == U_TRACE
             else I.new_empty(0))
    return S, u0.new_empty(N), s0.new_empty(N), saved


@torch.library.custom_op("spiketandem::neuron_backward", mutates_args=())
def neuron_backward(gS: Tensor, gU_last: Tensor, gS_last: Tensor, saved: Tensor, is_static: bool, a: float,
                    theta: float, zero: bool, detach: bool, kind: int, p: float) -> Tensor:
    """dL/dI [T, N] (or [N], summed over time, if static) by the reverse recursion."""
    raise NotImplementedError(f"no fused neuron kernel for device {gS.device.type}")


@neuron_backward.register_kernel("cpu")
def _backward_cpu(gS, gU_last, gS_last, saved, is_static, a, theta, zero, detach, kind, p):
    module = _cpu_module()
    if module is None:
        return torch_loop.backward(gS, gU_last, gS_last, saved, is_static, a, theta, zero, detach, kind, p)
    return module.neuron_backward(gS, gU_last, gS_last, saved, is_static, a, theta, zero, detach, kind, p, False)


@neuron_backward.register_kernel("cuda")
def _backward_cuda(gS, gU_last, gS_last, saved, is_static, a, theta, zero, detach, kind, p):
    from . import triton_neuron
    return triton_neuron.backward(gS.contiguous(), gU_last, gS_last, saved, is_static, a, theta, zero, detach, kind, p)


@neuron_backward.register_fake
def _backward_fake(gS, gU_last, gS_last, saved, is_static, a, theta, zero, detach, kind, p):
    return gS.new_empty(gS.shape[1]) if is_static else gS.new_empty(gS.shape)


@torch.library.custom_op("spiketandem::neuron_backward_into", mutates_args=("saved",))
def neuron_backward_into(gS: Tensor, gU_last: Tensor, gS_last: Tensor, saved: Tensor, a: float, theta: float,
                         zero: bool, detach: bool, kind: int, p: float) -> None:
    """dL/dI [T, N] written over the saved membrane U [T, N] (no new [T, N] buffer; the graph's saved
    state is spent, so a second backward through it is refused by ``FusedNeuron``)."""
    raise NotImplementedError(f"no fused neuron kernel for device {gS.device.type}")


@neuron_backward_into.register_kernel("cpu")
def _backward_into_cpu(gS, gU_last, gS_last, saved, a, theta, zero, detach, kind, p):
    module = _cpu_module()
    if module is None:
        torch_loop.backward(gS, gU_last, gS_last, saved, False, a, theta, zero, detach, kind, p, into_saved=True)
    else:
        module.neuron_backward(gS, gU_last, gS_last, saved, False, a, theta, zero, detach, kind, p, True)


@neuron_backward_into.register_kernel("cuda")
def _backward_into_cuda(gS, gU_last, gS_last, saved, a, theta, zero, detach, kind, p):
    from . import triton_neuron
    triton_neuron.backward(gS.contiguous(), gU_last, gS_last, saved, False, a, theta, zero, detach, kind, p,
                           into_saved=True)


@neuron_backward_into.register_fake
def _backward_into_fake(gS, gU_last, gS_last, saved, a, theta, zero, detach, kind, p):
    return None
