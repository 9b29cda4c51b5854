"""Errors raised while locating or decoding a dataset."""
from __future__ import annotations

from ..errors import SpiketandemError


class DatasetError(SpiketandemError):
    """Base class for dataset problems."""


class DatasetNotFoundError(DatasetError):
    """The dataset (or part of it) is not where we looked; the message lists where and how to get it."""


class DatasetFormatError(DatasetError):
    """A dataset file exists but is corrupt, truncated, or not in the expected format."""
