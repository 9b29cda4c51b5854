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
by ``tonic.io.read_mnist_file``) and DVS128 Gesture in tonic's layout
(``ibmGestureTrain/userNN_<lighting>/<label>.npy``, columns x, y, p, t in ms).  Students take the
frames with ``encoding="frames"`` (see docs/events.md).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import default_cache_dir
from .errors import DatasetFormatError, DatasetNotFoundError

BIN_MODES = ("time", "count")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EventDatasetSpec:
    name: str
    sensor: tuple[int, int]           # (H, W)
    classes: tuple[str, ...]
    folder_names: tuple[str, ...]     # tried under data_dir (after data_dir itself)
    splits: tuple[str, str]           # sub-folders holding <class>/<recording> for train and test
    suffix: str
    how_to_get: str
    layout: str = "class-folders"     # class-folders: <split>/<class>/*; label-files: <split>/<any>/<label>.npy


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
               mode: str = "time") -> np.ndarray:
    """Bin one recording into ``[T, 2, H, W]`` event counts (uint16; see the module docstring)."""
    if mode not in BIN_MODES:
        raise ValueError(f"binning mode {mode!r} is not one of {BIN_MODES}")
    H, W = sensor
    frames = np.zeros((T, 2, H, W), dtype=np.int64)
    n = len(t)
    if n:
        order = np.argsort(t, kind="stable")
        x, y, t, p = x[order], y[order], t[order].astype(np.int64), p[order]
        if mode == "time":
            bins = (T * (t - t[0])) // (t[-1] - t[0] + 1)
        else:
            bins = (np.arange(n) * T) // n
        np.add.at(frames, (bins, (p > 0).astype(np.int64), y.astype(np.int64), x.astype(np.int64)), 1)
    return np.minimum(frames, np.iinfo(np.uint16).max).astype(np.uint16)


def _locate(spec: EventDatasetSpec, data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DatasetNotFoundError(f"{spec.name}: no data_dir given. To get it: {spec.how_to_get}")
    base = Path(data_dir).expanduser()
    tried = [base, *(base / f for f in spec.folder_names)]
    for root in tried:
        if all((root / s).is_dir() for s in spec.splits):
            return root
    raise DatasetNotFoundError(f"{spec.name} not found: looked for {'/ and '.join(spec.splits)}/ in "
                               f"{', '.join(str(r) for r in tried)}. To get it: {spec.how_to_get}")


def _recordings(root: Path, split: str, spec: EventDatasetSpec) -> list[tuple[Path, int]]:
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


def _cache_key(spec: EventDatasetSpec, root: Path, T: int, mode: str) -> str:
    parts = [str(FORMAT_VERSION), spec.name, str(root.resolve()), f"T={T}", f"mode={mode}"]
    for split in spec.splits:
        for f, _ in _recordings(root, split, spec):
            st = f.stat()
            parts.append(f"{f.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def load_event_dataset(name: str, data_dir: str | Path | None, T: int = 10, mode: str = "time",
                       cache_dir: str | Path | None = None) -> EventFrames:
    """Load an event dataset binned into ``T`` frames per recording (converted once, then cached)."""
    if name not in SPECS:
        raise DatasetNotFoundError(f"unknown event dataset {name!r}; choose one of {', '.join(SPECS)}")
    if mode not in BIN_MODES or T < 1:
        raise DatasetFormatError(f"binning needs T >= 1 and mode in {BIN_MODES}, got T={T}, mode={mode!r}")
    spec = SPECS[name]
    root = _locate(spec, data_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    path = cache / "events" / f"{name}-{_cache_key(spec, root, T, mode)}.npz"
    if path.is_file():
        z = np.load(path)
        return EventFrames(name, z["train_x"], z["train_y"], z["test_x"], z["test_y"], spec.classes)
    arrays = {}
    for key, split in zip(("train", "test"), spec.splits):
        recs = _recordings(root, split, spec)
        arrays[f"{key}_x"] = np.stack([bin_events(*_read(f, spec), T, spec.sensor, mode) for f, _ in recs])
        arrays[f"{key}_y"] = np.array([label for _, label in recs], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
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
