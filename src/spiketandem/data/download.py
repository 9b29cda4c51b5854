"""Fetching datasets with torchvision (``download=True``, CLI ``--download``)."""
from __future__ import annotations

from pathlib import Path

from .errors import DatasetNotFoundError


def torchvision_download(name: str, root: Path) -> None:
    """Download ``name`` into ``root`` in its official layout (``cifar-10-batches-py/``,
    ``cifar-100-python/`` or ``FashionMNIST/raw/``), where the loader then finds it."""
    from torchvision import datasets

    makers = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100, "fashion-mnist": datasets.FashionMNIST}
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            makers[name](str(root), train=train, download=True)
    except Exception as exc:  # network errors, HTTP errors, checksum failures: all mean "no dataset"
        raise DatasetNotFoundError(f"downloading dataset '{name}' into {root} failed: {exc}. Check the network "
                                   "connection, or copy the dataset there by hand.") from exc
