"""The on-disk cache: decoded uint8 arrays (one ``.npz`` per dataset source) and unpacked archives.

Layout under the cache folder (``cache_dir``, default ``$SPIKETANDEM_CACHE`` or ``~/.cache/spiketandem``)::

    arrays/<dataset>-<source>-<content>.npz      decoded splits, written once, atomically
    extracted/<archive stem>-<source>-<content>/  an unpacked archive, written once, atomically

``<source>`` hashes :data:`FORMAT_VERSION`, the dataset name and the resolved source path;
``<content>`` is a cheap fingerprint of what is there (:func:`fingerprint`: the relative path,
size and mtime of every file of a source folder, recursively, or the size and mtime of an
archive; no file is read). So a changed tree -- a file replaced, added or removed anywhere in it --
is decoded again, and the entry it supersedes (same dataset, same source) is removed.

Every entry is written under a temporary name in the same folder (``.<final name>.<host>.<pid>.
<random>.tmp``) and renamed into place when complete, so a killed run never leaves a half-written
entry under a final name. Such leftovers are cleaned on a later write by :func:`clean_stale_temps`:
one whose writer (a process on this host) is gone is removed at once, one of another host or of
an older version of this code only once it is a day old (its writer may still be running).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .arrays import RawSplits
from .errors import DatasetError, DatasetFormatError
from .files import is_junk
from .progress import QUIET, Feedback

FORMAT_VERSION = 2  # 2: whole-tree fingerprint; hidden files skipped; Tiny ImageNet in wnids.txt order
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
STALE_AFTER_S = 24 * 3600  # a temporary entry whose writer cannot be checked counts as dead after this
_ARRAY_KEYS = ("train_x", "train_y", "test_x", "test_y", "classes")
_HOST = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-") or "host"
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def default_cache_dir() -> Path:
    """``$SPIKETANDEM_CACHE`` if set, else ``~/.cache/spiketandem``."""
    return Path(os.environ.get("SPIKETANDEM_CACHE") or Path.home() / ".cache" / "spiketandem").expanduser()


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _hash(parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()[:12]


def source_id(name: str, source: Path) -> str:
    """A short hash of one dataset read from one place (folder or archive), whatever its content."""
    return _hash([str(FORMAT_VERSION), name, str(source.resolve())])


def fingerprint(source: Path) -> str:
    """A short hash of what ``source`` holds now: size and mtime of an archive, or the relative path,
    size and mtime of every non-junk file under a folder (recursively, following links). Only
    metadata is read (one ``stat`` per file), so this stays cheap for trees of 100,000 images."""
    return _hash(_tree_entries(source) if source.is_dir() else [_stat_entry(source.name, source.stat())])


def source_key(name: str, source: Path) -> str:
    """``<source>-<content>``: where a dataset came from and what it held when decoded."""
    return f"{source_id(name, source)}-{fingerprint(source)}"


def _stat_entry(relative: str, st: os.stat_result) -> str:
    return f"{relative}:{st.st_size}:{st.st_mtime_ns}"


def _tree_entries(root: Path):
    seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: a symlink loop ends here
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            entries = sorted((e for e in it if not is_junk(e.name)), key=lambda e: e.name)
        subfolders = []
        for entry in entries:
            try:
                est = entry.stat()  # follows links
            except OSError:  # a dangling link: part of the tree as it is
                yield f"{prefix}{entry.name}:dangling"
                continue
            if stat.S_ISDIR(est.st_mode):
                subfolders.append((Path(entry.path), f"{prefix}{entry.name}/"))
            else:
                yield _stat_entry(prefix + entry.name, est)
        stack.extend(reversed(subfolders))  # depth first, in name order


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
    """Write ``raw`` to ``path`` atomically, then remove the entries it supersedes."""
    with atomic_file(path) as f:
        np.savez(f, train_x=raw.train_x, train_y=raw.train_y, test_x=raw.test_x, test_y=raw.test_y,
                 classes=np.array(raw.classes, dtype=str))
    prune_superseded(path)


# ---- temporary names, atomic writes, leftovers ----------------------------------------------------

def temp_path(final: Path) -> Path:
    """A fresh temporary name next to ``final`` that names its writer (host and pid)."""
    return final.parent / f".{final.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


class atomic_file:
    """``with atomic_file(path) as f:`` writes a binary file under a temporary name and renames it
    to ``path`` only when the block completes; on any error the temporary file is removed. Stale
    leftovers of earlier runs in the same folder are cleaned first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.path.parent)
        self.tmp = temp_path(self.path)
        self.file = open(self.tmp, "xb")
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if exc_type is not None or self.tmp.exists():
                self.tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: existence check only (POSIX)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, as another user
        return True
    return True


def _writer_may_be_running(entry: Path, now: float) -> bool:
    match = _TEMP_NAME.match(entry.name)
    if match and match["host"] == _HOST and os.name == "posix":
        return _pid_alive(int(match["pid"]))
    try:  # another host (a shared cache) or an old-style name: only age tells
        return now - entry.lstat().st_mtime < STALE_AFTER_S
    except FileNotFoundError:
        return False


def _is_temp_name(name: str) -> bool:
    return name.endswith(".tmp") or name.endswith(".tmp.npz")  # .tmp.npz: the event cache before version 2


def clean_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary leftovers of interrupted writes in ``folder`` whose writer is gone (see the
    module docstring); returns what was removed. Entries of running writers are left alone."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in folder.iterdir():
        if not _is_temp_name(entry.name) or _writer_may_be_running(entry, now):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except FileNotFoundError:
            pass  # another process cleaned it first
        except OSError:
            continue  # not ours to remove after all: leave it
    return removed


def prune_superseded(path: Path) -> list[Path]:
    """Remove the other entries of the same dataset and source as ``path`` (``<name>-<source>-<content>``
    with another content: caches of an earlier state of that source), and entries of this dataset
    named by :data:`FORMAT_VERSION` 1 (``<name>-<16 hex>``), which nothing reads any more. A folder is
    first renamed to a temporary name, so a kill half-way through leaves a leftover for
    :func:`clean_stale_temps`, never a broken entry."""
    suffix = ".npz" if path.name.endswith(".npz") else ""
    stem = path.name[: len(path.name) - len(suffix)]
    match = re.fullmatch(r"(?P<name>.+)-(?P<source>[0-9a-f]{12})-[0-9a-f]{12}", stem)
    if match is None:
        return []
    superseded = re.compile(re.escape(f"{match['name']}-") + rf"(?:{match['source']}-[0-9a-f]{{12}}|[0-9a-f]{{16}})"
                            + re.escape(suffix))
    removed = []
    for old in path.parent.iterdir():
        if old == path or not superseded.fullmatch(old.name):
            continue
        try:
            if old.is_dir() and not old.is_symlink():
                doomed = temp_path(old)
                os.replace(old, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                old.unlink()
            removed.append(old)
        except OSError:
            pass  # in use or already gone: harmless, it is never read again
    return removed


# ---- archives -------------------------------------------------------------------------------------

def archive_stem(archive: Path) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if archive.name.lower().endswith(suffix):
            return archive.name[: -len(suffix)]
    return archive.name


def extract_archive(archive: Path, cache_dir: Path, expected_md5: str | None = None,
                    feedback: Feedback = QUIET) -> Path:
    """Unpack ``archive`` (.tar.gz, .tgz, .tar or .zip) once under ``cache_dir/extracted`` and return that folder.

    Unpacking goes to a temporary folder renamed into place, so an interrupted run leaves nothing
    half-written under the final name (and its leftover is cleaned by a later run). ``expected_md5``
    (if given) is checked before unpacking."""
    stem = archive_stem(archive)
    target = cache_dir / "extracted" / f"{stem}-{source_key('archive', archive)}"
    if target.is_dir():
        return target
    if expected_md5 is not None:
        check_md5(archive, expected_md5)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(target.parent)
        tmp = temp_path(target)
        tmp.mkdir()
    except OSError as exc:
        raise DatasetError(f"cannot write to the cache folder {target.parent} ({exc}); pass cache_dir or set "
                           "$SPIKETANDEM_CACHE to a writable folder") from exc
    try:
        with feedback.step(f"unpacking {archive} into {target} (once; later runs reuse it)",
                           f"unpacking {archive.name}") as step:
            _unpack(archive, tmp, step)
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
    prune_superseded(target)
    return target


def _unpack(archive: Path, dest: Path, step) -> None:
    """Unpack a zip or tar archive, refusing members that would land outside ``dest``."""
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            step.add(len(members))
            zf.extractall(dest, members=_counted(members, step))  # zipfile strips absolute paths and ".." itself
        return
    with tarfile.open(archive) as tar:  # members streamed: a .tar.gz is decompressed once
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=_counted(tar, step), filter="data")
            return
        root = dest.resolve()

        def checked():  # Python without extraction filters: check by hand
            for member in tar:
                if not (member.isfile() or member.isdir()) or not (root / member.name).resolve().is_relative_to(root):
                    raise tarfile.TarError(f"unsafe archive member {member.name!r}")
                yield member
        tar.extractall(dest, members=_counted(checked(), step))


def _counted(members, step):
    for member in members:
        yield member
        step.advance()


def check_md5(path: Path, expected: str) -> None:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise DatasetFormatError(f"{path} has md5 {digest.hexdigest()}, but the official file of that name has "
                                 f"{expected}: it is damaged or not the official archive. Re-download or re-copy "
                                 "it (or rename it to use it anyway).")
