"""The embedded 8x8 handwritten digits (1,797 images, 10 classes), shipped in ``digits.npz``.

Source: the test part of the UCI "Optical Recognition of Handwritten Digits" dataset (E. Alpaydin,
C. Kaynak, 1998; https://archive.ics.uci.edu/dataset/80, CC BY 4.0), as scikit-learn bundles it
(``sklearn/datasets/data/digits.csv.gz``, read by ``sklearn.datasets.load_digits``). ``digits.npz``
was generated once from that file by :func:`write_digits_npz` (scikit-learn 1.9.1) and holds:

    images       uint8 [1797, 8, 8]   pixel counts 0..16, in the file's order
    target       uint8 [1797]         the digit shown
    train_index  int64 [1437]         the split used since the first release: scikit-learn's
    test_index   int64 [360]          ``train_test_split(test_size=0.2, random_state=0, stratify=target)``

So loading needs neither scikit-learn nor SciPy, and the split is the same on every machine.
``tests/data/test_digits.py`` checks the file against scikit-learn where it is installed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..arrays import RawSplits
from ..specs import DatasetSpec

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_FILE = Path(__file__).with_name("digits.npz")


def load_digits_arrays() -> dict[str, np.ndarray]:
    """The arrays of ``digits.npz`` (see the module docstring)."""
    with np.load(DIGITS_FILE, allow_pickle=False) as npz:
        return {key: npz[key] for key in ("images", "target", "train_index", "test_index")}


def load_digits_splits() -> RawSplits:
    """The digits as uint8 ``[N, 1, 8, 8]`` (0..16 scaled to 0..255 and rounded), split 80/20
    stratified by class with a fixed seed, so the split is the same on every machine."""
    arrays = load_digits_arrays()
    images = np.rint(arrays["images"] * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = arrays["target"].astype(np.int64)
    train, test = arrays["train_index"], arrays["test_index"]
    return RawSplits(images[train], labels[train], images[test], labels[test], [str(d) for d in range(10)])


SPECS = {"digits": DatasetSpec("digits", (), (), (), augment=False, how_to_get="it ships inside spiketandem",
                              shipped=load_digits_splits)}


def write_digits_npz(path: Path = DIGITS_FILE) -> None:
    """Regenerate ``digits.npz`` from scikit-learn's copy (maintainers only; needs scikit-learn)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    if not np.array_equal(images, digits.images):
        raise ValueError("scikit-learn's digits are no longer whole numbers 0..16")
    index = np.arange(len(images))
    train_index, test_index = train_test_split(index, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
                                               stratify=digits.target)
    np.savez_compressed(path, images=images, target=digits.target.astype(np.uint8),
                        train_index=train_index.astype(np.int64), test_index=test_index.astype(np.int64))
