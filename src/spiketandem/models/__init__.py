"""The teacher zoo: a registry of architectures by name."""
from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import SpiketandemError
from .quantized import QCFS
from .resnet import ResNet20
from .small import DigitsCNN, DigitsMLP
from .vgg import STRIDED_ACT_CLIP, STRIDED_PLANS, VGG, VGG_PLANS
from .vit import VIT_ACT_CLIP, VIT_PLANS, AttentionProduct, SpikingViT, vit

MODELS = {
    "vgg11": partial(VGG, VGG_PLANS["vgg11"]),
    "vgg13": partial(VGG, VGG_PLANS["vgg13"]),
    "vgg16": partial(VGG, VGG_PLANS["vgg16"]),
    "vgg11-strided": partial(VGG, STRIDED_PLANS["vgg11-strided"]),
    "vgg16-strided": partial(VGG, STRIDED_PLANS["vgg16-strided"]),
    "resnet20": ResNet20,
    "digits-cnn": DigitsCNN,
    "digits-mlp": DigitsMLP,
    **{name: partial(vit, name) for name in VIT_PLANS},
}

def activation_clip(name: str, act_clip: float | None) -> float | None:
    """The bound c of the architecture's clipped ReLU min(max(x, 0), c): ``act_clip``, else 2 for the strided
    VGGs (their authors' teacher) and the vision transformers (``models/vit.py``: always clipped), else None (a
    plain ReLU)."""
    if act_clip is None and name in STRIDED_PLANS:
        return STRIDED_ACT_CLIP  # the authors' clipped teacher is part of these architectures
    if act_clip is None and name in VIT_PLANS:
        return VIT_ACT_CLIP
    return act_clip


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0,
                act_clip: float | None = None, act_levels: int | None = None) -> nn.Module:
    """Build a zoo architecture by name (any number of classes, input channels and image size).

    ``act_clip = c`` replaces every ReLU by the clipped ReLU min(max(x, 0), c) (``nn.Hardtanh(0, c)``), the
    LTL authors' teacher activation (``relu6(3x)/3`` is c = 2): a bounded activation is what a rate code
    with T steps can express, so the student loses less to conversion and the LTL targets need no clamping.
    The strided VGGs (``vgg11-strided``, ``vgg16-strided``: the authors' SNN, no pooling) and the SNN-friendly
    vision transformers (``vit-tiny``, ``vit-small``: ``models/vit.py``) use c = 2 unless another ``act_clip`` is
    given.

    ``act_levels = L`` quantizes every activation to L + 1 levels instead, the QCFS activation
    s * clamp(floor(z L / s + 1/2) / L, 0, 1) of ``models/quantized.py``, its learnable clip s starting
    at ``act_clip``: the teacher of a student with T = L steps."""
    if name not in MODELS:
        raise SpiketandemError(f"unknown architecture (--arch) {name!r}; choose one of {', '.join(MODELS)}")
    if not width > 0:
        raise SpiketandemError(f"width must be > 0, got {width}")
    act_clip = activation_clip(name, act_clip)
    if act_clip is not None and not act_clip > 0:
        raise SpiketandemError(f"act_clip must be > 0 (or unset for a plain ReLU), got {act_clip}")
    if act_levels is not None and (isinstance(act_levels, bool) or not isinstance(act_levels, int) or act_levels < 1):
        raise SpiketandemError(f"act_levels must be a positive integer (or unset for full precision), got {act_levels!r}")
    if act_levels is not None and act_clip is None:
        raise SpiketandemError("act_levels quantizes a clipped activation: give its initial clip too (--act-clip 2, "
                               "the LTL authors' teacher)")
    try:
        model = MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    except ValueError as e:
        raise SpiketandemError(f"cannot build {name}: {e}") from None
    if act_clip is not None:
        _replace_relus(model, lambda: nn.Hardtanh(0.0, act_clip) if act_levels is None else QCFS(act_levels, act_clip))
    return model


def _replace_relus(module: nn.Module, make) -> None:
    """Every ReLU module becomes ``make()`` (a ReLU module used twice, as in ResNet's block, stays one module);
    a model with functional ReLUs replaces them itself (``set_activations``)."""
    if hasattr(module, "set_activations"):
        module.set_activations(make)
        return
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, make())
        else:
            _replace_relus(child, make)


__all__ = ["MODELS", "activation_clip", "build_model", "QCFS", "VGG", "ResNet20", "DigitsCNN", "DigitsMLP",
           "SpikingViT", "AttentionProduct"]
