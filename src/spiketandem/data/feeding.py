"""How any training data becomes the loop's batches: one place for the built-in uint8 datasets
(:class:`~.arrays.ArrayDataset`, :class:`~.event_data.EventDataset`: :class:`~.batches.DeviceBatches`
on the device) and for the user's own data (:class:`~.user_data.UserData`: tensors, any
``torch.utils.data.Dataset`` or ``DataLoader``).

Every function takes the data and the run config (``batch_size``, ``seed``, ``channels_last``) and
returns an iterable of ``(x float32 [b, C, H, W] or [b, T, C, H, W], y int64 [b])`` on the device
that has ``set_epoch(epoch)`` (epoch ``e``'s order and augmentation are seeded by ``seed + e``).
"""
from __future__ import annotations

import dataclasses

import torch

from .. import distributed
from ..errors import SpiketandemError
from .batches import DeviceBatches
from .user_data import UserData


def _layout(cfg) -> torch.memory_format:
    return torch.channels_last if getattr(cfg, "channels_last", False) else torch.contiguous_format


def training_batches(data, cfg, device):
    """One epoch of training batches (under torchrun: this rank's slices of global batches of
    ``cfg.batch_size``), shuffled and (where the dataset allows it) augmented."""
    if isinstance(data, UserData):
        return data.batches("train", cfg.batch_size, device, seed=cfg.seed, shuffle=True)
    return DeviceBatches(data.train_x, data.train_y, mean=data.mean, std=data.std, shuffle=True, augment=data.augment,
                         device=device, seed=cfg.seed, memory_format=_layout(cfg),
                         **distributed.shard_args(cfg.batch_size))


def evaluation_batches(data, cfg, device, *, split: str = "test", shard: bool = False):
    """Batches of a split in order, unaugmented (``None`` when the data has no such split).  ``shard``:
    under torchrun, this rank's every ``world_size``-th sample, for a reduced evaluation."""
    if isinstance(data, UserData):
        return data.batches(split, max(cfg.batch_size, 256), device, seed=cfg.seed, shuffle=False)
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    if shard and distributed.active():
        x, y = x[distributed.rank()::distributed.world_size()], y[distributed.rank()::distributed.world_size()]
    return DeviceBatches(x, y, max(cfg.batch_size, 256), mean=data.mean, std=data.std, shuffle=False, augment=False,
                         device=device, seed=cfg.seed, memory_format=_layout(cfg))


def evaluation_tensors(data, cfg, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test images (all by default) and their labels, normalised as the model sees them, on the
    CPU."""
    xs, ys, seen = [], [], 0
    for x, y in evaluation_batches(data, cfg, "cpu"):
        xs.append(x.cpu())
        ys.append(y.cpu())
        seen += y.numel()
        if n is not None and seen >= n:
            break
    images, labels = torch.cat(xs), torch.cat(ys)
    return (images[:n], labels[:n]) if n is not None else (images, labels)


def split_size(data, split: str = "test") -> int:
    """How many samples the split holds (0 when the data has none)."""
    if isinstance(data, UserData):
        return data.split_size(split)
    return len(data.train_y if split == "train" else data.test_y)


def calibration_images(data, device, n: int = 512) -> torch.Tensor:
    """The first ``n`` training images, normalised as the model sees them (threshold balancing, y_norm).
    ``data`` may also be a tensor of such images."""
    if torch.is_tensor(data):
        return data[:n].to(device)
    if isinstance(data, UserData):
        return data.first_images(n).to(device)
    x, _ = next(iter(DeviceBatches(data.train_x[:n], data.train_y[:n], n, mean=data.mean, std=data.std,
                                   shuffle=False, augment=False, device=device)))
    return x


def hold_out(data, fraction: float, seed: int, what: str):
    """``(fit, validation)``: the training split divided at random (seeded) into a part to train on and
    a held-out part, returned as the *test* split of the second dataset.  The test set is never used."""
    n = len(data) if isinstance(data, UserData) else len(data.train_y)
    n_val = int(round(fraction * n))
    if not 0 < n_val < n:
        raise SpiketandemError(f"{what} {fraction} leaves no validation or no training samples out of {n}; "
                               "choose a fraction in (0, 1)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, fit = order[:n_val].sort().values, order[n_val:].sort().values
    if isinstance(data, UserData):
        return data.split(fit, val)
    return (dataclasses.replace(data, train_x=data.train_x[fit], train_y=data.train_y[fit]),
            dataclasses.replace(data, test_x=data.train_x[val], test_y=data.train_y[val]))
