"""Fetching datasets with torchvision (``download=True``, CLI ``--download``)."""
from __future__ import annotations

from pathlib import Path

from .errors import DatasetNotFoundError
from .registry import DATASETS


def torchvision_download(name: str, root: Path) -> None:
    """Download dataset ``name`` into ``root`` with the torchvision class its spec names (``download``), in its
    official layout (e.g. ``cifar-10-batches-py/``), where the loader then finds it."""
    from torchvision import datasets

    maker = getattr(datasets, DATASETS[name].spec().download)
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            maker(str(root), train=train, download=True)
    except Exception as exc:  # network errors, HTTP errors, checksum failures: all mean "no dataset"
        raise DatasetNotFoundError(f"downloading dataset '{name}' into {root} failed: {exc}. Check the network "
                                   "connection, or copy the dataset there by hand.") from exc
