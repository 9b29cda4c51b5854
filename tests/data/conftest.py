"""Fixtures for the data tests: tiny datasets written in their official on-disk layouts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_builders import random_images, save_image, smooth_images, write_idx, write_pickle

from spiketandem.data.arrays import RawSplits
from spiketandem.data.formats.cifar import CIFAR10_CLASSES
from spiketandem.data.formats.idx import FASHION_MNIST_CLASSES


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Keep every test away from the real data and cache folders."""
    monkeypatch.setenv("SPIKETANDEM_DATA", str(tmp_path / "default-data"))
    monkeypatch.setenv("SPIKETANDEM_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def cifar10_dir(tmp_path) -> tuple[Path, RawSplits]:
    """A tiny ``cifar-10-batches-py``: 5 training batches of 3 images and a test batch of 4."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = []
    for i in range(1, 6):
        x = random_images(rng, 3, 3, 32)
        y = rng.integers(0, 10, size=3)
        write_pickle(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                                  "data": x.reshape(3, -1), "labels": y.tolist()})
        batches.append((x, y))
    test_x, test_y = random_images(rng, 4, 3, 32), rng.integers(0, 10, size=4)
    write_pickle(folder / "test_batch", {"data": test_x.reshape(4, -1), "labels": test_y.tolist()})
    write_pickle(folder / "batches.meta", {"label_names": list(CIFAR10_CLASSES), "num_vis": 3072})
    raw = RawSplits(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]),
                    test_x, test_y, list(CIFAR10_CLASSES))
    return folder, raw


@pytest.fixture
def cifar100_dir(tmp_path) -> tuple[Path, RawSplits]:
    """A tiny ``cifar-100-python``: 6 training and 3 test images, 100 fine classes."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"class_{i:03d}" for i in range(100)]
    splits = {}
    for split, n in (("train", 6), ("test", 3)):
        x, y = random_images(rng, n, 3, 32), rng.integers(0, 100, size=n)
        write_pickle(folder / split, {"data": x.reshape(n, -1), "fine_labels": y.tolist(),
                                      "coarse_labels": (y // 5).tolist()})
        splits[split] = (x, y)
    write_pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]})
    return folder, RawSplits(*splits["train"], *splits["test"], names)


@pytest.fixture
def tiny_imagenet_dir(tmp_path) -> tuple[Path, RawSplits]:
    """A tiny ``tiny-imagenet-200`` with 3 classes, 2 training images each, 3 val images; the first
    training image of the second class is a greyscale JPEG."""
    rng = np.random.default_rng(2)
    root = tmp_path / "data" / "tiny-imagenet-200"
    wnids = ["n02", "n01", "n03"]  # deliberately unsorted: class i is line i of wnids.txt, not the i-th sorted
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tsalamander\nn03\tbullfrog, frog\n"
                                    "n99\tunused class\n")
    train_x, train_y = [], []
    for label, wnid in enumerate(wnids):
        images = smooth_images(rng, 2, 3, 64)
        if label == 1:
            images[0] = images[0].mean(axis=0, keepdims=True).astype(np.uint8)  # stored as greyscale below
        for i, x in enumerate(images):
            save_image(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", x[:1] if label == 1 and i == 0 else x)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        train_x.append(images)
        train_y += [label, label]
    val_x = smooth_images(rng, 3, 3, 64)
    val_wnids = ["n03", "n01", "n02"]
    lines = []
    for i, (x, wnid) in enumerate(zip(val_x, val_wnids)):
        save_image(root / "val" / "images" / f"val_{i}.JPEG", x)
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    val_y = np.array([wnids.index(w) for w in val_wnids])
    return root, RawSplits(np.concatenate(train_x), np.array(train_y), val_x, val_y,
                           ["salamander", "goldfish", "bullfrog"])


@pytest.fixture
def fashion_dir(tmp_path) -> tuple[Path, RawSplits]:
    """Fashion-MNIST IDX files: training files gzip-compressed, test files plain."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    train_x, test_x = random_images(rng, 5, 1, 28), random_images(rng, 3, 1, 28)
    train_y, test_y = rng.integers(0, 10, size=5).astype(np.uint8), rng.integers(0, 10, size=3).astype(np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_x[:, 0], compress=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_y, compress=True)
    write_idx(folder / "t10k-images-idx3-ubyte", test_x[:, 0])
    write_idx(folder / "t10k-labels-idx1-ubyte", test_y)
    return folder, RawSplits(train_x, train_y, test_x, test_y, list(FASHION_MNIST_CLASSES))


@pytest.fixture
def cifar_image_tree() -> RawSplits:
    """Splits for a CIFAR-10-like image-folder tree: 2 training and 1 test image per class."""
    rng = np.random.default_rng(4)
    return RawSplits(random_images(rng, 20, 3, 32), np.repeat(np.arange(10), 2),
                     random_images(rng, 10, 3, 32), np.arange(10), list(CIFAR10_CLASSES))
