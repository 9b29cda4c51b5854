"""Datasets as uint8 tensors, and batches assembled on the training device.

``load_dataset(name, data_dir, download, cache_dir)`` finds a dataset in its official layout (or an
image folder, or an archive of either), decodes it once into an array cache and returns an
:class:`ArrayDataset`; :class:`DeviceBatches` turns its tensors into normalised, augmented batches
without leaving the device. Where datasets are looked for: :mod:`spiketandem.data.locate`.  Every dataset
by name: :mod:`spiketandem.data.registry` (torch-free, so the command line's help reads it).

The public names are imported on first use (PEP 562), so that reading the registry does not import torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

_EXPORTS = {"ArrayDataset": "arrays", "DeviceBatches": "batches", "DatasetError": "errors",
            "DatasetFormatError": "errors", "DatasetNotFoundError": "errors", "load_dataset": "loading",
            "IMAGE_DATASETS": "registry"}
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from .arrays import ArrayDataset
    from .batches import DeviceBatches
    from .errors import DatasetError, DatasetFormatError, DatasetNotFoundError
    from .loading import load_dataset
    from .registry import IMAGE_DATASETS

__getattr__ = lazy_exports(__name__, _EXPORTS)
