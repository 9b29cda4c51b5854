"""The on-disk cache: decoded uint8 arrays (one ``.npz`` per dataset source) and unpacked archives.

Layout under the cache folder (``cache_dir``, default ``$SPIKETANDEM_CACHE`` or ``~/.cache/spiketandem``)::

    arrays/<dataset>-<key>.npz        decoded splits, written once, atomically
    extracted/<archive stem>-<key>/   an unpacked archive, written once, atomically

``<key>`` hashes :data:`FORMAT_VERSION`, the dataset name, the resolved source path and a cheap
fingerprint of the source (size and mtime of the archive, or of the entries of the source folder).
Edits deep inside an image-folder tree are not noticed: delete the ``.npz`` to force a re-decode.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .arrays import RawSplits
from .errors import DatasetError, DatasetFormatError

FORMAT_VERSION = 1
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_ARRAY_KEYS = ("train_x", "train_y", "test_x", "test_y", "classes")


def default_cache_dir() -> Path:
    """``$SPIKETANDEM_CACHE`` if set, else ``~/.cache/spiketandem``."""
    return Path(os.environ.get("SPIKETANDEM_CACHE") or Path.home() / ".cache" / "spiketandem").expanduser()


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def source_key(name: str, source: Path) -> str:
    """A short hash identifying one dataset read from one source (folder or archive)."""
    source = source.resolve()
    parts = [str(FORMAT_VERSION), name, str(source), *_fingerprint(source)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _fingerprint(path: Path) -> list[str]:
    entries = sorted(path.iterdir()) if path.is_dir() else [path]
    out = []
    for entry in entries:
        st = entry.stat()
        out.append(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return out


def array_cache_path(cache_dir: Path, name: str, source: Path) -> Path:
    return cache_dir / "arrays" / f"{name}-{source_key(name, source)}.npz"


def load_arrays(path: Path) -> RawSplits | None:
    """The cached splits at ``path``, or None if there is no (readable) cache file."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _ARRAY_KEYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # a damaged cache is simply rebuilt
    return RawSplits(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                     [str(c) for c in arrays["classes"]])


def save_arrays(path: Path, raw: RawSplits) -> None:
    """Write ``raw`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train_x=raw.train_x, train_y=raw.train_y, test_x=raw.test_x, test_y=raw.test_y,
                     classes=np.array(raw.classes, dtype=str))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def extract_archive(archive: Path, cache_dir: Path, expected_md5: str | None = None) -> Path:
    """Unpack ``archive`` (.tar.gz, .tgz, .tar or .zip) once under ``cache_dir/extracted`` and return that folder.

    Unpacking goes to a temporary folder renamed into place, so an interrupted run leaves nothing
    half-written. ``expected_md5`` (if given) is checked before unpacking."""
    stem = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    target = cache_dir / "extracted" / f"{stem}-{source_key('archive', archive)}"
    if target.is_dir():
        return target
    if expected_md5 is not None:
        check_md5(archive, expected_md5)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{stem}-", suffix=".tmp"))
    except OSError as exc:
        raise DatasetError(f"cannot write to the cache folder {target.parent} ({exc}); pass cache_dir or set "
                           "$SPIKETANDEM_CACHE to a writable folder") from exc
    try:
        _unpack(archive, tmp)
        os.replace(tmp, target)
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetFormatError(f"cannot unpack archive {archive}: {exc}. It is damaged: re-download or "
                                 "re-copy it.") from exc
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if target.is_dir():  # another process finished the same unpacking first
            return target
        raise DatasetError(f"cannot unpack archive {archive} into {target.parent}: {exc}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _unpack(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive, refusing members that would land outside ``dest``."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)  # zipfile strips absolute paths and ".." itself
        return
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
            return
        root = dest.resolve()
        for member in tar.getmembers():  # Python without extraction filters: check by hand
            if not (member.isfile() or member.isdir()) or not (root / member.name).resolve().is_relative_to(root):
                raise tarfile.TarError(f"unsafe archive member {member.name!r}")
        tar.extractall(dest)


def check_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DatasetFormatError(f"{path} has md5 {digest.hexdigest()}, but the official file of that name has "
                                 f"{expected}: it is damaged or not the official archive. Re-download or re-copy "
                                 "it (or rename it to use it anyway).")
