"""IDX files (the MNIST / Fashion-MNIST format), plain or gzip-compressed.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32
sizes, then the values in C order. Only type ``0x08`` (unsigned byte) is needed here.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..arrays import RawSplits
from ..errors import DatasetFormatError
from ..layouts import Layout
from ..progress import NULL_STEP, Step
from ..specs import DatasetSpec

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_UBYTE = 0x08


def find_idx(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (plain first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one uint8 IDX file (gzip detected from its first bytes), checking magic and length."""
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if compressed else open
        with opener(path, "rb") as f:
            blob = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetFormatError(f"cannot read IDX file {path}: {exc}; re-download or re-copy it") from exc
    if len(blob) < 4 or blob[0] != 0 or blob[1] != 0:
        raise DatasetFormatError(f"{path} is not an IDX file (bad magic number {blob[:4].hex() or 'empty'})")
    dtype_code, ndim = blob[2], blob[3]
    if dtype_code != _UBYTE:
        raise DatasetFormatError(f"{path}: IDX value type 0x{dtype_code:02x} is not supported (expected 0x08, uint8)")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DatasetFormatError(f"{path} is truncated (header cut short)")
    shape = tuple(int(s) for s in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(blob) - header != expected:
        raise DatasetFormatError(f"{path} is truncated or padded: header says {shape} = {expected} values, "
                                 f"file holds {len(blob) - header}")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def _split(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = find_idx(folder, images_name), find_idx(folder, labels_name)
    assert images_path is not None and labels_path is not None  # checked by the layout probe
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetFormatError(f"{images_path} / {labels_path}: expected images [n, H, W] and n labels, "
                                 f"got {images.shape} and {labels.shape}")
    return images[:, None], labels.astype(np.int64)


def decode_fashion_mnist(folder: Path, step: Step = NULL_STEP) -> RawSplits:
    """Decode the four Fashion-MNIST IDX files in ``folder`` (each optionally ``.gz``)."""
    step.add(len(FASHION_MNIST_FILES), unit="file")
    train_x, train_y = _split(folder, FASHION_MNIST_FILES[0], FASHION_MNIST_FILES[1])
    step.advance(2)
    test_x, test_y = _split(folder, FASHION_MNIST_FILES[2], FASHION_MNIST_FILES[3])
    step.advance(2)
    return RawSplits(train_x, train_y, test_x, test_y, list(FASHION_MNIST_CLASSES))


def _probe_idx(folder: Path) -> list[str] | None:
    missing = [f"{n}[.gz]" for n in FASHION_MNIST_FILES if find_idx(folder, n) is None]
    return None if len(missing) == len(FASHION_MNIST_FILES) else missing


FASHION_MNIST_IDX = Layout(
    "Fashion-MNIST IDX files", f"the four IDX files {', '.join(FASHION_MNIST_FILES)} (each optionally .gz)",
    _probe_idx, decode_fashion_mnist)
SPECS = {"fashion-mnist": DatasetSpec(
    "fashion-mnist", (FASHION_MNIST_IDX,), ("fashion-mnist", "FashionMNIST/raw", "fashion_mnist"), (),
    augment=False, download="FashionMNIST",
    how_to_get="on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (puts it in /usr/share/datasets/"
               "fashion-mnist/), or pass download=True (CLI: --download) to fetch it with torchvision, or point "
               "data_dir (--data-dir) at the IDX files")}
