"""In-memory datasets: uint8 image tensors plus labels, class names and normalisation statistics."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SpiketandemError


@dataclass
class RawSplits:
    """What a decoder produces: numpy arrays, before they become an :class:`ArrayDataset`.

    ``*_x`` are uint8 ``[N, C, H, W]``; ``*_y`` are int64 ``[N]`` indices into ``classes``."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]


class Splits:
    """What every in-memory dataset shares (``ArrayDataset``, ``event_data.EventDataset``): a training and a
    test split of samples ``*_x`` and labels ``*_y``, class names, subsets and a held-out validation split."""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _split(self, train: torch.Tensor, test: torch.Tensor, test_from_train: bool = False):
        x, y = (self.train_x, self.train_y) if test_from_train else (self.test_x, self.test_y)
        return dataclasses.replace(self, train_x=self.train_x[train], train_y=self.train_y[train], test_x=x[test],
                                   test_y=y[test], classes=list(self.classes))

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
        """A random (seeded, not stratified) subset for quick runs: at most ``n_train`` training and
        ``n_test`` test samples; ``None`` keeps a split whole. Samples keep their original relative order;
        ``mean``/``std`` stay those of the full training split."""
        generator = torch.Generator().manual_seed(seed)
        train_idx = _pick(len(self.train_y), n_train, generator, "n_train")
        return self._split(train_idx, _pick(len(self.test_y), n_test, generator, "n_test"))

    def held_out(self, n: int):
        """A validation split: ``n`` training samples (always the same ones, :func:`validation_indices`) become
        the test split and leave the training split; the original test split is dropped.  ``mean``/``std``
        stay those of the full training split, so a teacher trained on all of it normalises alike."""
        keep, val = validation_indices(len(self.train_y), n, self.name)
        return self._split(keep, val, test_from_train=True)


@dataclass
class ArrayDataset(Splits):
    """A whole dataset held as uint8 tensors (both splits), ready to move to a device once.

    ``mean``/``std`` are the per-channel mean and (population) standard deviation of
    ``train_x / 255`` over the full training split; :meth:`subset` keeps them unchanged.
    ``augment`` says whether random crop + horizontal flip suit this dataset."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool
    source: str = ""  # where it was read from (a folder or archive; "" for built-in or in-memory data)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{self.name}: {split}_x must be uint8 [N, C, H, W], got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: {split}_y must be int64 [{x.shape[0]}], got {y.dtype} {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name}: {split}_y has labels outside 0..{len(self.classes) - 1}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"{self.name}: train images are {tuple(self.train_x.shape[1:])} "
                             f"but test images are {tuple(self.test_x.shape[1:])}")
        if not len(self.mean) == len(self.std) == self.in_channels:
            raise ValueError(f"{self.name}: mean/std need one value per channel ({self.in_channels})")

    @classmethod
    def from_raw(cls, name: str, raw: RawSplits, *, augment: bool, source: str = "") -> ArrayDataset:
        """Wrap decoded numpy arrays (no copy) and compute the training-split channel statistics."""
        train_x = _tensor(raw.train_x, np.uint8)
        mean, std = channel_stats(train_x)
        return cls(name=name, train_x=train_x, train_y=_tensor(raw.train_y, np.int64),
                   test_x=_tensor(raw.test_x, np.uint8), test_y=_tensor(raw.test_y, np.int64),
                   classes=list(raw.classes), mean=mean, std=std, augment=augment, source=source)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Image height (all built-in datasets are square)."""
        return int(self.train_x.shape[2])

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.train_x.shape[1:])
        return (f"ArrayDataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
                f"classes={self.num_classes}, image={shape}, augment={self.augment})")


def _tensor(array: np.ndarray, dtype: type) -> torch.Tensor:
    """A tensor sharing memory with ``array`` when it is already contiguous, writable and of ``dtype``."""
    return torch.from_numpy(np.require(array, dtype=dtype, requirements=["C_CONTIGUOUS", "WRITEABLE"]))


def _pick(total: int, n: int | None, generator: torch.Generator, what: str) -> torch.Tensor:
    """Sorted indices of ``min(n, total)`` random samples out of ``total`` (all of them when ``n`` is None)."""
    if n is None:
        return torch.arange(total)
    if n < 0:
        raise ValueError(f"{what} must be >= 0, got {n}")
    return torch.randperm(total, generator=generator)[:n].sort().values


VALIDATION_SEED = 0  # one held-out split for every run and seed, so that choices compare on the same images


def validation_indices(total: int, n: int, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (training, validation) indices: ``n`` of ``total`` training samples drawn with a fixed seed."""
    if not 0 < n < total:
        raise SpiketandemError(f"--validation {n}: {name} has {total} training samples; hold out between 1 and "
                               f"{total - 1} of them")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return order[n:].sort().values, order[:n].sort().values


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population std of ``x / 255`` for uint8 ``x [N, C, H, W]``.

    Uses a 256-bin histogram per channel, so no float copy of the images is made."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum().clamp_min(1.0)
        mean = float((counts * values).sum() / total)
        var = float((counts * values.square()).sum() / total) - mean * mean
        means.append(mean)
        stds.append(max(var, 0.0) ** 0.5)
    return tuple(means), tuple(stds)
