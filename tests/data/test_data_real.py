"""Real datasets, where the machine has them: CIFAR-10 at ../shared/data, Fashion-MNIST from Debian."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spiketandem.data import load_dataset
from spiketandem.data.formats.cifar import CIFAR10_CLASSES

ARCHIVE = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz").resolve()


@pytest.fixture(autouse=True)
def isolated_env():
    """Use the real default cache here (overrides the conftest fixture), so the decode happens once per machine."""


@pytest.mark.slow
@pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} is not on this machine")
def test_real_cifar10_archive():
    data = load_dataset("cifar10", ARCHIVE)
    assert (len(data.train_y), len(data.test_y)) == (50000, 10000)
    assert tuple(data.train_x.shape[1:]) == (3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.classes == list(CIFAR10_CLASSES)
    assert torch.bincount(data.train_y).tolist() == [5000] * 10
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    # JPEG-compressed CIFAR-10: statistics close to the usual (0.491, 0.482, 0.447) / (0.247, 0.243, 0.261)
    for got, want in zip(data.mean + data.std, (0.491, 0.482, 0.447, 0.247, 0.243, 0.261)):
        assert abs(got - want) < 0.01


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="apt-get install dataset-fashion-mnist to run this")
def test_real_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist")  # found through the default search
    assert (len(data.train_y), len(data.test_y)) == (60000, 10000)
    assert tuple(data.train_x.shape[1:]) == (1, 28, 28)
    assert torch.bincount(data.train_y).tolist() == [6000] * 10
    assert abs(data.mean[0] - 0.2860) < 1e-3 and abs(data.std[0] - 0.3530) < 1e-3
