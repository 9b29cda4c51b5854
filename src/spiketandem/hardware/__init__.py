"""Hardware non-idealities (device mismatch, quantization, thermal noise, neuron silencing), on-chip
calibration by online LTL, and the hardware-in-the-loop baseline.  See docs/hardware.md."""
from .calibrate import METHODS, calibrate, calibration_rule, uncalibrated_accuracy
from .chip import Chip
from .noise import KINDS, PAPER_LEVELS, NoiseSpec

__all__ = ["Chip", "NoiseSpec", "KINDS", "PAPER_LEVELS", "METHODS", "calibrate", "calibration_rule",
           "uncalibrated_accuracy"]
