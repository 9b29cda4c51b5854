"""Event-camera datasets binned into frames ``[T, 2, H, W]`` (channel 0: OFF events, 1: ON events).

Files are read with `tonic <https://tonic.readthedocs.io>`_ (optional: ``pip install tonic``);
binning is ours and is specified exactly:

    time bins  (``mode="time"``):  event i goes to bin  floor(T (t_i - t_0) / (t_last - t_0 + 1))
    count bins (``mode="count"``): the i-th event in time order (0-based, of N) goes to bin floor(i T / N)
    frame[b, p, y, x] = number of events of polarity p at pixel (x, y) in bin b

Each split is converted once and cached as ``.npz`` under ``cache_dir/events/``, keyed by the dataset,
its source folder (names, sizes, mtimes) and the binning settings, so changing T or the mode makes a
new cache and never reads a stale one.

Implemented: N-MNIST (``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin``, the release layout, read
by ``tonic.io.read_mnist_file``), CIFAR10-DVS (the release: ``<class>/*.aedat``, AEDAT 2.0 DVS128
recordings, see :mod:`.aedat`; no split in the release, so the last ``test_fraction`` of each
class in natural file-name order is the test set) and DVS128 Gesture in two layouts: tonic's
conversion (``ibmGestureTrain/userNN_<lighting>/<label>.npy``, columns x, y, p, t in ms) and the
original release (``DvsGesture/``: ``userNN_<lighting>.aedat`` AEDAT 3.1 recordings, each with
``userNN_<lighting>_labels.csv`` -- rows ``class,startTime_usec,endTime_usec`` -- and the split in
``trials_to_train.txt`` / ``trials_to_test.txt``; each csv row is one sample: the recording's
events with ``startTime_usec <= t < endTime_usec``, class 1..11 becoming label 0..10; read without
tonic).  Hidden files and macOS's ``._*`` files are skipped.  Students take the frames with
``encoding="frames"`` (see docs/events.md).  Each dataset's ``EventDatasetSpec`` and file reader live in its
module under ``formats/`` (these three: ``formats/event_cameras.py``), named in ``registry.DATASETS``.
"""
from __future__ import annotations

import csv
import hashlib
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..choices import BIN_MODES  # declared torch-free for the command line
from .aedat import read_aedat31_polarity
from .cache import atomic_file, default_cache_dir
from .errors import DatasetFormatError, DatasetNotFoundError
from .files import is_junk
from .progress import Feedback, LogFn, Step
from .registry import DATASETS, EVENT_DATASETS

FORMAT_VERSION = 1
TEST_FRACTION = 0.1  # CIFAR10-DVS: last 100 of the 1000 recordings per class are the test set


Columns = tuple  # (x, y, t, p) of one recording's events, t in microseconds


@dataclass(frozen=True)
class EventDatasetSpec:
    """How to find and read one event dataset, declared by its reader module under ``formats/`` (``SPECS``)."""

    name: str
    sensor: tuple[int, int]           # (H, W)
    classes: tuple[str, ...]
    folder_names: tuple[str, ...]     # tried under data_dir (after data_dir itself)
    splits: tuple[str, str]           # sub-folders holding <class>/<recording> for train and test
    suffix: str
    how_to_get: str
    read: Callable[[Path], Columns]   # one recording file -> its event columns
    layout: str = "class-folders"     # class-folders: <split>/<class>/*; label-files: <split>/<any>/<label>.npy;
    #                                   unsplit: <class>/* (the split is made by file order, see _unsplit)
    extra_layouts: tuple[str, ...] = ()  # also accepted; gesture-release: DVS128 Gesture as published (see above)


def event_spec(name: str) -> EventDatasetSpec:
    """The spec of event dataset ``name`` (``registry.DATASETS``)."""
    entry = DATASETS.get(name)
    if entry is None or entry.kind != "event":
        raise DatasetNotFoundError(f"unknown event dataset {name!r}; choose one of {', '.join(EVENT_DATASETS)}")
    return entry.spec()


@dataclass
class EventFrames:
    """Binned recordings: ``train_x``/``test_x`` uint16 ``[N, T, 2, H, W]`` event counts, int64 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


def need_tonic():
    try:
        import tonic  # noqa: F401
        import tonic.io
    except ImportError:
        from ..errors import SpiketandemError
        raise SpiketandemError("event datasets are read with tonic: pip install 'spiketandem[events]' "
                               "(or pip install tonic)") from None
    return tonic


def bin_events(x: np.ndarray, y: np.ndarray, t: np.ndarray, p: np.ndarray, T: int, sensor: tuple[int, int],
               mode: str = "time", size: int | None = None) -> np.ndarray:
    """Bin one recording into ``[T, 2, H, W]`` event counts (uint16; see the module docstring).

    ``size`` S pools the sensor down to ``S x S``: an event at (x, y) counts at (floor(x S / W), floor(y S / H))
    (sum pooling of event addresses; for 128 -> 48 the pooled pixels are 2 or 3 sensor pixels wide)."""
    if mode not in BIN_MODES:
        raise ValueError(f"binning mode {mode!r} is not one of {BIN_MODES}")
    H, W = sensor
    if len(t) and (np.min(x) < 0 or np.max(x) >= W or np.min(y) < 0 or np.max(y) >= H):
        raise ValueError(f"event coordinates outside the {W}x{H} sensor")
    if size is not None:
        x, y = np.asarray(x, np.int64) * size // W, np.asarray(y, np.int64) * size // H
        H = W = size
    frames = np.zeros(T * 2 * H * W, dtype=np.int64)
    n = len(t)
    if n:
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order].astype(np.int64), p[order]
        if mode == "time":
            bins = (T * (t - t[0])) // (t[-1] - t[0] + 1)
        else:
            bins = (np.arange(n) * T) // n
        # one histogram over the flat index of (bin, polarity, y, x): much faster than np.add.at
        flat = ((bins * 2 + (p > 0)) * H + np.asarray(y, np.int64)) * W + np.asarray(x, np.int64)
        frames = np.bincount(flat, minlength=frames.size)
    return np.minimum(frames, np.iinfo(np.uint16).max).astype(np.uint16).reshape(T, 2, H, W)


GESTURE_TRIAL_LISTS = {"train": "trials_to_train.txt", "test": "trials_to_test.txt"}


def _has_layout(root: Path, spec: EventDatasetSpec, layout: str) -> bool:
    if layout == "gesture-release":
        return all((root / name).is_file() for name in GESTURE_TRIAL_LISTS.values())
    needed = spec.classes if layout == "unsplit" else spec.splits
    return all((root / s).is_dir() for s in needed)


def _locate(spec: EventDatasetSpec, data_dir: str | Path | None) -> tuple[Path, str]:
    """The folder holding ``spec``'s dataset and the layout found there."""
    if data_dir is None:
        raise DatasetNotFoundError(f"{spec.name}: no data_dir given. To get it: {spec.how_to_get}")
    base = Path(data_dir).expanduser()
    tried = [base, *(base / f for f in spec.folder_names)]
    for root in tried:
        for layout in (spec.layout, *spec.extra_layouts):
            if _has_layout(root, spec, layout):
                return root, layout
    needed = spec.classes if spec.layout == "unsplit" else spec.splits
    shown = "/, ".join(needed) if len(needed) > 2 else "/ and ".join(needed)
    shown += "/"
    if "gesture-release" in spec.extra_layouts:
        shown += f" (or {' and '.join(GESTURE_TRIAL_LISTS.values())})"
    raise DatasetNotFoundError(f"{spec.name} not found: looked for {shown} in "
                               f"{', '.join(str(r) for r in tried)}. To get it: {spec.how_to_get}")


def _natural_key(path: Path) -> list:
    """Sort key comparing the digit runs of a file name as numbers (cifar10_cat_9 before cifar10_cat_10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _unsplit(root: Path, spec: EventDatasetSpec, test_fraction: float) -> dict[str, list[tuple[Path, int]]]:
    """Train/test recordings of a release without a split: per class, in natural file-name order, the
    first ``n - k`` recordings train and the last ``k = max(1, round(test_fraction * n))`` test
    (CIFAR10-DVS: 1000 per class -> the first 900 / last 100, the common practice)."""
    split: dict[str, list[tuple[Path, int]]] = {"train": [], "test": []}
    for label, cls in enumerate(spec.classes):
        files = sorted((f for f in (root / cls).glob(f"*{spec.suffix}") if not is_junk(f.name)), key=_natural_key)
        if len(files) < 2:
            raise DatasetNotFoundError(f"{spec.name}: {root / cls} holds {len(files)} *{spec.suffix} recordings; "
                                       f"a train/test split needs at least 2. To get it: {spec.how_to_get}")
        k = min(len(files) - 1, max(1, round(test_fraction * len(files))))
        split["train"] += [(f, label) for f in files[:-k]]
        split["test"] += [(f, label) for f in files[-k:]]
    return split


def _recordings(root: Path, split: str, spec: EventDatasetSpec, test_fraction: float = TEST_FRACTION
                ) -> list[tuple[Path, int]]:
    if spec.layout == "unsplit":  # split is "train" or "test"
        return _unsplit(root, spec, test_fraction)[split]
    out = []
    if spec.layout == "label-files":
        for f in sorted((root / split).glob(f"*/*{spec.suffix}")):
            if f.stem.isdigit() and int(f.stem) < len(spec.classes) and not is_junk(f.parent.name):
                out.append((f, int(f.stem)))
    for label, cls in enumerate(spec.classes if spec.layout == "class-folders" else ()):
        folder = root / split / cls
        if folder.is_dir():
            out += [(f, label) for f in sorted(folder.glob(f"*{spec.suffix}")) if not is_junk(f.name)]
    if not out:
        raise DatasetNotFoundError(f"{spec.name}: {root / split} holds no <class>/*{spec.suffix} recordings")
    return out


def _read(path: Path, spec: EventDatasetSpec, layout: str | None = None):
    """The recording's event columns (x, y int16, t int64 in us, p int8), checked against the sensor."""
    try:  # the published DVS128 Gesture layout is AEDAT 3.1, decoded here: no tonic needed
        columns = read_aedat31_polarity(path) if layout == "gesture-release" else spec.read(path)
        x, y, t, p = (np.asarray(c).astype(d) for c, d in zip(columns, (np.int16, np.int16, np.int64, np.int8)))
    except Exception as e:
        if type(e).__name__ == "SpiketandemError":
            raise
        raise DatasetFormatError(f"{path} is not a readable {spec.name} recording ({type(e).__name__}: {e})") from None
    H, W = spec.sensor
    if len(x) and (x.max() >= W or y.max() >= H):
        raise DatasetFormatError(f"{path}: event coordinates exceed the {W}x{H} {spec.name} sensor")
    return x, y, t, p


def _split_names(spec: EventDatasetSpec, layout: str | None = None) -> tuple[str, str]:
    return ("train", "test") if (layout or spec.layout) in ("unsplit", "gesture-release") else spec.splits


# ---- DVS128 Gesture as published ------------------------------------------------------------------

def _gesture_trials(root: Path, split: str, spec: EventDatasetSpec) -> list[tuple[Path, Path]]:
    """``(recording, labels csv)`` of each trial that ``trials_to_<split>.txt`` lists, in its order."""
    listing = root / GESTURE_TRIAL_LISTS[split]
    names = [line.strip() for line in listing.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    trials, missing = [], []
    for name in names:
        recording = root / name
        labels = recording.with_name(f"{recording.stem}_labels.csv")
        trials.append((recording, labels))
        missing += [f.name for f in (recording, labels) if not f.is_file()]
    if not trials:
        raise DatasetNotFoundError(f"{spec.name}: {listing} lists no recordings. To get it: {spec.how_to_get}")
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise DatasetNotFoundError(f"{spec.name}: {listing} names files that are not in {root}: {shown}. The copy "
                                   f"is incomplete. To get it: {spec.how_to_get}")
    return trials


def _gesture_windows(path: Path, n_classes: int) -> list[tuple[int, int, int]]:
    """``(label, start_us, end_us)`` per row of a ``_labels.csv`` (header ``class,startTime_usec,endTime_usec``),
    with the release's class 1..n as label 0..n-1."""
    windows = []
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    for number, row in enumerate(csv.reader(lines), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or (number == 1 and not cells[0].lstrip("+-").isdigit()):
            continue  # blank line, or the header
        try:
            label, start, end = (int(c) for c in cells[:3]) if len(cells) >= 3 else (None, None, None)
        except ValueError:
            label = None
        if label is None or not 1 <= label <= n_classes or end <= start:
            raise DatasetFormatError(f"{path}, line {number}: expected 'class,startTime_usec,endTime_usec' with a "
                                     f"class in 1..{n_classes} and end > start, got {lines[number - 1]!r}")
        windows.append((label - 1, start, end))
    if not windows:
        raise DatasetFormatError(f"{path} labels no gesture (no class,startTime_usec,endTime_usec rows)")
    return windows


def _gesture_split(root: Path, split: str, spec: EventDatasetSpec, T: int, mode: str, size: int | None,
                   step: Step) -> tuple[np.ndarray, np.ndarray]:
    """Frames and labels of every labelled window of every trial of ``split``: each recording is parsed
    once and cut by its csv (events with ``start <= t < end``)."""
    trials = [(recording, _gesture_windows(labels, len(spec.classes))) for recording, labels in
              _gesture_trials(root, split, spec)]
    shape = (size, size) if size is not None else spec.sensor
    frames = np.zeros((sum(len(w) for _, w in trials), T, 2, *shape), dtype=np.uint16)
    labels, empty, i = [], 0, 0
    for recording, windows in trials:
        x, y, t, p = _read(recording, spec, layout="gesture-release")
        if len(t) > 1 and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            x, y, t, p = x[order], y[order], t[order], p[order]
        for label, start, end in windows:
            a, b = np.searchsorted(t, [start, end], side="left")
            empty += int(a == b)
            frames[i] = bin_events(x[a:b], y[a:b], t[a:b], p[a:b], T, spec.sensor, mode, size)
            labels.append(label)
            i += 1
        step.advance()
    if empty:
        warnings.warn(f"{spec.name}: {empty} of the {i} labelled windows of {root / GESTURE_TRIAL_LISTS[split]} hold "
                      "no events (a _labels.csv that does not match its recording?); their frames are empty",
                      stacklevel=3)
    return frames, np.array(labels, dtype=np.int64)


# ---- loading and the cache ------------------------------------------------------------------------

def _source_files(root: Path, split: str, spec: EventDatasetSpec, layout: str, test_fraction: float) -> list[Path]:
    if layout == "gesture-release":
        return [root / GESTURE_TRIAL_LISTS[split], *(f for pair in _gesture_trials(root, split, spec) for f in pair)]
    return [f for f, _ in _recordings(root, split, spec, test_fraction)]


def _cache_key(spec: EventDatasetSpec, root: Path, layout: str, T: int, mode: str, test_fraction: float,
               size: int | None) -> str:
    parts = [str(FORMAT_VERSION), spec.name, str(root.resolve()), f"T={T}", f"mode={mode}"]
    if layout != spec.layout:
        parts.append(f"layout={layout}")
    if size is not None:
        parts.append(f"size={size}")
    if layout == "unsplit":
        parts.append(f"test_fraction={test_fraction!r}")
    for split in _split_names(spec, layout):
        for f in _source_files(root, split, spec, layout, test_fraction):
            st = f.stat()
            parts.append(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _load_cached(path: Path, spec: EventDatasetSpec) -> EventFrames | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return EventFrames(spec.name, z["train_x"], z["train_y"], z["test_x"], z["test_y"], spec.classes)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None  # a damaged cache is simply rebuilt


def load_event_dataset(name: str, data_dir: str | Path | None, T: int = 10, mode: str = "time",
                       cache_dir: str | Path | None = None, test_fraction: float = TEST_FRACTION,
                       size: int | None = None, *, log: LogFn | None = None,
                       progress: bool | None = None) -> EventFrames:
    """Load an event dataset binned into ``T`` frames per recording (converted once, then cached).

    ``test_fraction`` applies to releases without a train/test split (CIFAR10-DVS): the last
    ``round(test_fraction * n)`` recordings of each class, in natural file-name order, are the test set.
    ``size`` S sum-pools the sensor to ``S x S`` frames (see :func:`bin_events`); default the sensor's size.
    The conversion says what it reads through ``log`` or the ``spiketandem.data`` logger, with a bar
    on a terminal (``progress`` forces it on/off; see :mod:`spiketandem.data.progress`)."""
    spec = event_spec(name)
    if mode not in BIN_MODES or T < 1:
        raise DatasetFormatError(f"binning needs T >= 1 and mode in {BIN_MODES}, got T={T}, mode={mode!r}")
    if not 0 < test_fraction < 1:
        raise DatasetFormatError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if size is not None and not (isinstance(size, int) and 1 <= size <= min(spec.sensor)):
        raise DatasetFormatError(f"{name}: the frame size must be a whole number in 1..{min(spec.sensor)} (the "
                                 f"sensor is {spec.sensor[1]}x{spec.sensor[0]}), got {size!r}")
    root, layout = _locate(spec, data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / "events" / f"{name}-{_cache_key(spec, root, layout, T, mode, test_fraction, size)}.npz"
    cached = _load_cached(path, spec)
    if cached is not None:
        return cached
    arrays = {}
    feedback = Feedback(log, bar=progress)
    with feedback.step(f"converting {name} ({layout}) from {root} into {T} {mode} bins: first use, cached "
                       f"afterwards in {path}", f"converting {name}", unit="recording") as step:
        for key, split in zip(("train", "test"), _split_names(spec, layout)):
            if layout == "gesture-release":
                step.add(len(_gesture_trials(root, split, spec)))
                arrays[f"{key}_x"], arrays[f"{key}_y"] = _gesture_split(root, split, spec, T, mode, size, step)
                continue
            recs = _recordings(root, split, spec, test_fraction)
            step.add(len(recs))
            shape = (size, size) if size is not None else spec.sensor
            frames = np.zeros((len(recs), T, 2, *shape), dtype=np.uint16)  # filled in place: no list + stack copy
            for i, (f, _) in enumerate(recs):
                frames[i] = bin_events(*_read(f, spec), T, spec.sensor, mode, size)
                step.advance()
            arrays[f"{key}_x"] = frames
            arrays[f"{key}_y"] = np.array([label for _, label in recs], dtype=np.int64)
    with atomic_file(path) as f:  # temporary name, renamed when complete; stale leftovers cleaned first
        np.savez_compressed(f, **arrays)  # event frames are mostly zeros: compressed, CIFAR10-DVS is GBs smaller
    return EventFrames(name, arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], spec.classes)
