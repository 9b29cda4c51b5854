"""``load_dataset``: find a dataset, decode it once into the array cache, return an :class:`ArrayDataset`."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .arrays import ArrayDataset, RawSplits
from .cache import array_cache_path, default_cache_dir, extract_archive, is_archive, load_arrays, save_arrays
from .download import torchvision_download
from .errors import DatasetNotFoundError
from .files import subfolders
from .layouts import Layout
from .locate import SearchReport, candidates, default_data_dir, search_roots
from .progress import Feedback, LogFn
from .registry import DATASETS, IMAGE_DATASETS
from .specs import DatasetSpec


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = False,
                 cache_dir: str | Path | None = None, *, log: LogFn | None = None,
                 progress: bool | None = None) -> ArrayDataset:
    """Load dataset ``name`` (one of :data:`IMAGE_DATASETS`) as uint8 tensors.

    ``data_dir`` is a folder holding the dataset (or one of its known sub-folders or archives), the
    dataset folder itself, or an archive of it; when None the default folders are searched (see
    :mod:`spiketandem.data.locate`). The first load decodes the files into ``cache_dir`` (default
    ``$SPIKETANDEM_CACHE`` or ``~/.cache/spiketandem``); later loads read that cache.
    With ``download=True`` a dataset torchvision can fetch (cifar10, cifar100, fashion-mnist) that is
    not found is downloaded into ``data_dir`` (default ``$SPIKETANDEM_DATA`` or ``~/.cache/spiketandem/data``).
    The one-time steps (unpacking, decoding) say what they read, through ``log`` (a callable taking a
    line) or else the ``spiketandem.data`` logger, with a progress bar on stderr when it is a terminal
    (``progress`` True/False forces the bar on/off); see :mod:`spiketandem.data.progress`.

    Raises :class:`DatasetNotFoundError` (unknown name; dataset missing or incomplete, listing every
    place searched and how to get it) or :class:`DatasetFormatError` (a corrupt file, named)."""
    entry = DATASETS.get(name.strip().lower().replace("_", "-"))
    if entry is None or entry.kind != "image":
        raise DatasetNotFoundError(f"unknown dataset {name!r}; the datasets are: {', '.join(IMAGE_DATASETS)}")
    spec = entry.spec()
    if spec.shipped is not None:
        return ArrayDataset.from_raw(spec.name, spec.shipped(), augment=spec.augment,
                                     source="the copy shipped in spiketandem")
    if spec.needs_data_dir and data_dir is None:
        raise DatasetNotFoundError(f"dataset {spec.name!r} needs a folder: {spec.how_to_get}.")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    feedback = Feedback(log, bar=progress)
    report = SearchReport(spec)
    raw, source = _search(spec, search_roots(data_dir), cache, report, feedback)
    if raw is None and download:
        if spec.download is None:
            raise DatasetNotFoundError(report.message(f"download=True cannot fetch '{spec.name}' automatically."))
        target = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        target = target.parent if target.is_file() else target
        feedback.line(f"downloading {spec.name} into {target}")
        torchvision_download(spec.name, target)
        report = SearchReport(spec)
        raw, source = _search(spec, [target], cache, report, feedback)
    if raw is None:
        raise DatasetNotFoundError(report.message())
    return ArrayDataset.from_raw(spec.name, raw, augment=spec.augment, source=str(source))


def _search(spec: DatasetSpec, roots: list[Path], cache_dir: Path, report: SearchReport,
            feedback: Feedback) -> tuple[RawSplits | None, Path | None]:
    """Try every candidate path under every root in order; the first complete dataset wins (and its path)."""
    for root in roots:
        report.root(root)
        if not root.exists():
            continue
        for path in candidates(spec, root):
            if not path.exists():
                if path != root:
                    report.absent(root, path)
                continue
            note = partial(report.note, root, "." if path == root else path.relative_to(root).as_posix())
            if is_archive(path):
                raw = _read_archive(spec, path, cache_dir, note, feedback)
            elif path.is_dir():
                raw = _read_folder(spec, path, cache_dir, note, feedback)
            else:
                note("not a folder or a .tar.gz/.tgz/.tar/.zip archive")
                raw = None
            if raw is not None:
                return raw, path
    return None, None


def _match(spec: DatasetSpec, folder: Path, note: Callable[[str], None], prefix: str = "") -> Layout | None:
    """The first complete layout of ``spec`` in ``folder``; incomplete ones are noted."""
    for layout in spec.layouts:
        missing = layout.probe(folder)
        if missing == []:
            return layout
        if missing:
            note(f"{prefix}incomplete {layout.name}, missing {', '.join(missing)}")
    return None


def _read_folder(spec: DatasetSpec, folder: Path, cache_dir: Path, note: Callable[[str], None],
                 feedback: Feedback) -> RawSplits | None:
    layout = _match(spec, folder, note)
    if layout is None:
        return None
    cache_file = array_cache_path(cache_dir, spec.name, folder)
    raw = load_arrays(cache_file)
    if raw is None:
        raw = _decode(spec, layout, folder, str(folder), cache_file, feedback)
    return raw


def _read_archive(spec: DatasetSpec, archive: Path, cache_dir: Path, note: Callable[[str], None],
                  feedback: Feedback) -> RawSplits | None:
    cache_file = array_cache_path(cache_dir, spec.name, archive)
    raw = load_arrays(cache_file)
    if raw is not None:
        return raw
    unpacked = extract_archive(archive, cache_dir, dict(spec.archive_md5).get(archive.name), feedback)
    for folder in (unpacked, *subfolders(unpacked)):  # subfolders skips __MACOSX/ and hidden ones
        inside = "" if folder == unpacked else f"{folder.name}/ "
        layout = _match(spec, folder, note, prefix=f"inside the archive: {inside}")
        if layout is not None:
            where = f"{archive}" + (f" (its {folder.name}/ folder, unpacked in {folder})" if inside else "")
            return _decode(spec, layout, folder, where, cache_file, feedback)
    note("an archive, but it holds none of the expected layouts (at its top or one folder down)")
    return None


def _decode(spec: DatasetSpec, layout: Layout, folder: Path, where: str, cache_file: Path,
            feedback: Feedback) -> RawSplits:
    with feedback.step(f"decoding {spec.name} ({layout.name}) from {where}: first use, cached afterwards in "
                       f"{cache_file}", f"decoding {spec.name}") as step:
        raw = layout.decode(folder, step)
    _save(cache_file, raw)
    return raw


def _save(cache_file: Path, raw: RawSplits) -> None:
    try:
        save_arrays(cache_file, raw)
    except OSError as exc:  # a read-only cache costs speed next time, not this load
        warnings.warn(f"could not write the dataset cache {cache_file} ({exc}); the next load will decode again. "
                      "Pass cache_dir or set $SPIKETANDEM_CACHE to a writable folder.", stacklevel=3)
