"""Datasets are decoded once; later loads read the array cache."""
from __future__ import annotations

import shutil
import tarfile

import numpy as np
import pytest
import torch
from data_builders import save_image, write_image_tree, write_pickle

import spiketandem.data.formats.cifar as cifar_format
import spiketandem.data.formats.images as image_format
import spiketandem.data.loading as loading
from spiketandem.data import load_dataset


def _forbid(*_args, **_kwargs):
    raise AssertionError("decoded again instead of reading the cache")


def test_second_load_reads_the_cache(cifar10_dir, cache_dir, monkeypatch):
    folder, _ = cifar10_dir
    first = load_dataset("cifar10", folder, cache_dir=cache_dir)
    assert len(list((cache_dir / "arrays").glob("cifar10-*.npz"))) == 1
    monkeypatch.setattr(cifar_format, "read_pickle", _forbid)
    second = load_dataset("cifar10", folder, cache_dir=cache_dir)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    assert first.classes == second.classes and first.mean == second.mean


def test_archive_is_neither_unpacked_nor_decoded_twice(tmp_path, cache_dir, cifar_image_tree, monkeypatch):
    write_image_tree(tmp_path / "tree" / "cifar10-jpeg", cifar_image_tree)
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "cifar10-jpeg", arcname="cifar10-jpeg")
    first = load_dataset("cifar10", archive, cache_dir=cache_dir)
    monkeypatch.setattr(loading, "extract_archive", _forbid)
    monkeypatch.setattr(image_format, "_decode_chunk", _forbid)
    second = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert torch.equal(first.train_x, second.train_x)


def test_cache_is_keyed_by_source(cifar10_dir, cifar100_dir, tmp_path, cache_dir):
    """Two copies of a dataset in different places get separate cache entries."""
    folder, _ = cifar10_dir
    copy = tmp_path / "copy" / "cifar-10-batches-py"
    copy.parent.mkdir()
    shutil.copytree(folder, copy)
    load_dataset("cifar10", folder, cache_dir=cache_dir)
    load_dataset("cifar10", copy, cache_dir=cache_dir)
    assert len(list((cache_dir / "arrays").glob("cifar10-*.npz"))) == 2


def test_replacing_a_source_file_invalidates_the_cache(cifar10_dir, cache_dir):
    folder, _ = cifar10_dir
    load_dataset("cifar10", folder, cache_dir=cache_dir)
    write_pickle(folder / "test_batch", {"data": np.full((2, 3072), 7, np.uint8), "labels": [3, 4]})
    data = load_dataset("cifar10", folder, cache_dir=cache_dir)
    assert data.test_y.tolist() == [3, 4] and int(data.test_x.max()) == 7


def test_damaged_cache_is_rebuilt(cifar10_dir, cache_dir):
    folder, raw = cifar10_dir
    load_dataset("cifar10", folder, cache_dir=cache_dir)
    (cache_file,) = (cache_dir / "arrays").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    data = load_dataset("cifar10", folder, cache_dir=cache_dir)
    np.testing.assert_array_equal(data.train_x.numpy(), raw.train_x)


def test_no_temporary_files_are_left(cifar10_dir, cache_dir):
    load_dataset("cifar10", cifar10_dir[0], cache_dir=cache_dir)
    assert [p.suffix for p in (cache_dir / "arrays").iterdir()] == [".npz"]


def test_unwritable_cache_only_warns(cifar10_dir, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not write the dataset cache"):
        data = load_dataset("cifar10", cifar10_dir[0], cache_dir=blocker)
    assert len(data.train_y) == 15


def test_parallel_decoding_matches_serial(tmp_path, monkeypatch):
    """The worker-process path (used for large datasets) gives the same array as the serial one."""
    rng = np.random.default_rng(9)
    paths = []
    for i in range(12):
        paths.append(tmp_path / f"{i}.png")
        save_image(paths[-1], rng.integers(0, 256, (3 if i % 3 else 1, 5, 5), dtype=np.uint8))
    serial = image_format.decode_images(paths)
    monkeypatch.setattr(image_format, "_MIN_PARALLEL", 1)
    monkeypatch.setattr(image_format, "_CHUNK", 5)
    monkeypatch.setattr(image_format, "_worker_count", lambda n: 2)
    np.testing.assert_array_equal(image_format.decode_images(paths), serial)
