"""Each official layout decodes to the right pixels, labels and class names."""
from __future__ import annotations

import shutil
import tarfile

import numpy as np
import pytest
import torch

from data_builders import save_image, smooth_images, sorted_by_label, write_image_tree

from spiketandem.data import ArrayDataset, load_dataset
from spiketandem.data.arrays import RawSplits
from spiketandem.data.formats.cifar import CIFAR10_CLASSES


def assert_matches(data: ArrayDataset, raw, atol: float = 0.0) -> None:
    for got_x, got_y, want_x, want_y in ((data.train_x, data.train_y, raw.train_x, raw.train_y),
                                         (data.test_x, data.test_y, raw.test_x, raw.test_y)):
        assert got_x.dtype == torch.uint8 and got_y.dtype == torch.int64
        assert tuple(got_x.shape) == want_x.shape
        np.testing.assert_array_equal(got_y.numpy(), want_y)
        diff = np.abs(got_x.numpy().astype(int) - want_x.astype(int))
        assert diff.mean() <= atol, f"mean pixel error {diff.mean():.2f}"
    assert data.classes == list(raw.classes)


def test_digits_split_is_fixed_and_stratified():
    data = load_dataset("digits")
    again = load_dataset("digits")
    assert len(data.train_y) + len(data.test_y) == 1797
    assert (len(data.train_y), len(data.test_y)) == (1437, 360)
    assert tuple(data.train_x.shape[1:]) == (1, 8, 8) and data.train_x.dtype == torch.uint8
    assert data.num_classes == 10 and data.in_channels == 1 and data.image_size == 8 and not data.augment
    assert int(data.train_x.max()) == 255
    assert torch.equal(data.train_x, again.train_x) and torch.equal(data.test_y, again.test_y)
    per_class = torch.bincount(data.test_y, minlength=10)
    assert int(per_class.min()) >= 35 and int(per_class.max()) <= 37  # stratified: ~36 each


def test_cifar10_pickles_round_trip(cifar10_dir, cache_dir):
    folder, raw = cifar10_dir
    for data_dir in (folder, folder.parent):  # the folder itself, or a folder holding it
        data = load_dataset("cifar10", data_dir, cache_dir=cache_dir)
        assert_matches(data, raw)
    assert data.augment and data.image_size == 32 and data.in_channels == 3


def test_cifar100_pickles_round_trip(cifar100_dir, cache_dir):
    folder, raw = cifar100_dir
    data = load_dataset("cifar100", folder.parent, cache_dir=cache_dir)
    assert_matches(data, raw)
    assert data.num_classes == 100


def test_fashion_mnist_idx_gz_and_plain(fashion_dir, cache_dir):
    folder, raw = fashion_dir
    data = load_dataset("fashion-mnist", folder.parent, cache_dir=cache_dir)
    assert_matches(data, raw)
    assert data.in_channels == 1 and not data.augment and data.classes[0] == "T-shirt/top"


def test_tiny_imagenet_with_greyscale_jpeg(tiny_imagenet_dir, cache_dir):
    root, raw = tiny_imagenet_dir
    data = load_dataset("tiny-imagenet", root.parent, cache_dir=cache_dir)
    assert_matches(data, raw, atol=2.0)  # JPEG: close, not exact
    grey = data.train_x[2]  # first image of the second class was stored as greyscale
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    assert data.image_size == 64 and data.in_channels == 3


def test_image_folder_mixed_modes(tmp_path, cache_dir):
    rng = np.random.default_rng(5)
    colour = rng.integers(0, 256, (4, 3, 6, 6), dtype=np.uint8)
    colour[1] = colour[1, :1]  # sample 1 will be written as greyscale
    raw = RawSplits(colour[:3], np.array([0, 1, 1]), colour[3:], np.array([2]), ["ant", "bee", "cat"])
    write_image_tree(tmp_path / "tree", raw, test_name="val")
    (tmp_path / "tree" / "train" / "cat").mkdir()  # an empty class still counts
    grey_copy = raw.train_x[1][:1]
    save_image(tmp_path / "tree" / "train" / "bee" / "0001.png", grey_copy)
    data = load_dataset("imagefolder", tmp_path / "tree", cache_dir=cache_dir)
    assert_matches(data, raw)


def test_all_greyscale_folder_stays_one_channel(tmp_path, cache_dir):
    rng = np.random.default_rng(6)
    raw = RawSplits(rng.integers(0, 256, (2, 1, 5, 5), dtype=np.uint8), np.array([0, 1]),
                    rng.integers(0, 256, (1, 1, 5, 5), dtype=np.uint8), np.array([1]), ["a", "b"])
    write_image_tree(tmp_path / "tree", raw)
    data = load_dataset("imagefolder", tmp_path / "tree", cache_dir=cache_dir)
    assert_matches(data, raw)
    assert data.in_channels == 1


def test_cifar10_image_folder_archive(tmp_path, cache_dir, cifar_image_tree):
    write_image_tree(tmp_path / "build" / "cifar10-jpeg", cifar_image_tree)
    archive = tmp_path / "my-cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar10-jpeg", arcname="cifar10-jpeg")
    data = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert_matches(data, cifar_image_tree)
    assert data.classes == list(CIFAR10_CLASSES)
    assert len(list((cache_dir / "extracted").iterdir())) == 1


def test_cifar10_jpeg_folder_is_close(tmp_path, cache_dir, cifar_image_tree):
    rng = np.random.default_rng(7)
    raw = RawSplits(smooth_images(rng, 20, 3, 32), cifar_image_tree.train_y, smooth_images(rng, 10, 3, 32),
                    cifar_image_tree.test_y, cifar_image_tree.classes)
    write_image_tree(tmp_path / "cifar10-jpeg", raw, suffix=".jpg")
    data = load_dataset("cifar10", tmp_path, cache_dir=cache_dir)  # found as the cifar10-jpeg sub-folder
    assert_matches(data, raw, atol=2.0)


def test_samples_are_grouped_by_class(tmp_path, cache_dir):
    rng = np.random.default_rng(8)
    xs, ys = rng.integers(0, 256, (6, 3, 4, 4), dtype=np.uint8), np.array([2, 0, 1, 0, 2, 1])
    raw = RawSplits(xs, ys, xs[:2], ys[:2], ["x", "y", "z"])
    write_image_tree(tmp_path / "tree", raw)
    data = load_dataset("imagefolder", tmp_path / "tree", cache_dir=cache_dir)
    want_x, want_y = sorted_by_label(xs, ys)
    np.testing.assert_array_equal(data.train_x.numpy(), want_x)
    np.testing.assert_array_equal(data.train_y.numpy(), want_y)


@pytest.mark.parametrize("name", ["CIFAR10", "cifar10 ", "Fashion_MNIST"])
def test_names_are_forgiving(name, cifar10_dir, fashion_dir, cache_dir):
    folder = cifar10_dir[0] if "10" in name else fashion_dir[0]
    assert load_dataset(name, folder, cache_dir=cache_dir).num_classes == 10


def test_tiny_imagenet_zip_as_published(tiny_imagenet_dir, tmp_path, cache_dir):
    root, raw = tiny_imagenet_dir
    archive = shutil.make_archive(str(tmp_path / "tiny-imagenet-200"), "zip", root.parent, root.name)
    data = load_dataset("tiny-imagenet", archive, cache_dir=cache_dir)
    assert_matches(data, raw, atol=2.0)


def test_cifar100_image_folder(tmp_path, cache_dir):
    rng = np.random.default_rng(10)
    names = sorted(f"class_{i:03d}" for i in range(100))
    raw = RawSplits(rng.integers(0, 256, (100, 3, 4, 4), dtype=np.uint8), np.arange(100),
                    rng.integers(0, 256, (100, 3, 4, 4), dtype=np.uint8), np.arange(100), names)
    write_image_tree(tmp_path / "cifar100", raw)
    data = load_dataset("cifar100", tmp_path, cache_dir=cache_dir)
    assert_matches(data, raw)
