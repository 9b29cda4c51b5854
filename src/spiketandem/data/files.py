"""Which directory entries belong to a dataset: hidden files and the litter of other systems do not.

Skipped everywhere a dataset tree is listed (image folders, unpacked archives, Tiny ImageNet, event
recordings, the cache fingerprint): names starting with ``.`` (hidden files, macOS's AppleDouble
``._<name>`` companions and ``.DS_Store``), ``__MACOSX/`` (what macOS's Archive Utility adds to a
zip), and Windows' ``Thumbs.db`` / ``desktop.ini``.  An AppleDouble file keeps its original's
suffix (``._0001.png``) but holds no image, so without this rule it aborts decoding.
"""
from __future__ import annotations

from pathlib import Path

JUNK_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


def is_junk(name: str) -> bool:
    """True for hidden entries (``.*``, which includes ``._*`` and ``.DS_Store``) and :data:`JUNK_NAMES`."""
    return name.startswith(".") or name in JUNK_NAMES


def subfolders(folder: Path) -> list[Path]:
    """The non-junk folders directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if not is_junk(p.name) and p.is_dir())


def data_files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """The non-junk files directly inside ``folder`` (with one of ``suffixes``, compared case-blind),
    sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if not is_junk(p.name) and (suffixes is None or p.suffix.lower() in suffixes) and p.is_file())
