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
class in natural file-name order is the test set) and DVS128 Gesture in tonic's layout
(``ibmGestureTrain/userNN_<lighting>/<label>.npy``, columns x, y, p, t in ms).  Students take the
frames with ``encoding="frames"`` (see docs/events.md).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .aedat import read_aedat2_dvs128
from .cache import default_cache_dir
from .errors import DatasetFormatError, DatasetNotFoundError

BIN_MODES = ("time", "count")
FORMAT_VERSION = 1
TEST_FRACTION = 0.1  # CIFAR10-DVS: last 100 of the 1000 recordings per class are the test set
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class EventDatasetSpec:
    name: str
    sensor: tuple[int, int]           # (H, W)
    classes: tuple[str, ...]
    folder_names: tuple[str, ...]     # tried under data_dir (after data_dir itself)
    splits: tuple[str, str]           # sub-folders holding <class>/<recording> for train and test
    suffix: str
    how_to_get: str
    layout: str = "class-folders"     # class-folders: <split>/<class>/*; label-files: <split>/<any>/<label>.npy;
    #                                   unsplit: <class>/* (the split is made by file order, see _unsplit)


SPECS: dict[str, EventDatasetSpec] = {s.name: s for s in (
    EventDatasetSpec("nmnist", (34, 34), tuple(str(d) for d in range(10)), ("NMNIST", "nmnist", "N-MNIST"),
                     ("Train", "Test"), ".bin",
                     "download N-MNIST (https://www.garrickorchard.com/datasets/n-mnist, or tonic.datasets.NMNIST"
                     "(save_to=DIR)), unzip Train.zip and Test.zip, and pass data_dir=DIR (the folder holding "
                     "Train/ and Test/, or its parent holding NMNIST/)"),
    EventDatasetSpec("dvs-gesture", (128, 128), tuple(str(c) for c in range(11)), ("DVSGesture", "dvs-gesture"),
                     ("ibmGestureTrain", "ibmGestureTest"), ".npy",
                     "run tonic.datasets.DVSGesture(save_to=DIR) once for both splits (it downloads and converts "
                     "the recordings to .npy) and pass data_dir=DIR", layout="label-files"),
    EventDatasetSpec("cifar10-dvs", (128, 128), CIFAR10_CLASSES, ("CIFAR10DVS", "CIFAR10-DVS", "cifar10-dvs"),
                     ("", ""), ".aedat",
                     "download the CIFAR10-DVS release (Li et al. 2017, https://figshare.com/articles/dataset/"
                     "CIFAR10-DVS_New/4724671: airplane.zip ... truck.zip), unzip each into DIR/<class>/ (AEDAT 2.0 "
                     "*.aedat files) and pass data_dir=DIR. (tonic's CIFAR10DVS download holds .aedat4 conversions, "
                     "which are not read here.)", layout="unsplit"),
)}


@dataclass
class EventFrames:
    """Binned recordings: ``train_x``/``test_x`` uint16 ``[N, T, 2, H, W]`` event counts, int64 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


def _need_tonic():
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


def _locate(spec: EventDatasetSpec, data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DatasetNotFoundError(f"{spec.name}: no data_dir given. To get it: {spec.how_to_get}")
    base = Path(data_dir).expanduser()
    tried = [base, *(base / f for f in spec.folder_names)]
    needed = spec.classes if spec.layout == "unsplit" else spec.splits
    for root in tried:
        if all((root / s).is_dir() for s in needed):
            return root
    shown = "/, ".join(needed) if len(needed) > 2 else "/ and ".join(needed)
    raise DatasetNotFoundError(f"{spec.name} not found: looked for {shown}/ in "
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
        files = sorted((root / cls).glob(f"*{spec.suffix}"), key=_natural_key)
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
            if f.stem.isdigit() and int(f.stem) < len(spec.classes):
                out.append((f, int(f.stem)))
    for label, cls in enumerate(spec.classes if spec.layout == "class-folders" else ()):
        folder = root / split / cls
        if folder.is_dir():
            out += [(f, label) for f in sorted(folder.glob(f"*{spec.suffix}"))]
    if not out:
        raise DatasetNotFoundError(f"{spec.name}: {root / split} holds no <class>/*{spec.suffix} recordings")
    return out


def _read(path: Path, spec: EventDatasetSpec):
    dtype = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
    try:
        if spec.suffix == ".npy":  # tonic's DVS Gesture conversion: float columns x, y, p, t (ms)
            raw = np.load(path)
            ev = np.zeros(len(raw), dtype=dtype)
            ev["x"], ev["y"], ev["p"] = raw[:, 0], raw[:, 1], raw[:, 2]
            ev["t"] = np.rint(raw[:, 3] * 1000)
        elif spec.suffix == ".aedat":
            _need_tonic()
            columns = read_aedat2_dvs128(path)
            ev = np.zeros(len(columns[0]), dtype=dtype)
            ev["x"], ev["y"], ev["t"], ev["p"] = columns
        else:
            ev = _need_tonic().io.read_mnist_file(str(path), dtype=dtype)
    except Exception as e:
        if type(e).__name__ == "SpiketandemError":
            raise
        raise DatasetFormatError(f"{path} is not a readable {spec.name} recording ({type(e).__name__}: {e})") from None
    H, W = spec.sensor
    if len(ev) and (ev["x"].max() >= W or ev["y"].max() >= H):
        raise DatasetFormatError(f"{path}: event coordinates exceed the {W}x{H} {spec.name} sensor")
    return ev["x"], ev["y"], ev["t"], ev["p"]


def _split_names(spec: EventDatasetSpec) -> tuple[str, str]:
    return ("train", "test") if spec.layout == "unsplit" else spec.splits


def _cache_key(spec: EventDatasetSpec, root: Path, T: int, mode: str, test_fraction: float, size: int | None) -> str:
    parts = [str(FORMAT_VERSION), spec.name, str(root.resolve()), f"T={T}", f"mode={mode}"]
    if size is not None:
        parts.append(f"size={size}")
    if spec.layout == "unsplit":
        parts.append(f"test_fraction={test_fraction!r}")
    for split in _split_names(spec):
        for f, _ in _recordings(root, split, spec, test_fraction):
            st = f.stat()
            parts.append(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def load_event_dataset(name: str, data_dir: str | Path | None, T: int = 10, mode: str = "time",
                       cache_dir: str | Path | None = None, test_fraction: float = TEST_FRACTION,
                       size: int | None = None) -> EventFrames:
    """Load an event dataset binned into ``T`` frames per recording (converted once, then cached).

    ``test_fraction`` applies to releases without a train/test split (CIFAR10-DVS): the last
    ``round(test_fraction * n)`` recordings of each class, in natural file-name order, are the test set.
    ``size`` S sum-pools the sensor to ``S x S`` frames (see :func:`bin_events`); default the sensor's size."""
    if name not in SPECS:
        raise DatasetNotFoundError(f"unknown event dataset {name!r}; choose one of {', '.join(SPECS)}")
    if mode not in BIN_MODES or T < 1:
        raise DatasetFormatError(f"binning needs T >= 1 and mode in {BIN_MODES}, got T={T}, mode={mode!r}")
    if not 0 < test_fraction < 1:
        raise DatasetFormatError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    spec = SPECS[name]
    if size is not None and not (isinstance(size, int) and 1 <= size <= min(spec.sensor)):
        raise DatasetFormatError(f"{name}: the frame size must be a whole number in 1..{min(spec.sensor)} (the "
                                 f"sensor is {spec.sensor[1]}x{spec.sensor[0]}), got {size!r}")
    root = _locate(spec, data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / "events" / f"{name}-{_cache_key(spec, root, T, mode, test_fraction, size)}.npz"
    if path.is_file():
        z = np.load(path)
        return EventFrames(name, z["train_x"], z["train_y"], z["test_x"], z["test_y"], spec.classes)
    arrays = {}
    for key, split in zip(("train", "test"), _split_names(spec)):
        recs = _recordings(root, split, spec, test_fraction)
        shape = (size, size) if size is not None else spec.sensor
        frames = np.zeros((len(recs), T, 2, *shape), dtype=np.uint16)  # filled in place: no list + stack copy
        for i, (f, _) in enumerate(recs):
            frames[i] = bin_events(*_read(f, spec), T, spec.sensor, mode, size)
        arrays[f"{key}_x"] = frames
        arrays[f"{key}_y"] = np.array([label for _, label in recs], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)  # event frames are mostly zeros: compressed, CIFAR10-DVS is GBs smaller
    tmp.replace(path)
    return EventFrames(name, arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], spec.classes)


def write_nmnist_recording(path: str | Path, x, y, t, p) -> None:
    """Write events in N-MNIST's 40-bit format (x: 8 bits, y: 8 bits, polarity: 1 bit, t: 23 bits in
    microseconds), for tests and synthetic data.  Timestamps must be below 2^23."""
    x, y, t, p = (np.asarray(v, dtype=np.int64) for v in (x, y, t, p))
    if len(t) and t.max() >= 2 ** 23:
        raise ValueError("N-MNIST timestamps are 23-bit (< 8388608 us)")
    raw = np.zeros((len(t), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = ((p & 1) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(raw.tobytes())
