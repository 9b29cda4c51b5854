"""The teacher zoo: a registry of architectures by name."""
from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import SpiketandemError
from .resnet import ResNet20
from .small import DigitsCNN, DigitsMLP
from .vgg import STRIDED_ACT_CLIP, STRIDED_PLANS, VGG, VGG_PLANS

MODELS = {
    "vgg11": partial(VGG, VGG_PLANS["vgg11"]),
    "vgg13": partial(VGG, VGG_PLANS["vgg13"]),
    "vgg16": partial(VGG, VGG_PLANS["vgg16"]),
    "vgg11-strided": partial(VGG, STRIDED_PLANS["vgg11-strided"]),
    "vgg16-strided": partial(VGG, STRIDED_PLANS["vgg16-strided"]),
    "resnet20": ResNet20,
    "digits-cnn": DigitsCNN,
    "digits-mlp": DigitsMLP,
}

def build_model(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0,
                act_clip: float | None = None) -> nn.Module:
    """Build a zoo architecture by name (any number of classes, input channels and image size).

    ``act_clip = c`` replaces every ReLU by the clipped ReLU min(max(x, 0), c) (``nn.Hardtanh(0, c)``), the
    LTL authors' teacher activation (``relu6(3x)/3`` is c = 2): a bounded activation is what a rate code
    with T steps can express, so the student loses less to conversion and the LTL targets need no clamping.
    The strided VGGs (``vgg11-strided``, ``vgg16-strided``: the authors' SNN, no pooling) use c = 2 unless
    another ``act_clip`` is given."""
    if name not in MODELS:
        raise SpiketandemError(f"unknown architecture (--arch) {name!r}; choose one of {', '.join(MODELS)}")
    if not width > 0:
        raise SpiketandemError(f"width must be > 0, got {width}")
    if act_clip is None and name in STRIDED_PLANS:
        act_clip = STRIDED_ACT_CLIP  # the authors' clipped teacher is part of these architectures
    if act_clip is not None and not act_clip > 0:
        raise SpiketandemError(f"act_clip must be > 0 (or unset for a plain ReLU), got {act_clip}")
    try:
        model = MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    except ValueError as e:
        raise SpiketandemError(f"cannot build {name}: {e}") from None
    if act_clip is not None:
        _clip_relus(model, act_clip)
    return model


def _clip_relus(module: nn.Module, ceiling: float) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, nn.Hardtanh(0.0, ceiling))
        else:
            _clip_relus(child, ceiling)


__all__ = ["MODELS", "build_model", "VGG", "ResNet20", "DigitsCNN", "DigitsMLP"]
