"""Hardware non-idealities (device mismatch, quantization, thermal noise, neuron silencing), on-chip
calibration by online LTL, and the hardware-in-the-loop baseline.  See docs/hardware.md.

The public names are imported on first use (PEP 562), so that the `noise` command's --help does not
import torch."""
from __future__ import annotations

import importlib

_EXPORTS = {"Chip": "chip", "NoiseSpec": "noise", "KINDS": "noise", "PAPER_LEVELS": "noise", "METHODS": "calibrate",
            "calibrate": "calibrate", "calibration_rule": "calibrate", "uncalibrated_accuracy": "calibrate"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'spiketandem.hardware' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
