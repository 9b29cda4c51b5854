"""The official ``tiny-imagenet-200`` layout (http://cs231n.stanford.edu/tiny-imagenet-200.zip).

::

    wnids.txt                       one WordNet id per line (the 200 classes)
    words.txt                       optional: "<wnid>\\t<names, comma separated>"
    train/<wnid>/images/*.JPEG      500 per class
    val/images/*.JPEG               10,000 images, labelled by
    val/val_annotations.txt         "<file>\\t<wnid>\\t<x>\\t<y>\\t<w>\\t<h>"

The labelled ``val`` split is used as the test split (the official test split has no labels).
The classes are exactly those of ``wnids.txt``, and class ``i`` is its ``i``-th line (the indices of
the release's own loader, CS231n's ``load_tiny_imagenet``). Other folders in ``train/`` are not
classes: some copies in circulation carry extra ones, and counting them (as ``ImageFolder`` on
``train/`` does) would shift the official indices, so they are ignored with one warning that names
them. A class of ``wnids.txt`` without its ``train/<wnid>/`` folder is refused (an incomplete copy).
Class names are the first synonym in ``words.txt`` (the wnid itself when it is absent or names
repeat). Hidden files and macOS's ``._*`` / ``__MACOSX/`` entries are skipped.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..arrays import RawSplits
from ..errors import DatasetFormatError
from ..files import subfolders
from ..layouts import Layout
from ..progress import NULL_STEP, Step
from ..specs import DatasetSpec
from .images import decode_images, list_images

TINY_IMAGENET_REQUIRED = ("wnids.txt", "train", "val/images", "val/val_annotations.txt")
_SHOWN = 10  # names listed in one message before "and N more"


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def _some(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


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


def _train_folders(root: Path, wnids: list[str]) -> None:
    """Refuse missing class folders; warn (once) about folders that are not classes."""
    train = root / "train"
    present = [d.name for d in subfolders(train)]
    missing = [w for w in wnids if w not in set(present)]
    if missing:
        raise DatasetFormatError(
            f"{train} has no folder for {len(missing)} of the {len(wnids)} classes listed in {root / 'wnids.txt'}: "
            f"{_some(missing)}. The copy is incomplete: download and unpack tiny-imagenet-200.zip again.")
    extra = [name for name in present if name not in set(wnids)]
    if extra:
        warnings.warn(
            f"{train} holds {len(extra)} folder{'s' if len(extra) > 1 else ''} that {root / 'wnids.txt'} does not "
            f"list, ignored: {_some(extra)}. The dataset keeps the {len(wnids)} classes of wnids.txt, with "
            "their official indices.", UserWarning, stacklevel=2)


def decode_tiny_imagenet(root: Path, step: Step = NULL_STEP) -> RawSplits:
    """Decode train (``train/<wnid>/images``) and val (as the test split) of ``tiny-imagenet-200``,
    with the classes of ``wnids.txt`` in its order."""
    wnids = _read_lines(root / "wnids.txt")
    if not wnids or len(set(wnids)) != len(wnids):
        raise DatasetFormatError(f"{root / 'wnids.txt'} must list distinct class ids, one per line")
    _train_folders(root, wnids)
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
    x = decode_images(train_paths + test_paths, step)  # greyscale JPEGs become RGB alongside the colour ones
    n = len(train_paths)
    return RawSplits(x[:n], np.array(train_labels, np.int64), x[n:], np.array(test_labels, np.int64),
                     _class_names(root, wnids))


def _probe_tiny_imagenet(folder: Path) -> list[str] | None:
    missing = [n for n in TINY_IMAGENET_REQUIRED if not (folder / n).exists()]
    if "wnids.txt" in missing and "val/val_annotations.txt" in missing:
        return None
    return missing


TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET = Layout(
    "tiny-imagenet-200", "official tiny-imagenet-200/ with wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG "
    "and val/val_annotations.txt", _probe_tiny_imagenet, decode_tiny_imagenet)
SPECS = {"tiny-imagenet": DatasetSpec(
    "tiny-imagenet", (TINY_IMAGENET,), ("tiny-imagenet-200", "tiny-imagenet"),
    ("tiny-imagenet-200.zip", "tiny-imagenet-200.tar.gz"), augment=True,
    how_to_get=f"download {TINY_IMAGENET_URL} (no automatic download) and put the zip, or the unpacked "
               "tiny-imagenet-200/ folder, in data_dir (--data-dir)")}
