"""Datasets are decoded once; later loads read the array cache."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest
import torch
from data_builders import save_image, write_image_tree, write_pickle

import spiketandem.data.cache as cache
import spiketandem.data.formats.cifar as cifar_format
import spiketandem.data.formats.images as image_format
import spiketandem.data.loading as loading
from spiketandem.data import load_dataset
from spiketandem.data.arrays import RawSplits


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


# ---- a changed tree is decoded again ---------------------------------------------------------------

def _bump_mtime(path, seconds=10):
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_a_file_changed_deep_in_a_tree_is_decoded_again(tmp_path, cache_dir):
    rng = np.random.default_rng(12)
    raw = RawSplits(rng.integers(0, 256, (4, 3, 4, 4), dtype=np.uint8), np.array([0, 0, 1, 1]),
                    rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8), np.array([0, 1]), ["ant", "bee"])
    root = tmp_path / "tree"
    write_image_tree(root, raw)
    first = load_dataset("imagefolder", root, cache_dir=cache_dir)
    assert int(first.train_x[0].max()) > 0

    save_image(root / "train" / "ant" / "0000.png", np.zeros((3, 4, 4), np.uint8))  # same name, new pixels
    _bump_mtime(root / "train" / "ant" / "0000.png")
    second = load_dataset("imagefolder", root, cache_dir=cache_dir)
    assert int(second.train_x[0].max()) == 0

    save_image(root / "test" / "bee" / "0009.png", np.full((3, 4, 4), 9, np.uint8))  # a new file
    third = load_dataset("imagefolder", root, cache_dir=cache_dir)
    assert len(third.test_y) == 3 and int(third.test_x[-1].max()) == 9
    assert len(list((cache_dir / "arrays").glob("*.npz"))) == 1  # superseded entries were removed


def test_litter_does_not_invalidate_the_cache(cifar10_dir, cache_dir, monkeypatch):
    folder, _ = cifar10_dir
    load_dataset("cifar10", folder, cache_dir=cache_dir)
    (folder / ".DS_Store").write_bytes(b"Bud1")
    (folder / "._test_batch").write_bytes(b"\x00\x05\x16\x07")
    monkeypatch.setattr(cifar_format, "read_pickle", _forbid)
    load_dataset("cifar10", folder, cache_dir=cache_dir)


def test_a_replaced_archive_is_unpacked_and_decoded_again(tmp_path, cache_dir, cifar_image_tree):
    tree = tmp_path / "tree" / "cifar10-jpeg"
    write_image_tree(tree, cifar_image_tree)
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    load_dataset("cifar10", archive, cache_dir=cache_dir)
    save_image(tree / "test" / "airplane" / "0000.png", np.full((3, 32, 32), 3, np.uint8))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    _bump_mtime(archive)
    data = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert int(data.test_x[0].max()) == 3
    assert len(list((cache_dir / "extracted").iterdir())) == 1  # the old unpacked copy is gone
    assert len(list((cache_dir / "arrays").iterdir())) == 1


# ---- leftovers of killed runs ---------------------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def _age(path, days):
    old = time.time() - days * 86400
    os.utime(path, (old, old))


def test_stale_leftovers_are_cleaned_and_live_ones_kept(tmp_path, cache_dir, cifar_image_tree):
    tree = tmp_path / "tree" / "cifar10-jpeg"
    write_image_tree(tree, cifar_image_tree)
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    extracted, arrays = cache_dir / "extracted", cache_dir / "arrays"
    extracted.mkdir(parents=True)
    arrays.mkdir()
    host = cache._HOST
    dead_dir = extracted / f".c-0123456789ab-0123456789ab.{host}.{_dead_pid()}.deadbeef.tmp"  # killed mid-unpack
    (dead_dir / "cifar10-jpeg" / "train").mkdir(parents=True)
    dead_file = arrays / f".cifar10-0123456789ab-0123456789ab.npz.{host}.{_dead_pid()}.0badf00d.tmp"
    dead_file.write_bytes(b"half an npz")
    live = arrays / f".cifar10-x.npz.{host}.{os.getpid()}.12345678.tmp"  # a writer still at work: ours
    live.write_bytes(b"")
    foreign_fresh = extracted / ".c-x.other-host.1.aaaaaaaa.tmp"  # another machine on a shared cache
    foreign_fresh.mkdir()
    foreign_old = extracted / ".c-y.other-host.1.bbbbbbbb.tmp"
    foreign_old.mkdir()
    _age(foreign_old, 2)
    legacy_old = arrays / "cifar10-0123456789abcdefabc.tmp"  # mkstemp name of the previous version
    legacy_old.write_bytes(b"")
    _age(legacy_old, 2)

    data = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert len(data.train_y) == 20
    for gone in (dead_dir, dead_file, foreign_old, legacy_old):
        assert not gone.exists(), gone
    for kept in (live, foreign_fresh):
        assert kept.exists(), kept
    assert [p for p in extracted.iterdir() if not p.name.startswith(".")] != []


KILLED_UNPACK = """
import pathlib, sys, time
import spiketandem.data.cache as cache
unpack = cache._unpack
def unpack_then_hang(archive, dest, step):
    unpack(archive, dest, step)
    print("unpacked", flush=True)
    time.sleep(600)
cache._unpack = unpack_then_hang
cache.extract_archive(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
"""


def test_a_run_killed_mid_unpack_does_not_block_the_next(tmp_path, cache_dir, cifar_image_tree):
    tree = tmp_path / "tree" / "cifar10-jpeg"
    write_image_tree(tree, cifar_image_tree)
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_UNPACK, str(archive), str(cache_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "unpacked"
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait(timeout=60)
        proc.stdout.close()
    (leftover,) = (cache_dir / "extracted").iterdir()
    assert leftover.name.startswith(".") and leftover.name.endswith(".tmp")  # never under a final name

    data = load_dataset("cifar10", archive, cache_dir=cache_dir)
    assert len(data.train_y) == 20
    assert not leftover.exists()
    assert [p.name.startswith(".") for p in (cache_dir / "extracted").iterdir()] == [False]
