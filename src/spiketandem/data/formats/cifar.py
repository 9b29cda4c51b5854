"""The official CIFAR python releases: ``cifar-10-batches-py`` and ``cifar-100-python``.

Each file is a pickled dict with ``data`` (uint8 ``[n, 3072]``, channel-major 32x32 RGB) and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). Pickles are read with a restricted
unpickler that only rebuilds numpy arrays, so a tampered file cannot run code.
"""
from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import RawSplits
from ..errors import DatasetFormatError
from ..layouts import Layout, required_files
from ..progress import NULL_STEP, Step
from ..specs import DatasetSpec
from .images import IMAGE_FOLDER

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN_FILES, "test_batch")
CIFAR100_FILES = ("train", "test", "meta")

# the only globals a CIFAR pickle needs (a dict of numpy arrays, lists and strings)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")
        if module.startswith("numpy.core."):  # numpy >= 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[len("numpy.core"):]), name)
            except ImportError:
                pass
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict[str, Any]:
    """Load one CIFAR pickle (Python 2 or 3) as a dict with ``str`` keys."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DatasetFormatError(f"{path} is not a readable CIFAR pickle ({exc}); the file is corrupt or "
                                 "truncated: re-download or re-copy it") from exc
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path} holds a {type(obj).__name__}, expected a CIFAR dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _images_and_labels(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_pickle(path)
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetFormatError(f"{path} has no '{key}' entry (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DatasetFormatError(f"{path}: expected uint8 data [n, 3072] and n labels, got {data.dtype} "
                                 f"{data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _names(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _counted(step: Step, read, *args):
    result = read(*args)
    step.advance()
    return result


def decode_cifar10(folder: Path, step: Step = NULL_STEP) -> RawSplits:
    """Decode ``data_batch_1..5`` + ``test_batch`` (class names from ``batches.meta`` when present)."""
    step.add(len(CIFAR10_FILES), unit="file")
    train = [_counted(step, _images_and_labels, folder / name, "labels") for name in CIFAR10_TRAIN_FILES]
    test_x, test_y = _counted(step, _images_and_labels, folder / "test_batch", "labels")
    classes = list(CIFAR10_CLASSES)
    if (folder / "batches.meta").is_file():
        classes = _names(read_pickle(folder / "batches.meta").get("label_names", classes))
    return RawSplits(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                     test_x, test_y, classes)


def decode_cifar100(folder: Path, step: Step = NULL_STEP) -> RawSplits:
    """Decode ``train`` + ``test`` with the 100 fine labels; class names from ``meta``."""
    step.add(2, unit="file")
    train_x, train_y = _counted(step, _images_and_labels, folder / "train", "fine_labels")
    test_x, test_y = _counted(step, _images_and_labels, folder / "test", "fine_labels")
    meta = read_pickle(folder / "meta")
    if "fine_label_names" not in meta:
        raise DatasetFormatError(f"{folder / 'meta'} has no 'fine_label_names' entry (keys: {sorted(meta)})")
    return RawSplits(train_x, train_y, test_x, test_y, _names(meta["fine_label_names"]))


CIFAR10_PICKLES = Layout(
    "CIFAR-10 python release", "official python release: cifar-10-batches-py/ with data_batch_1..5 and test_batch",
    required_files(CIFAR10_FILES), decode_cifar10)
CIFAR100_PICKLES = Layout(
    "CIFAR-100 python release", "official python release: cifar-100-python/ with train, test and meta",
    required_files(CIFAR100_FILES), decode_cifar100)
_HOW_TO_GET = ("pass download=True (CLI: --download) to fetch it with torchvision, or point data_dir (--data-dir) "
               "at a copy or at a .tar.gz of one")
SPECS = {s.name: s for s in (
    DatasetSpec("cifar10", (CIFAR10_PICKLES, IMAGE_FOLDER),
                ("cifar-10-batches-py", "cifar10", "cifar-10", "cifar10-jpeg"),
                ("cifar-10-python.tar.gz", "cifar10-jpeg.tar.gz"), augment=True, download="CIFAR10",
                how_to_get=_HOW_TO_GET, archive_md5=(("cifar10-jpeg.tar.gz", "dab9011423fd02e2d44b297cac6116c4"),
                                                     ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"))),
    DatasetSpec("cifar100", (CIFAR100_PICKLES, IMAGE_FOLDER), ("cifar-100-python", "cifar100", "cifar-100"),
                ("cifar-100-python.tar.gz",), augment=True, download="CIFAR100", how_to_get=_HOW_TO_GET,
                archive_md5=(("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),)),
)}
