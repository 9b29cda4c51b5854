"""The official ``tiny-imagenet-200`` layout (http://cs231n.stanford.edu/tiny-imagenet-200.zip).

::

    wnids.txt                       one WordNet id per line (the 200 classes)
    words.txt                       optional: "<wnid>\\t<names, comma separated>"
    train/<wnid>/images/*.JPEG      500 per class
    val/images/*.JPEG               10,000 images, labelled by
    val/val_annotations.txt         "<file>\\t<wnid>\\t<x>\\t<y>\\t<w>\\t<h>"

The labelled ``val`` split is used as the test split (the official test split has no labels).
Classes are the wnids in sorted order (what ``ImageFolder`` on ``train/`` gives); their names are
the first synonym in ``words.txt`` (the wnid itself when it is absent or names repeat).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..arrays import RawSplits
from ..errors import DatasetFormatError
from .images import decode_images, list_images

TINY_IMAGENET_REQUIRED = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _class_names(root: Path, wnids: list[str]) -> list[str]:
    words: dict[str, str] = {}
    if (root / "words.txt").is_file():
        for line in _read_lines(root / "words.txt"):
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    if len(set(names)) != len(names):
        return list(wnids)
    return names


def _val_annotations(root: Path, wnid_index: dict[str, int]) -> tuple[list[Path], list[int]]:
    path = root / "val" / "val_annotations.txt"
    paths, labels = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in wnid_index:
            raise DatasetFormatError(f"{path}, line {number}: expected '<file>\\t<wnid in wnids.txt>\\t...', "
                                     f"got {line!r}")
        image = root / "val" / "images" / fields[0]
        if not image.is_file():
            raise DatasetFormatError(f"{path}, line {number}: {image} does not exist (incomplete download?)")
        paths.append(image)
        labels.append(wnid_index[fields[1]])
    return paths, labels


def decode_tiny_imagenet(root: Path) -> RawSplits:
    """Decode train (``train/<wnid>/images``) and val (as the test split) of ``tiny-imagenet-200``."""
    wnids = sorted(_read_lines(root / "wnids.txt"))
    if not wnids or len(set(wnids)) != len(wnids):
        raise DatasetFormatError(f"{root / 'wnids.txt'} must list distinct class ids, one per line")
    index = {w: i for i, w in enumerate(wnids)}
    train_paths: list[Path] = []
    train_labels: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        files = list_images(folder) if folder.is_dir() else []
        if not files:
            raise DatasetFormatError(f"{folder} has no images; class {wnid} of wnids.txt has no training data "
                                     "(incomplete download?)")
        train_paths += files
        train_labels += [index[wnid]] * len(files)
    test_paths, test_labels = _val_annotations(root, index)
    x = decode_images(train_paths + test_paths)  # greyscale JPEGs become RGB alongside the colour ones
    n = len(train_paths)
    return RawSplits(x[:n], np.array(train_labels, np.int64), x[n:], np.array(test_labels, np.int64),
                     _class_names(root, wnids))
