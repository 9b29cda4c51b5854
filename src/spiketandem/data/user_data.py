"""The user's own data in the training loop: in-memory tensors, any ``torch.utils.data.Dataset``
(torchvision datasets with their transforms, tonic datasets with a ``ToFrame`` transform) or a ready
``DataLoader``.

Samples are images ``[C, H, W]`` or event frames ``[T, C, H, W]`` (numpy arrays or tensors), already
normalised the way the model expects, with integer labels.  Batches are made on the host and moved to
the device; epoch ``e``'s order (and, for tensors with ``augment=True``, the random crop with padding 4
and horizontal flip of :func:`~.batches.crop_and_flip`) is drawn from a generator seeded by ``seed + e``.
A ``DataLoader`` is used as given (its own batch size, order and workers).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from ..errors import SpiketandemError
from .batches import crop_and_flip


def _as_dataset(source, labels, role: str):
    """A Dataset or DataLoader from what the caller passed (tensors, a (images, labels) pair, ...)."""
    if source is None:
        return None
    if torch.is_tensor(source):
        if labels is None:
            raise SpiketandemError(f"{role} images were given as a tensor without labels; pass the labels too "
                                   "(an int64 tensor [N]) or a Dataset of (image, label) pairs")
        _check_tensors(source, labels, role)
        return TensorDataset(source, labels)
    if isinstance(source, (tuple, list)) and len(source) == 2 and torch.is_tensor(source[0]):
        return _as_dataset(source[0], source[1], role)
    if isinstance(source, (Dataset, DataLoader)):
        return source
    raise SpiketandemError(f"{role} data must be a tensor of images (with labels), an (images, labels) pair, a "
                           f"torch.utils.data.Dataset or a DataLoader; got {type(source).__name__}")


def _check_tensors(images: torch.Tensor, labels: torch.Tensor, role: str) -> None:
    if images.dim() not in (4, 5) or not images.is_floating_point():
        raise SpiketandemError(f"{role} images must be a float tensor [N, C, H, W] (or event frames [N, T, C, H, W]), "
                               f"got {images.dtype} {tuple(images.shape)}")
    if images.shape[-1] != images.shape[-2]:
        raise SpiketandemError(f"{role} images must be square (H == W), got {tuple(images.shape[-2:])}; crop or pad them")
    if not torch.is_tensor(labels) or labels.shape != images.shape[:1] or labels.dtype != torch.long:
        raise SpiketandemError(f"{role} labels must be an int64 tensor [N] matching the images, got "
                               f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")


def _to_tensor(value) -> torch.Tensor:
    return value if torch.is_tensor(value) else torch.as_tensor(value)


class _Epochs:
    """One epoch of a dataset's batches at a time, on ``device``; ``set_epoch`` picks the epoch."""

    def __init__(self, source, batch_size: int, device, seed: int, shuffle: bool, augment: bool):
        self.source, self.batch_size, self.device = source, batch_size, torch.device(device)
        self.seed, self.shuffle, self.augment, self.epoch = seed, shuffle, augment, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        sampler = getattr(self.source, "sampler", None)
        if isinstance(self.source, DataLoader) and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if isinstance(self.source, DataLoader):
            return len(self.source)
        return -(-len(self.source) // self.batch_size)

    def _raw(self) -> Iterator:
        if isinstance(self.source, DataLoader):
            yield from self.source
            return
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.source)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        for idx in order.split(self.batch_size):
            if isinstance(self.source, TensorDataset):  # in-memory: one gather, no per-sample Python
                yield tuple(t[idx] for t in self.source.tensors)
            else:
                samples = [self.source[int(i)] for i in idx]
                yield (torch.stack([_to_tensor(s[0]) for s in samples]),
                       torch.as_tensor([int(s[1]) for s in samples]))

    def __iter__(self):
        generator = torch.Generator().manual_seed(10007 * (self.seed + self.epoch) + 1)
        for x, y in self._raw():
            x, y = _to_tensor(x).float(), _to_tensor(y).long()
            if self.augment and x.dim() == 4:
                b = x.shape[0]
                offsets = torch.randint(0, 9, (b, 2), generator=generator)
                flips = torch.rand(b, generator=generator) < 0.5
                x = crop_and_flip(x, offsets, flips, 4)
            yield x.to(self.device), y.to(self.device)


class UserData:
    """Training (and optional test) data given by the caller, in the loop's data role.

    ``train``/``test``: a float tensor of images (with ``train_labels``/``test_labels``), an
    ``(images, labels)`` pair, a ``Dataset`` or a ``DataLoader``.  ``augment``: random crop (padding 4)
    and flip of in-memory images (Datasets bring their own transforms).  ``num_classes``: inferred from
    the labels, a ``classes`` attribute, or given."""

    name = "user data"

    def __init__(self, train, train_labels=None, test=None, test_labels=None, *, num_classes: int | None = None,
                 augment: bool = False):
        self.train = _as_dataset(train, train_labels, "training")
        if self.train is None:
            raise SpiketandemError("no training data given")
        self.test = _as_dataset(test, test_labels, "test")
        self.augment = augment
        first = self.first_images(1)
        if first.dim() not in (4, 5) or first.shape[-1] != first.shape[-2]:
            raise SpiketandemError(f"samples must be square images [C, H, W] or event frames [T, C, H, W]; got "
                                   f"{tuple(first.shape[1:])}")
        self.sample_shape = tuple(first.shape[1:])
        self.num_classes = num_classes or self._count_classes()

    # ---- what the loop asks --------------------------------------------------------------------

    @property
    def in_channels(self) -> int:
        return int(self.sample_shape[-3])

    @property
    def image_size(self) -> int:
        return int(self.sample_shape[-1])

    @property
    def frames(self) -> bool:
        """Event frames ``[T, C, H, W]`` per sample (fed one frame per time step)."""
        return len(self.sample_shape) == 4

    def __len__(self) -> int:
        return len(self._dataset(self.train))

    def batches(self, split: str, batch_size: int, device, *, seed: int, shuffle: bool):
        source = self.train if split == "train" else self.test
        if source is None:
            return None
        return _Epochs(source, batch_size, device, seed, shuffle, self.augment and split == "train" and shuffle)

    def split_size(self, split: str) -> int:
        source = self.train if split == "train" else self.test
        return 0 if source is None else len(self._dataset(source))

    def first_images(self, n: int) -> torch.Tensor:
        """The first ``n`` training samples, stacked (float32)."""
        source = self._dataset(self.train)
        if isinstance(source, TensorDataset):
            return source.tensors[0][:n].float()
        count = min(n, len(source))
        if count == 0:
            raise SpiketandemError("the training data is empty")
        return torch.stack([_to_tensor(source[i][0]).float() for i in range(count)])

    def split(self, fit_idx: torch.Tensor, val_idx: torch.Tensor) -> tuple[UserData, UserData]:
        """Two views of the training set: ``fit_idx`` to train on, ``val_idx`` as the second one's test split."""
        source = self._dataset(self.train)
        fit, val = Subset(source, fit_idx.tolist()), Subset(source, val_idx.tolist())
        if isinstance(source, TensorDataset):  # stay on the fast in-memory path
            fit, val = (TensorDataset(*(t[idx] for t in source.tensors)) for idx in (fit_idx, val_idx))
        return (UserData(fit, num_classes=self.num_classes, augment=self.augment),
                UserData(fit, test=val, num_classes=self.num_classes))

    # ---- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _dataset(source):
        return source.dataset if isinstance(source, DataLoader) else source

    def _count_classes(self) -> int:
        source = self._dataset(self.train)
        classes = getattr(source, "classes", None)
        if classes:
            return len(classes)
        if isinstance(source, TensorDataset):
            return int(source.tensors[1].max()) + 1
        targets = getattr(source, "targets", None)
        if targets is not None:
            return int(torch.as_tensor(targets).max()) + 1
        return int(max(int(source[i][1]) for i in range(len(source)))) + 1

    def __repr__(self) -> str:
        return (f"UserData(train={len(self)}, test={len(self._dataset(self.test)) if self.test is not None else 0}, "
                f"classes={self.num_classes}, sample={self.sample_shape})")
