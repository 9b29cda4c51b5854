"""Where datasets are looked for, and the record of a search that becomes the "not found" message.

Without an explicit ``data_dir`` the data folders searched are, in order:

1. ``$SPIKETANDEM_DATA`` if set, else ``~/.cache/spiketandem/data`` (also where downloads go);
2. ``../shared/data`` relative to the current directory, then relative to the repository root
   (the folder holding ``pyproject.toml`` above this package) -- where development and CI
   machines keep ``cifar10-jpeg.tar.gz``;
3. ``/usr/share/datasets`` (where Debian's ``dataset-*`` packages, e.g. ``dataset-fashion-mnist``, install).

With ``data_dir`` only that folder (or archive) is searched.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .cache import is_archive
from .specs import DatasetSpec

SYSTEM_DATA_DIR = Path("/usr/share/datasets")


def default_data_dir() -> Path:
    """``$SPIKETANDEM_DATA`` if set, else ``~/.cache/spiketandem/data``."""
    return Path(os.environ.get("SPIKETANDEM_DATA") or Path.home() / ".cache" / "spiketandem" / "data").expanduser()


def _repo_root() -> Path | None:
    return next((p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file()), None)


def search_roots(data_dir: str | Path | None) -> list[Path]:
    """The data folders to search, most specific first, without duplicates."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    roots = [default_data_dir(), Path.cwd() / ".." / "shared" / "data"]
    repo = _repo_root()
    if repo is not None:
        roots.append(repo / ".." / "shared" / "data")
    roots.append(SYSTEM_DATA_DIR)
    unique: dict[Path, Path] = {}
    for root in roots:
        unique.setdefault(root.resolve(), root.resolve())
    return list(unique.values())


def candidates(spec: DatasetSpec, root: Path) -> Iterator[Path]:
    """Paths that may hold ``spec``'s dataset inside the data folder ``root`` (or ``root`` itself)."""
    yield root
    if is_archive(root):
        return
    for name in (*spec.folder_names, *spec.archive_names):
        yield root / name


@dataclass
class _RootLog:
    exists: bool
    notes: list[str] = field(default_factory=list)    # "<where>: <problem>"
    absent: list[str] = field(default_factory=list)   # candidate names not present under the root


class SearchReport:
    """What was looked at and why it did not do; renders the :class:`DatasetNotFoundError` message."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self._roots: dict[Path, _RootLog] = {}

    def root(self, root: Path) -> None:
        self._roots.setdefault(root, _RootLog(exists=root.exists()))

    def absent(self, root: Path, path: Path) -> None:
        self._roots[root].absent.append(path.relative_to(root).as_posix())

    def note(self, root: Path, where: str, problem: str) -> None:
        """Record why ``where`` (a path relative to ``root``, or "." for ``root`` itself) did not do."""
        self._roots[root].notes.append(f"{where}: {problem}")

    def message(self, extra: str = "") -> str:
        looked = []
        for root, log in self._roots.items():
            if not log.exists:
                looked.append(f"  - {root} (does not exist)")
                continue
            looked.append(f"  - {root}" + ("" if log.notes else " (no supported layout)"))
            looked += [f"      {note}" for note in log.notes]
            if log.absent:
                looked.append(f"      not there: {', '.join(log.absent)}")
        layouts = [f"  - {layout.description}" for layout in self.spec.layouts]
        if self.spec.archive_names:
            layouts.append(f"  - or an archive of one ({', '.join(self.spec.archive_names)}; "
                           "any .tar.gz, .tgz, .tar or .zip given as data_dir)")
        where = (f" (in a folder above, or in a sub-folder named {', '.join(self.spec.folder_names)})"
                 if self.spec.folder_names else "")
        parts = [f"dataset '{self.spec.name}' was not found.", "Looked in:", *looked,
                 f"Expected one of these layouts{where}:", *layouts, f"To get it: {self.spec.how_to_get}."]
        if extra:
            parts.append(extra)
        return "\n".join(parts)
