"""The teacher zoo: a registry of architectures by name."""
from __future__ import annotations

from functools import partial

from torch import nn

from ..errors import SpiketandemError
from .resnet import ResNet20
from .small import DigitsCNN, DigitsMLP
from .vgg import VGG, VGG_PLANS

MODELS = {
    "vgg11": partial(VGG, VGG_PLANS["vgg11"]),
    "vgg13": partial(VGG, VGG_PLANS["vgg13"]),
    "vgg16": partial(VGG, VGG_PLANS["vgg16"]),
    "resnet20": ResNet20,
    "digits-cnn": DigitsCNN,
    "digits-mlp": DigitsMLP,
}

# the architecture a dataset uses when none is named
DEFAULT_ARCH = {"digits": "digits-cnn", "fashion-mnist": "digits-cnn"}


def build_model(name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, width: float = 1.0) -> nn.Module:
    """Build a zoo architecture by name (any number of classes, input channels and image size)."""
    if name not in MODELS:
        raise SpiketandemError(f"unknown architecture {name!r}; choose one of {', '.join(MODELS)}")
    if not width > 0:
        raise SpiketandemError(f"width must be > 0, got {width}")
    try:
        return MODELS[name](num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    except ValueError as e:
        raise SpiketandemError(f"cannot build {name}: {e}") from None


__all__ = ["MODELS", "DEFAULT_ARCH", "build_model", "VGG", "ResNet20", "DigitsCNN", "DigitsMLP"]
