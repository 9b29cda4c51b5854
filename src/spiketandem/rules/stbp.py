"""STBP (Wu et al. 2018; 2019): spatio-temporal back-propagation through every layer and step.

Loss: cross-entropy on the output averaged over time, ``CE(mean_t O[t], y)``; gradients by BPTT through
all layers with the neuron's surrogate (rectangular / boxcar by default: ``1[|u - V_th| < a/2] / a``).
Options (declared in ``catalog.py``): ``--neunorm`` (NeuNorm, the 2019 paper), ``--tdbn`` (STBP-tdBN, Zheng et
al. 2021), ``--voting M`` (voting output layer with the papers' MSE loss on output rates).
The papers' own neuron (``u = tau * u * (1 - o) + W x``, hard reset) is ``--reset zero --leak TAU``.
"""
from __future__ import annotations

from .direct import DirectRule


class STBP(DirectRule):
    name = "stbp"
    paper_tdbn = False
