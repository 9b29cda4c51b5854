"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""
from __future__ import annotations

import numpy as np

from ..arrays import RawSplits

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


def load_digits_splits() -> RawSplits:
    """The digits as uint8 ``[N, 1, 8, 8]`` (0..16 scaled to 0..255 and rounded), split 80/20
    stratified by class with a fixed seed, so the split is the same on every machine."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED, stratify=labels)
    return RawSplits(train_x, train_y, test_x, test_y, [str(d) for d in range(10)])
