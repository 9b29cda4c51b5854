"""``DeviceBatches``: one epoch of normalised (optionally augmented) batches, assembled on the device.

The uint8 images are moved to the device once and stay uint8 there; each batch is gathered by
index, randomly cropped and flipped with tensor ops (no per-image Python), then converted to
float32 and normalised.

Order, sharding and randomness (per epoch ``e``, set with :meth:`DeviceBatches.set_epoch`):

* A CPU generator seeded with ``seed + e`` draws the global order (``randperm(N)``, or ``arange(N)``
  without shuffling) and then one crop offset pair and flip bit per position of that order. Every
  rank draws the same, so results do not depend on the device or on the number of ranks.
* ``drop_last=False``: the order is padded to a multiple of ``world_size`` by repeating its first
  samples (as ``DistributedSampler`` does). ``drop_last=True``: the order is cut to whole global
  batches of ``batch_size * world_size`` samples.
* The (padded or cut) order is split into global batches of ``batch_size * world_size``; rank ``r``
  takes the ``r``-th of ``world_size`` equal contiguous slices of each. So concatenating the ranks'
  k-th batches gives exactly the k-th batch (images, labels and augmentation) of a single process
  with ``batch_size * world_size``, whenever ``N`` is divisible by ``world_size`` or ``drop_last``
  is set; otherwise the last global batch holds up to ``world_size - 1`` repeated samples. All
  ranks get the same number of batches and equal batch sizes.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F


class DeviceBatches:
    """An iterable over one epoch of ``(x float32 [b, C, H, W], y int64 [b])`` batches on ``device``
    (``[b, T, C, H, W]`` for uint8 event frames ``[N, T, C, H, W]``).

    ``x_uint8 [N, C, H, W]`` and ``y [N]`` are moved to ``device`` once, here. ``mean``/``std`` are
    per-channel statistics of ``x / 255``. With ``augment``, each sample gets its own random crop of
    the image zero-padded by ``pad`` pixels (the padding becomes black, i.e. ``-mean/std`` after
    normalisation) and, if ``flip``, a horizontal flip with probability 1/2."""

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, batch_size: int, *, mean: Sequence[float],
                 std: Sequence[float], shuffle: bool, augment: bool, pad: int = 4, flip: bool = True,
                 device: str | torch.device = "cpu", seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = False, memory_format: torch.memory_format = torch.contiguous_format) -> None:
        _check_arguments(x_uint8, y, batch_size, mean, std, pad, rank, world_size)
        self.device = torch.device(device)
        self.x = x_uint8.to(self.device)
        self.y = y.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.shuffle, self.augment, self.pad, self.flip = shuffle, augment, pad, flip
        self.seed, self.rank, self.world_size, self.drop_last = seed, rank, world_size, drop_last
        self.epoch = 0
        self.memory_format = memory_format  # torch.channels_last: NHWC batches (``--channels-last``)
        channels = self.x.shape[-3]
        shape = (1,) * (self.x.dim() - 3) + (channels, 1, 1)  # [N, T, C, H, W] event frames: per-channel too
        std_t = torch.tensor(std, dtype=torch.float32, device=self.device).view(shape)
        mean_t = torch.tensor(mean, dtype=torch.float32, device=self.device).view(shape)
        self._scale = 1.0 / (255.0 * std_t)   # x_norm = x_uint8 * scale + shift
        self._shift = -mean_t / std_t

    # ---- sizes ---------------------------------------------------------------------------------

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _total(self) -> int:
        """Length of the global order after padding (or cutting)."""
        n = len(self.y)
        if self.drop_last:
            return n - n % self.global_batch_size
        return -(-n // self.world_size) * self.world_size

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (including repeated padding samples)."""
        return self._total() // self.world_size

    def __len__(self) -> int:
        return -(-self._total() // self.global_batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s order and augmentation (seeded by ``seed + epoch``). Call it before
        each epoch, as with ``DistributedSampler``: without it every pass repeats epoch 0."""
        self.epoch = epoch

    # ---- iteration -----------------------------------------------------------------------------

    def _epoch_plan(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This rank's sample indices, crop offsets ``[n, 2]`` (row, col) and flip flags, on the device,
        in iteration order (its slices of the global batches, concatenated)."""
        n, total = len(self.y), self._total()
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        if total > n:  # pad by repeating from the start (wrapping round if n < world_size)
            copies = -(-total // n)
            order, offsets, flips = order.repeat(copies), offsets.repeat(copies, 1), flips.repeat(copies)
        positions = self._rank_positions(total)
        return (order[positions].to(self.device), offsets[positions].to(self.device),
                flips[positions].to(self.device))

    def _rank_positions(self, total: int) -> torch.Tensor:
        """Positions in the global order that belong to this rank, in iteration order."""
        position = torch.arange(total)
        start_of_batch = position - position % self.global_batch_size
        local_batch = torch.clamp(total - start_of_batch, max=self.global_batch_size) // self.world_size
        owner = (position - start_of_batch) // local_batch
        return position[owner == self.rank]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if len(self) == 0:
            return
        index, offsets, flips = self._epoch_plan()
        total, start = self._total(), 0
        for k in range(len(self)):
            global_size = min(self.global_batch_size, total - k * self.global_batch_size)
            size = global_size // self.world_size
            batch = slice(start, start + size)
            start += size
            x = self.x[index[batch]]
            if self.augment:  # event frames [b, T, C, H, W]: the same crop and flip for every step
                x = crop_and_flip(x.flatten(1, -3), offsets[batch], flips[batch] if self.flip else None,
                                  self.pad).view(x.shape)
            x = x.float() * self._scale + self._shift
            if self.memory_format != torch.contiguous_format and x.dim() == 4:
                x = x.contiguous(memory_format=self.memory_format)
            yield x, self.y[index[batch]]

    def __repr__(self) -> str:
        return (f"DeviceBatches(n={len(self.y)}, batch_size={self.batch_size}, batches={len(self)}, "
                f"shuffle={self.shuffle}, augment={self.augment}, rank={self.rank}/{self.world_size}, "
                f"device={self.device})")


def crop_and_flip(x: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor | None, pad: int) -> torch.Tensor:
    """Per-sample crops of ``x [b, C, H, W]`` zero-padded by ``pad``: sample ``i`` is the window whose
    top-left corner in the padded image is ``offsets[i] = (row, col)`` (each in ``0..2*pad``), mirrored
    left-right where ``flips[i]``. One ``gather`` over the flattened padded images, no loop over samples."""
    b, c, h, w = x.shape
    if pad > 0:
        x = F.pad(x, (pad, pad, pad, pad))
    padded_width = w + 2 * pad
    rows = offsets[:, :1] + torch.arange(h, device=x.device)          # [b, H]
    cols = torch.arange(w, device=x.device).expand(b, w)               # [b, W]
    if flips is not None:
        cols = torch.where(flips[:, None], w - 1 - cols, cols)
    cols = cols + offsets[:, 1:]
    flat = (rows[:, :, None] * padded_width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


def _check_arguments(x: torch.Tensor, y: torch.Tensor, batch_size: int, mean: Sequence[float],
                     std: Sequence[float], pad: int, rank: int, world_size: int) -> None:
    if x.dtype != torch.uint8 or x.dim() not in (4, 5):
        raise ValueError(f"DeviceBatches needs uint8 images [N, C, H, W] (or event frames [N, T, C, H, W]), got "
                         f"{x.dtype} {tuple(x.shape)}")
    if y.dim() != 1 or len(y) != len(x):
        raise ValueError(f"DeviceBatches needs one label per image: {len(x)} images, labels {tuple(y.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(mean) != x.shape[-3] or len(std) != x.shape[-3]:
        raise ValueError(f"mean and std need {x.shape[-3]} values (one per channel), got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {tuple(std)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
