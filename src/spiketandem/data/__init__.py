"""Datasets as uint8 tensors, and batches assembled on the training device.

``load_dataset(name, data_dir, download, cache_dir)`` finds a dataset in its official layout (or an
image folder, or an archive of either), decodes it once into an array cache and returns an
:class:`ArrayDataset`; :class:`DeviceBatches` turns its tensors into normalised, augmented batches
without leaving the device. Where datasets are looked for: :mod:`spiketandem.data.locate`.
"""
from .arrays import ArrayDataset
from .batches import DeviceBatches
from .errors import DatasetError, DatasetFormatError, DatasetNotFoundError
from .loading import load_dataset
from .specs import IMAGE_DATASETS

__all__ = ["ArrayDataset", "IMAGE_DATASETS", "DatasetError", "DatasetFormatError", "DatasetNotFoundError",
           "DeviceBatches", "load_dataset"]
