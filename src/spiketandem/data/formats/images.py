"""Decoding image files (JPEG, PNG, ...) into one uint8 array, and the ``train/<class>/*`` image-folder layout.

Decoding is a one-time step (its result is cached), spread over worker processes on Linux.
Hidden files, macOS's ``._*`` AppleDouble files and ``__MACOSX/`` are skipped (:mod:`..files`).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..arrays import RawSplits
from ..errors import DatasetFormatError
from ..files import data_files, subfolders
from ..layouts import Layout
from ..progress import NULL_STEP, Step
from ..specs import DatasetSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
_GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_CHUNK = 1000          # images per worker task
_MIN_PARALLEL = 4000   # below this, worker start-up costs more than it saves


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden and ``._*`` files skipped)."""
    return data_files(folder, IMAGE_EXTENSIONS)


def _decode_chunk(paths: Sequence[str]) -> list[np.ndarray]:
    """Decode files to ``[H, W]`` (greyscale) or ``[H, W, 3]`` (anything else, alpha dropped) uint8 arrays."""
    out = []
    for path in paths:
        try:
            with Image.open(path) as image:
                out.append(np.asarray(image.convert("L" if image.mode in _GREY_MODES else "RGB")))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DatasetFormatError(f"cannot decode image {path}: {exc}") from None
    return out


def _worker_count(n_images: int) -> int:
    if n_images < _MIN_PARALLEL or sys.platform != "linux":
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))


def decode_images(paths: Sequence[Path], step: Step = NULL_STEP) -> np.ndarray:
    """Decode ``paths`` into uint8 ``[N, C, H, W]``, counting them on ``step``.

    All images must share one size. ``C`` is 3 if any image is in colour (greyscale ones are then
    repeated over the three channels), else 1."""
    if not paths:
        raise ValueError("decode_images needs at least one path")
    names = [str(p) for p in paths]
    chunks = [names[i:i + _CHUNK] for i in range(0, len(names), _CHUNK)]
    step.add(len(names), unit="image")
    workers = _worker_count(len(names))
    decoded = []
    if workers == 1:
        for chunk in chunks:
            decoded.append(_decode_chunk(chunk))
            step.advance(len(chunk))
    else:  # fork: the workers need nothing but this module, already imported
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            for chunk, result in zip(chunks, pool.map(_decode_chunk, chunks)):  # in order, as they finish
                decoded.append(result)
                step.advance(len(chunk))
    arrays = [a for chunk in decoded for a in chunk]
    return _stack(arrays, names)


def _stack(arrays: list[np.ndarray], names: list[str]) -> np.ndarray:
    height, width = arrays[0].shape[:2]
    colour = any(a.ndim == 3 for a in arrays)
    out = np.empty((len(arrays), 3 if colour else 1, height, width), dtype=np.uint8)
    for i, array in enumerate(arrays):
        if array.shape[:2] != (height, width):
            raise DatasetFormatError(
                f"image {names[i]} is {array.shape[1]}x{array.shape[0]} but {names[0]} is {width}x{height}; "
                "all images of a dataset must share one size: resize them first (e.g. with Pillow's "
                "Image.resize or ImageMagick `mogrify -resize WxH!`)")
        out[i] = array.transpose(2, 0, 1) if array.ndim == 3 else array  # greyscale broadcasts over channels
    return out


def _labelled_images(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        if (split_dir / name).is_dir():
            files = list_images(split_dir / name)
            paths += files
            labels += [label] * len(files)
    if not paths:
        raise DatasetFormatError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in the class folders of {split_dir}")
    return paths, labels


def image_folder_test_dir(root: Path) -> Path | None:
    """``root/test``, else ``root/val``, else None."""
    return next((root / n for n in ("test", "val") if (root / n).is_dir()), None)


def decode_image_folder(root: Path, step: Step = NULL_STEP) -> RawSplits:
    """Decode ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``root/val/<class>/*``).

    Classes are the folders of ``train/`` in sorted order, which for CIFAR-10 and CIFAR-100 trees is
    the official label order; every test class folder must also exist in ``train/``."""
    train_dir, test_dir = root / "train", image_folder_test_dir(root)
    assert test_dir is not None  # checked by the layout probe
    classes = [d.name for d in subfolders(train_dir)]  # sorted; __MACOSX/ and hidden folders are no classes
    unknown = [d.name for d in subfolders(test_dir) if d.name not in classes]
    if unknown:
        raise DatasetFormatError(f"{test_dir} has class folders that {train_dir} lacks: {', '.join(unknown)}")
    train_paths, train_labels = _labelled_images(train_dir, classes)
    test_paths, test_labels = _labelled_images(test_dir, classes)
    x = decode_images(train_paths + test_paths, step)  # one pass, so both splits get the same channel count
    n = len(train_paths)
    return RawSplits(x[:n], np.array(train_labels, np.int64), x[n:], np.array(test_labels, np.int64), classes)


def _probe_image_folder(folder: Path) -> list[str] | None:
    train = folder / "train"
    has_train = train.is_dir() and bool(subfolders(train))  # __MACOSX/, .hidden/ are no classes
    has_test = image_folder_test_dir(folder) is not None
    if not (has_train or has_test):
        return None
    return ([] if has_train else ["train/<class>/ folders"]) + ([] if has_test else ["test/<class>/ (or val/<class>/)"])


IMAGE_FOLDER = Layout(
    "image folder", "image folder: train/<class>/*.png|jpg and test/<class>/* (or val/<class>/*)",
    _probe_image_folder, decode_image_folder)
SPECS = {"imagefolder": DatasetSpec(
    "imagefolder", (IMAGE_FOLDER,), (), (), augment=True, needs_data_dir=True,
    how_to_get="pass data_dir (--data-dir) pointing at a folder with train/<class>/ and test/<class>/ (or "
               "val/<class>/) sub-folders of equally sized images")}
