"""Layer-local LTL targets: the teacher's ReLU output divided by its normaliser y_norm, in [0, 1]."""
from __future__ import annotations

import torch

from ..errors import SpiketandemError
from ..student import percentile_of
from .catalog import YNORM_MODES


class LocalTargets:
    """target_l = clamp(y_l / y_norm_l, 0, 1)  (LTL Eq. 4 / 9).

    y_norm_l is a percentile of layer l's teacher activations:
      - "batch":   recomputed on every batch over the whole activation tensor (the authors' code);
      - "running": an exponential moving average of the per-batch percentile (momentum 0.1);
      - "fixed":   the percentile measured once at initialisation on calibration images.
    A layer whose teacher activation is quantized (QCFS, ``clips``: name -> its clip s) has y_norm = s in
    every mode, so its targets are exactly its levels k / L.
    """

    def __init__(self, mode: str, percentile: float, initial: dict[str, float] | None = None, momentum: float = 0.1,
                 clips: dict[str, float] | None = None):
        if mode not in YNORM_MODES:
            raise SpiketandemError(f"ynorm {mode!r} is not one of {YNORM_MODES}")
        self.mode, self.percentile, self.momentum = mode, percentile, momentum
        self.clips = dict(clips or {})
        self.scales: dict[str, float] = dict(initial or {})
        self._seen: set[str] = set()
        # multi-process training sets this to an all-gather, so the percentile is the global batch's
        self.gather = None

    def fix(self, scales: dict[str, float]) -> None:
        """The fixed y_norm of every layer ("fixed" mode; measured once before training)."""
        self.scales = dict(scales)

    def scale(self, name: str, activation: torch.Tensor, update: bool = True) -> float:
        if name in self.clips:
            return self.clips[name]
        if self.mode == "fixed":
            if name not in self.scales:
                raise SpiketandemError(f"ynorm 'fixed' has no scale for layer {name!r}: the rule was not set up "
                                       "(train it through spiketandem.train.fit)")
            return self.scales[name]
        values = activation.detach().flatten()
        current = percentile_of(values if self.gather is None else self.gather(values), self.percentile)
        if self.mode == "batch":
            return current
        if update:
            if name in self._seen:
                self.scales[name] = (1 - self.momentum) * self.scales[name] + self.momentum * current
            else:
                self.scales[name] = current
                self._seen.add(name)
        return self.scales.get(name, current)

    def target(self, name: str, activation: torch.Tensor, update: bool = True) -> torch.Tensor:
        return (activation / self.scale(name, activation, update)).clamp(0, 1)

    def state_dict(self) -> dict:
        return {"scales": dict(self.scales), "seen": sorted(self._seen)}

    def load_state_dict(self, state: dict) -> None:
        self.scales = dict(state["scales"])
        self._seen = set(state["seen"])
