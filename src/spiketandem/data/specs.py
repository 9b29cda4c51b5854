"""How an image dataset is found and read: its ``DatasetSpec``, declared by its reader module under
``formats/`` (``SPECS``) and named in ``registry.DATASETS``."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .arrays import RawSplits
from .layouts import Layout


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one named dataset.

    In every data folder searched, the folder itself, then ``folder_names`` under it, then
    ``archive_names`` under it are tried, in that order; an archive named in ``archive_md5`` must have that
    md5 (an official release).  ``download``: the torchvision dataset class that fetches it (download=True,
    --download); ``shipped``: a dataset inside the package, loaded by this function instead of searched for;
    ``needs_data_dir``: no default folder is searched (the user's own data)."""

    name: str
    layouts: tuple[Layout, ...]
    folder_names: tuple[str, ...]
    archive_names: tuple[str, ...]
    augment: bool
    how_to_get: str
    download: str | None = None
    archive_md5: tuple[tuple[str, str], ...] = ()
    shipped: Callable[[], RawSplits] | None = None
    needs_data_dir: bool = False
