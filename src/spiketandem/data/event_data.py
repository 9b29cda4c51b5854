"""Event datasets in the run pipeline: binned frames as uint8 tensors that batch like images.

:class:`EventDataset` holds ``[N, T, 2, H, W]`` event counts as uint8 (counts above 255 in one bin
are clipped, with a warning) and quacks like :class:`~.arrays.ArrayDataset` for the training loop:
:class:`~.batches.DeviceBatches` moves the counts to the device once and turns each batch into
float32 ``[b, T, 2, H, W]`` exactly (``mean = 0``, ``std = 1/255``, so ``x * 1/(255 std) = x``).
No augmentation (events have no standard crop; ``augment`` stays False).

The teacher (an ANN) sees the time-integrated frame ``mean_t frames[t]``: :meth:`integrated`
stores ``sum_t frames[t]`` (clipped at 255) with ``std = T/255``, so its normalised batches are
exactly the time average, the same input ``TeacherTaps`` gives an LTL student's teacher.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayDataset, Splits
from .events import load_event_dataset



def _to_uint8(x: np.ndarray, what: str) -> torch.Tensor:
    if x.size == 0 or int(x.max()) <= 255:  # the usual case: no temporary copies of a multi-GB array
        return torch.from_numpy(x.astype(np.uint8))
    clipped = int((x > 255).sum())
    if clipped:
        warnings.warn(f"{what}: {clipped} bin entries hold more than 255 events and are clipped to 255 "
                      f"({clipped / x.size:.2e} of all entries); use more bins (--T) to avoid it", stacklevel=3)
    return torch.from_numpy(np.minimum(x, 255).astype(np.uint8))


@dataclass
class EventDataset(Splits):
    """Binned recordings as uint8 tensors ``[N, T, 2, H, W]`` (event counts per bin) plus labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    T: int
    mode: str
    augment: bool = False

    @property
    def mean(self) -> tuple[float, ...]:
        return (0.0,) * self.in_channels

    @property
    def std(self) -> tuple[float, ...]:
        return (1 / 255,) * self.in_channels   # DeviceBatches' scale 1/(255 std) is then exactly 1

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[2])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[3])

    def integrated(self) -> ArrayDataset:
        """The time-integrated frames for an ANN teacher: uint8 ``sum_t x[t]`` (clipped at 255) with
        ``mean = 0``, ``std = T/255``, i.e. batches of ``mean_t x[t]``."""
        def total(x):
            s = x.sum(1, dtype=torch.int32)
            if int((s > 255).sum()):
                warnings.warn(f"{self.name}: some pixels hold more than 255 events over the recording; the "
                              "teacher's integrated frame clips them at 255", stacklevel=3)
            return s.clamp_(max=255).to(torch.uint8)
        std = (self.T / 255,) * self.in_channels
        return ArrayDataset(self.name, total(self.train_x), self.train_y, total(self.test_x), self.test_y,
                            list(self.classes), (0.0,) * self.in_channels, std, self.augment)

    def __repr__(self) -> str:
        return (f"EventDataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, T={self.T}, "
                f"bins={self.mode}, frame={'x'.join(str(s) for s in self.train_x.shape[2:])})")


def load_event_data(name: str, data_dir: str | Path | None, T: int, mode: str = "time",
                    cache_dir: str | Path | None = None, size: int | None = None, log=None) -> EventDataset:
    """:func:`~.events.load_event_dataset` (binning, pooling to ``size`` and the cache) as an :class:`EventDataset`."""
    frames = load_event_dataset(name, data_dir, T=T, mode=mode, cache_dir=cache_dir, size=size, log=log)
    return EventDataset(name, _to_uint8(frames.train_x, name), torch.from_numpy(frames.train_y.astype(np.int64)),
                        _to_uint8(frames.test_x, name), torch.from_numpy(frames.test_y.astype(np.int64)),
                        list(frames.classes), T, mode)
