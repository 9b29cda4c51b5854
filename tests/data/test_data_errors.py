"""Missing, incomplete and corrupt datasets fail with one clear message."""
from __future__ import annotations

import gzip
import pickle
import shutil

import numpy as np
import pytest
from data_builders import save_image, write_idx, write_pickle

import spiketandem.data.loading as loading
from spiketandem.data import IMAGE_DATASETS, DatasetFormatError, DatasetNotFoundError, load_dataset
from spiketandem.data.formats.cifar import read_pickle
from spiketandem.errors import SpiketandemError


def test_unknown_name_lists_the_datasets():
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist-9000")
    message = str(info.value)
    assert "mnist-9000" in message and all(name in message for name in IMAGE_DATASETS)
    assert isinstance(info.value, SpiketandemError)


def test_missing_dataset_lists_every_place_and_the_fix(tmp_path, cache_dir):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", tmp_path / "nowhere", cache_dir=cache_dir)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "does not exist" in message
    assert "cifar-10-batches-py" in message and "--download" in message


def test_default_search_names_default_and_shared_folders(tmp_path, monkeypatch, cache_dir):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", cache_dir=cache_dir)
    message = str(info.value)
    assert str(tmp_path / "default-data") in message  # $SPIKETANDEM_DATA (set by the isolated_env fixture)
    assert str((tmp_path / ".." / "shared" / "data").resolve()) in message
    assert "/usr/share/datasets" in message


def test_default_search_finds_shared_data_next_to_cwd(tmp_path, monkeypatch, cifar10_dir, cache_dir):
    folder, raw = cifar10_dir
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    folder.rename(shared / "cifar-10-batches-py")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    data = load_dataset("cifar10", cache_dir=cache_dir)
    np.testing.assert_array_equal(data.test_y.numpy(), raw.test_y)


def test_incomplete_cifar10_names_the_missing_file(cifar10_dir, cache_dir):
    folder, _ = cifar10_dir
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", folder.parent, cache_dir=cache_dir)
    message = str(info.value)
    assert "cifar-10-batches-py: incomplete" in message and "test_batch" in message
    assert "--download" in message


def test_incomplete_tiny_imagenet_points_to_the_url(tiny_imagenet_dir, cache_dir):
    root, _ = tiny_imagenet_dir
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("tiny-imagenet", root.parent, cache_dir=cache_dir)
    assert "val/val_annotations.txt" in str(info.value)
    assert "http://cs231n.stanford.edu/tiny-imagenet-200.zip" in str(info.value)


def test_tiny_imagenet_download_is_refused_with_the_url(tmp_path, cache_dir):
    with pytest.raises(DatasetNotFoundError, match="tiny-imagenet-200.zip"):
        load_dataset("tiny-imagenet", tmp_path, download=True, cache_dir=cache_dir)


def test_missing_fashion_mnist_mentions_the_debian_package(tmp_path, cache_dir):
    with pytest.raises(DatasetNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path, cache_dir=cache_dir)


def test_imagefolder_needs_a_folder():
    with pytest.raises(DatasetNotFoundError, match="data_dir"):
        load_dataset("imagefolder")


def test_corrupt_pickle_is_named(cifar10_dir, cache_dir):
    folder, _ = cifar10_dir
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        load_dataset("cifar10", folder, cache_dir=cache_dir)


def test_pickle_that_would_run_code_is_refused(cifar10_dir, cache_dir):
    folder, _ = cifar10_dir

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(DatasetFormatError, match="refusing to load builtins.print"):
        load_dataset("cifar10", folder, cache_dir=cache_dir)


def test_python2_style_numpy_pickle_loads(tmp_path):
    data = np.arange(12, dtype=np.uint8).reshape(2, 6)
    blob = pickle.dumps({"data": data, b"labels": [1, 2]}, protocol=2)
    blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # what the 2009 pickles name
    (tmp_path / "batch").write_bytes(blob)
    loaded = read_pickle(tmp_path / "batch")
    np.testing.assert_array_equal(loaded["data"], data)
    assert loaded["labels"] == [1, 2]  # bytes keys become str


def test_wrong_cifar_shape_is_reported(cifar10_dir, cache_dir):
    folder, _ = cifar10_dir
    write_pickle(folder / "test_batch", {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]})
    with pytest.raises(DatasetFormatError, match=r"test_batch.*3072"):
        load_dataset("cifar10", folder, cache_dir=cache_dir)


@pytest.mark.parametrize("damage", ["magic", "truncated", "bad-gzip"])
def test_corrupt_idx_is_named(fashion_dir, cache_dir, damage):
    folder, _ = fashion_dir
    target = folder / "t10k-images-idx3-ubyte"
    if damage == "magic":
        target.write_bytes(b"\x08\x03\x00\x00" + target.read_bytes()[4:])
        expected = "bad magic"
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-10])
        expected = "truncated"
    else:
        target = folder / "train-labels-idx1-ubyte.gz"
        target.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde")[:-12])
        expected = "cannot read"
    with pytest.raises(DatasetFormatError, match=expected) as info:
        load_dataset("fashion-mnist", folder, cache_dir=cache_dir)
    assert target.name in str(info.value)


def test_idx_label_count_must_match(fashion_dir, cache_dir):
    folder, _ = fashion_dir
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(DatasetFormatError, match="t10k"):
        load_dataset("fashion-mnist", folder, cache_dir=cache_dir)


def test_inconsistent_image_sizes_name_the_file(tmp_path, cache_dir):
    save_image(tmp_path / "train" / "a" / "0.png", np.zeros((3, 8, 8), np.uint8))
    save_image(tmp_path / "train" / "b" / "1.png", np.zeros((3, 9, 8), np.uint8))
    save_image(tmp_path / "test" / "a" / "2.png", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetFormatError, match=r"1\.png is 8x9.*resize"):
        load_dataset("imagefolder", tmp_path, cache_dir=cache_dir)


def test_undecodable_image_is_named(tmp_path, cache_dir):
    save_image(tmp_path / "train" / "a" / "0.png", np.zeros((3, 8, 8), np.uint8))
    (tmp_path / "test" / "a").mkdir(parents=True)
    (tmp_path / "test" / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetFormatError, match="broken.jpg"):
        load_dataset("imagefolder", tmp_path, cache_dir=cache_dir)


def test_test_classes_must_exist_in_train(tmp_path, cache_dir):
    save_image(tmp_path / "train" / "a" / "0.png", np.zeros((3, 8, 8), np.uint8))
    save_image(tmp_path / "test" / "zebra" / "0.png", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(DatasetFormatError, match="zebra"):
        load_dataset("imagefolder", tmp_path, cache_dir=cache_dir)


def test_official_archive_name_with_wrong_md5(tmp_path, cache_dir):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"\x1f\x8b not really")
    with pytest.raises(DatasetFormatError, match="md5"):
        load_dataset("cifar10", tmp_path, cache_dir=cache_dir)


def test_broken_archive_is_named(tmp_path, cache_dir):
    (tmp_path / "mine.tar.gz").write_bytes(b"\x1f\x8b not really")
    with pytest.raises(DatasetFormatError, match="mine.tar.gz"):
        load_dataset("cifar10", tmp_path / "mine.tar.gz", cache_dir=cache_dir)


def test_download_fetches_into_data_dir_then_loads(tmp_path, cache_dir, cifar10_dir, monkeypatch):
    calls = []

    def fake_download(name, root):
        calls.append((name, root))
        shutil.copytree(cifar10_dir[0], root / "cifar-10-batches-py")

    monkeypatch.setattr(loading, "torchvision_download", fake_download)
    target = tmp_path / "fresh"
    data = load_dataset("cifar10", target, download=True, cache_dir=cache_dir)
    assert calls == [("cifar10", target)] and len(data.test_y) == 4
    load_dataset("cifar10", target, download=True, cache_dir=cache_dir)
    assert len(calls) == 1  # found: not downloaded again


def test_failed_download_says_so(tmp_path, cache_dir, monkeypatch):
    import torchvision.datasets  # heavy: only this test needs it

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DatasetNotFoundError, match="downloading dataset 'cifar100'.*network is unreachable"):
        load_dataset("cifar100", tmp_path / "d", download=True, cache_dir=cache_dir)
