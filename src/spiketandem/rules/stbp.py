"""STBP (Wu et al. 2018; 2019): spatio-temporal back-propagation through every layer and step.

Loss: cross-entropy on the output averaged over time, ``CE(mean_t O[t], y)``; gradients by BPTT through
all layers with the neuron's surrogate (rectangular / boxcar by default: ``1[|u - V_th| < a/2] / a``).
Options (declared in ``catalog.py``): ``--neunorm`` (NeuNorm, the 2019 paper), ``--tdbn`` (STBP-tdBN, Zheng et
al. 2021), ``--voting M`` (voting output layer with the papers' MSE loss on output rates).
The papers' own neuron (``u = tau * u * (1 - o) + W x``, hard reset) is ``--reset zero --leak TAU``.

``convert-stbp``: hybrid training (Rathi et al., ICLR 2020): the same loss and BPTT, starting from the
converted teacher instead of random weights.
"""
from __future__ import annotations

from .base import make_student
from .catalog import CATALOG
from .direct import DirectRule


class STBP(DirectRule):
    name = "stbp"
    paper_tdbn = False


class ConvertSTBP(DirectRule):
    """Hybrid training (Rathi et al., ICLR 2020): ANN-to-SNN conversion, then end-to-end fine-tuning.

    The student starts as ``convert``'s: the teacher's weights with BN folded, every layer's threshold and
    spike amplitude at the ``--percentile`` of its ANN activation, membranes at ``--membrane-init`` x
    threshold; then it is trained like STBP: loss ``CE(mean_t O[t], y)``, BPTT through every layer and step
    with the neuron's surrogate (Rathi et al.'s own surrogate is spike-time based, STDB).  Few epochs
    suffice because the start already works at long windows; at short ones the fine-tuning repairs
    what conversion loses.  Any neuron (a leak is trained around).
    """

    name = "convert-stbp"
    needs_teacher = True
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def build_student(self, teacher, calibration, device):
        """The conversion's student (none of the papers' tdBN / NeuNorm / voting options apply)."""
        self.require_teacher(teacher, "fine-tunes the converted teacher",
                             otherwise="; for random weights use --rule stbp")
        return make_student(self.cfg, self.info, teacher, calibration, membrane_init=self.membrane_init())

    def setup(self, data, device):
        return data  # the conversion's thresholds already make every layer fire

