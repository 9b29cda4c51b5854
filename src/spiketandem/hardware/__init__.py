"""Hardware non-idealities (device mismatch, quantization, thermal noise, neuron silencing), on-chip
calibration by online LTL, and the hardware-in-the-loop baseline.  See docs/hardware.md.

The public names are imported on first use (PEP 562), so that the `noise` command's --help does not
import torch."""
from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {"Chip": "chip", "NoiseSpec": "noise", "KINDS": "noise", "PAPER_LEVELS": "noise", "METHODS": "calibrate",
            "calibrate": "calibrate", "calibration_rule": "calibrate", "uncalibrated_accuracy": "calibrate"}
__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
