"""The digits shipped in the package: equal to scikit-learn's copy, loaded without it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spiketandem.data import load_dataset
from spiketandem.data.formats.digits import DIGITS_FILE, load_digits_arrays


def test_shipped_digits_equal_scikit_learns():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn holds the reference copy")
    from sklearn.model_selection import train_test_split

    reference = datasets.load_digits()
    shipped = load_digits_arrays()
    np.testing.assert_array_equal(shipped["images"], reference.images)  # exact: both are whole numbers 0..16
    np.testing.assert_array_equal(shipped["target"], reference.target)
    train, test = train_test_split(np.arange(len(reference.target)), test_size=0.2, random_state=0,
                                   stratify=reference.target)
    np.testing.assert_array_equal(shipped["train_index"], train)
    np.testing.assert_array_equal(shipped["test_index"], test)


def test_digits_load_as_before():
    data = load_dataset("digits")
    assert (len(data.train_y), len(data.test_y)) == (1437, 360)
    assert tuple(data.train_x.shape[1:]) == (1, 8, 8) and data.classes == [str(d) for d in range(10)]
    assert np.bincount(data.test_y.numpy()).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # stratified
    x = data.train_x.numpy().astype(int)
    assert x.max() == 255 and np.isin(x, np.rint(np.arange(17) * 255 / 16)).all()  # 0..16 scaled to 0..255


def test_digits_need_no_scikit_learn():
    """In a fresh interpreter where importing sklearn fails, the digits still load (and sklearn is never asked for)."""
    code = ("import sys; sys.modules['sklearn'] = None; sys.modules['scipy'] = None\n"
            "from spiketandem.data import load_dataset\n"
            "d = load_dataset('digits'); print(len(d.train_y), len(d.test_y))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1437", "360"]


def test_digits_file_is_small_and_in_the_package():
    assert DIGITS_FILE.is_file() and DIGITS_FILE.stat().st_size < 100_000
