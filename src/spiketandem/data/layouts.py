"""The folder layouts each dataset can be read from, and how to recognise them.

A layout's ``probe(folder)`` returns None when the folder does not look like that layout at all,
an empty list when it is complete, and otherwise the parts that are missing (so an incomplete
copy is reported as such instead of as "not found"). ``decode(folder, step)`` reads it, counting
its files on ``step`` (a :class:`~.progress.Step`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .arrays import RawSplits
from .files import subfolders
from .formats.cifar import CIFAR10_FILES, CIFAR100_FILES, decode_cifar10, decode_cifar100
from .formats.idx import FASHION_MNIST_FILES, decode_fashion_mnist, find_idx
from .formats.images import decode_image_folder, image_folder_test_dir
from .formats.tiny_imagenet import TINY_IMAGENET_REQUIRED, decode_tiny_imagenet
from .progress import Step

Probe = Callable[[Path], "list[str] | None"]


@dataclass(frozen=True)
class Layout:
    """One supported on-disk layout: how to recognise it and how to decode it."""

    name: str           # short, for "incomplete <name>" messages
    description: str    # the expected files, for "not found" messages
    probe: Probe
    decode: Callable[[Path, Step], RawSplits]


def _required_files(names: tuple[str, ...]) -> Probe:
    def probe(folder: Path) -> list[str] | None:
        missing = [n for n in names if not (folder / n).is_file()]
        return None if len(missing) == len(names) else missing
    return probe


def _probe_idx(folder: Path) -> list[str] | None:
    missing = [f"{n}[.gz]" for n in FASHION_MNIST_FILES if find_idx(folder, n) is None]
    return None if len(missing) == len(FASHION_MNIST_FILES) else missing


def _probe_image_folder(folder: Path) -> list[str] | None:
    train = folder / "train"
    has_train = train.is_dir() and bool(subfolders(train))  # __MACOSX/, .hidden/ are no classes
    has_test = image_folder_test_dir(folder) is not None
    if not (has_train or has_test):
        return None
    return ([] if has_train else ["train/<class>/ folders"]) + ([] if has_test else ["test/<class>/ (or val/<class>/)"])


def _probe_tiny_imagenet(folder: Path) -> list[str] | None:
    missing = [n for n in TINY_IMAGENET_REQUIRED if not (folder / n).exists()]
    if "wnids.txt" in missing and "val/val_annotations.txt" in missing:
        return None
    return missing


CIFAR10_PICKLES = Layout(
    "CIFAR-10 python release", "official python release: cifar-10-batches-py/ with data_batch_1..5 and test_batch",
    _required_files(CIFAR10_FILES), decode_cifar10)
CIFAR100_PICKLES = Layout(
    "CIFAR-100 python release", "official python release: cifar-100-python/ with train, test and meta",
    _required_files(CIFAR100_FILES), decode_cifar100)
FASHION_MNIST_IDX = Layout(
    "Fashion-MNIST IDX files", f"the four IDX files {', '.join(FASHION_MNIST_FILES)} (each optionally .gz)",
    _probe_idx, decode_fashion_mnist)
TINY_IMAGENET = Layout(
    "tiny-imagenet-200", "official tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG "
    "and val/val_annotations.txt", _probe_tiny_imagenet, decode_tiny_imagenet)
IMAGE_FOLDER = Layout(
    "image folder", "image folder: train/<class>/*.png|jpg and test/<class>/* (or val/<class>/*)",
    _probe_image_folder, decode_image_folder)
