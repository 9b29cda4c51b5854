"""A folder layout a dataset can be read from, and how to recognise it (each reader under ``formats/``
declares its own).

A layout's ``probe(folder)`` returns None when the folder does not look like that layout at all,
an empty list when it is complete, and otherwise the parts that are missing (so an incomplete
copy is reported as such instead of as "not found"). ``decode(folder, step)`` reads it, counting
its files on ``step`` (a :class:`~.progress.Step`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .arrays import RawSplits
from .progress import Step

Probe = Callable[[Path], "list[str] | None"]


@dataclass(frozen=True)
class Layout:
    """One supported on-disk layout: how to recognise it and how to decode it."""

    name: str           # short, for "incomplete <name>" messages
    description: str    # the expected files, for "not found" messages
    probe: Probe
    decode: Callable[[Path, Step], RawSplits]


def required_files(names: tuple[str, ...]) -> Probe:
    def probe(folder: Path) -> list[str] | None:
        missing = [n for n in names if not (folder / n).is_file()]
        return None if len(missing) == len(names) else missing
    return probe
