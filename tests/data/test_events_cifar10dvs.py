"""CIFAR10-DVS: AEDAT 2.0 DVS128 recordings decoded against hand-built bytes, the release's class-folder
layout, the deterministic per-class split, binning and its cache, and the missing-dataset message."""
import struct

import numpy as np
import pytest

from spiketandem.data import events
from event_builders import write_aedat2_dvs128
from spiketandem.data.aedat import read_aedat2_dvs128
from spiketandem.data.errors import DatasetNotFoundError
from spiketandem.data.events import load_event_dataset
from spiketandem.data.formats.cifar import CIFAR10_CLASSES

pytest.importorskip("tonic", reason="tonic parses the AEDAT 2.0 container")

HEADER = b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n"


def test_hand_built_aedat2_bytes_decode_per_jaer_dvs128(tmp_path):
    # jAER DVS128: bit 0 raw polarity (0 = ON), bits 1-7 column c with x = 127 - c, bits 8-14 row y;
    # records are big-endian (address, timestamp in us).
    # event A: x=5, y=10, ON   -> c = 122: address = 10 << 8 | 122 << 1 | 0 = 2560 + 244     = 2804
    # event B: x=127, y=0, OFF -> c = 0:   address = 0 | 0 | 1                                = 1
    # event C: a special (sync) event, bit 15 set: 0x8000, dropped
    # event D: x=0, y=127, OFF -> c = 127: address = 127 << 8 | 127 << 1 | 1 = 32512 + 255    = 32767
    records = struct.pack(">8I", 2804, 1234, 1, 99999, 0x8000, 100000, 32767, 4_000_000_000)
    path = tmp_path / "hand.aedat"
    path.write_bytes(HEADER + records)
    x, y, t, p = read_aedat2_dvs128(path)
    assert x.tolist() == [5, 127, 0] and y.tolist() == [10, 0, 127]
    assert t.tolist() == [1234, 99999, 4_000_000_000] and p.tolist() == [1, 0, 0]


def test_writer_produces_the_same_bytes_as_the_hand_encoding(tmp_path):
    write_aedat2_dvs128(tmp_path / "w.aedat", [5, 127], [10, 0], [1234, 99999], [1, 0])
    body = (tmp_path / "w.aedat").read_bytes().split(b"\r\n")[-1]
    assert body == struct.pack(">4I", 2804, 1234, 1, 99999)


def _release(root, per_class, seed=0):
    """The release layout: <class>/cifar10_<class>_<i>.aedat; class k fires only in row band k."""
    rng = np.random.default_rng(seed)
    truth = {}
    for k, cls in enumerate(CIFAR10_CLASSES):
        for i in range(per_class):
            n = int(rng.integers(5, 15))
            x, y = rng.integers(0, 128, n), 12 * k + rng.integers(0, 12, n)
            t, p = np.sort(rng.integers(0, 50_000, n)), rng.integers(0, 2, n)
            write_aedat2_dvs128(root / cls / f"cifar10_{cls}_{i}.aedat", x, y, t, p)
            truth[(cls, i)] = (x, y, t, p)
    return truth


def test_release_layout_split_binning_and_cache(tmp_path, monkeypatch):
    truth = _release(tmp_path / "CIFAR10DVS", per_class=12)
    data = load_event_dataset("cifar10-dvs", tmp_path, T=3, cache_dir=tmp_path / "cache")
    # 12 per class, test_fraction 0.1 -> round(1.2) = 1 test recording per class: the last in natural
    # order (cifar10_<class>_11, not _9 as a plain string sort would give)
    assert data.train_x.shape == (110, 3, 2, 128, 128) and data.test_x.shape == (10, 3, 2, 128, 128)
    assert data.test_y.tolist() == list(range(10)) and np.bincount(data.train_y).tolist() == [11] * 10
    for k, cls in enumerate(CIFAR10_CLASSES):
        x, y, t, p = truth[(cls, 11)]
        expected = np.zeros((3, 2, 128, 128), np.int64)
        bins = 3 * (t - t[0]) // (t[-1] - t[0] + 1)
        np.add.at(expected, (bins, p, y, x), 1)
        np.testing.assert_array_equal(data.test_x[k], expected)
    caches = sorted((tmp_path / "cache" / "events").glob("*.npz"))
    assert len(caches) == 1
    monkeypatch.setattr(events, "_read", lambda *a: pytest.fail("a cached dataset must not be re-read"))
    again = load_event_dataset("cifar10-dvs", tmp_path, T=3, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.train_x, data.train_x)
    monkeypatch.undo()
    other = load_event_dataset("cifar10-dvs", tmp_path, T=3, cache_dir=tmp_path / "cache", test_fraction=0.25)
    assert len(other.test_y) == 30  # round(0.25 * 12) = 3 per class; a new split is a new cache
    assert len(list((tmp_path / "cache" / "events").glob("*.npz"))) == 2


def test_missing_cifar10_dvs_says_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="airplane/.*truck/.*To get it.*figshare"):
        load_event_dataset("cifar10-dvs", tmp_path, T=4, cache_dir=tmp_path / "cache")
    for cls in CIFAR10_CLASSES:
        (tmp_path / cls).mkdir()
    write_aedat2_dvs128(tmp_path / "cat" / "cifar10_cat_0.aedat", [1], [1], [0], [1])
    with pytest.raises(DatasetNotFoundError, match="airplane holds 0 .*aedat"):
        load_event_dataset("cifar10-dvs", tmp_path, T=4, cache_dir=tmp_path / "cache")


def test_pooling_the_sensor_by_hand():
    from spiketandem.data.events import bin_events
    # 128 -> 48: x' = floor(48 x / 128): x = 0, 2 -> 0; x = 3 -> 1; x = 127 -> 47.  y likewise.
    x, y = np.array([0, 2, 3, 127]), np.array([0, 1, 127, 5])
    f = bin_events(x, y, np.arange(4), np.array([1, 1, 0, 1]), T=1, sensor=(128, 128), size=48)
    assert f.shape == (1, 2, 48, 48) and f.sum() == 4
    assert f[0, 1, 0, 0] == 2 and f[0, 0, 47, 1] == 1 and f[0, 1, 1, 47] == 1


def test_pooled_release_has_its_own_cache_and_a_checked_size(tmp_path):
    _release(tmp_path, per_class=2)
    full = load_event_dataset("cifar10-dvs", tmp_path, T=2, cache_dir=tmp_path / "cache")
    pooled = load_event_dataset("cifar10-dvs", tmp_path, T=2, cache_dir=tmp_path / "cache", size=32)
    assert pooled.train_x.shape == (10, 2, 2, 32, 32)
    # sum pooling by 4 x 4 blocks (128 / 32): the pooled frames are block sums of the full ones
    blocks = full.train_x.reshape(10, 2, 2, 32, 4, 32, 4).sum((4, 6))
    np.testing.assert_array_equal(pooled.train_x, blocks)
    assert len(list((tmp_path / "cache" / "events").glob("*.npz"))) == 2
    from spiketandem.data.errors import DatasetFormatError
    with pytest.raises(DatasetFormatError, match="frame size must be a whole number in 1..128"):
        load_event_dataset("cifar10-dvs", tmp_path, T=2, cache_dir=tmp_path / "cache", size=200)
