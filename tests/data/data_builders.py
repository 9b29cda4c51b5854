"""Helpers that write tiny datasets (images, pickles, IDX files, image trees) for the data tests."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from spiketandem.data.arrays import RawSplits


def random_images(rng: np.random.Generator, n: int, channels: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, channels, size, size), dtype=np.uint8)


def smooth_images(rng: np.random.Generator, n: int, channels: int, size: int) -> np.ndarray:
    """Images JPEG keeps nearly intact: a flat colour plus a gentle horizontal ramp."""
    base = rng.integers(40, 200, size=(n, channels, 1, 1))
    ramp = np.linspace(0, 30, size)[None, None, None, :]
    return np.broadcast_to(base + ramp, (n, channels, size, size)).round().astype(np.uint8)


def write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def save_image(path: Path, chw: np.ndarray) -> None:
    """Save a uint8 [C, H, W] array (C = 1 or 3) as an image file; the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(array)).save(path, quality=95)


def write_image_tree(root: Path, raw: RawSplits, suffix: str = ".png", test_name: str = "test") -> None:
    """``root/train/<class>/NNNN<suffix>`` and ``root/<test_name>/<class>/NNNN<suffix>``."""
    for split, xs, ys in (("train", raw.train_x, raw.train_y), (test_name, raw.test_x, raw.test_y)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            save_image(root / split / raw.classes[y] / f"{i:04d}{suffix}", x)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    blob = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(blob)


def sorted_by_label(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-folder loaders return samples grouped by class, then by file name (= original order)."""
    order = np.argsort(ys, kind="stable")
    return xs[order], ys[order]
