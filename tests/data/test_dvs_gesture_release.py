"""DVS128 Gesture as originally published: AEDAT 3.1 recordings cut into labelled samples by their csv.

The fixture writes the release's exact binary format (tests/data/aedat31_builders.py); the reader
must decode coordinates, polarity, validity and timestamp overflow, skip non-polarity packets and
unused slots, and keep exactly the events with ``startTime_usec <= t < endTime_usec`` of each row."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from aedat31_builders import HEADER, polarity_packet, special_packet, write_aedat31, write_gesture_trial

from spiketandem.data import events
from spiketandem.data.aedat import read_aedat31_polarity
from spiketandem.data.errors import DatasetFormatError, DatasetNotFoundError
from spiketandem.data.events import bin_events, load_event_dataset

SENSOR = (128, 128)
OVERFLOW = 2 ** 31


def test_hand_built_aedat31_bytes(tmp_path):
    # event A: x=5,   y=10,  ON,  valid: data = 5 << 17 | 10 << 2 | 1 << 1 | 1 = 655360 + 40 + 2 + 1 = 655403
    # event B: x=127, y=0,   OFF, valid: data = 127 << 17 | 1                    = 16646145
    # event C: x=3,   y=3,   ON,  invalid (bit 0 clear): data = 3 << 17 | 3 << 2 | 2 = 393230 -> dropped
    # event D: x=0,   y=127, OFF, valid, in a packet with eventTSOverflow = 1: t = 2^31 + 7
    polarity = struct.pack("<hhiiiiii", 1, 1, 8, 4, 0, 4, 3, 2) + struct.pack(
        "<IiIiIiIi", 655403, 1000, 16646145, 2000, 393230, 3000, 0xFFFFFFFF, 0)  # 4th slot unused
    special = struct.pack("<hhiiiiii", 0, 1, 8, 4, 0, 1, 1, 1) + struct.pack("<Ii", 0x05, 1500)
    wrapped = struct.pack("<hhiiiiii", 1, 1, 8, 4, 1, 1, 1, 1) + struct.pack("<Ii", 127 << 2 | 1, 7)
    path = tmp_path / "hand.aedat"
    path.write_bytes(HEADER + polarity + special + wrapped)
    x, y, t, p = read_aedat31_polarity(path)
    assert x.tolist() == [5, 127, 0] and y.tolist() == [10, 0, 127]
    assert t.tolist() == [1000, 2000, OVERFLOW + 7] and p.tolist() == [1, 0, 0]


def test_truncated_and_foreign_files_are_refused(tmp_path):
    write_aedat31(tmp_path / "ok.aedat", [polarity_packet([1, 2], [3, 4], [10, 20], [1, 0])])
    blob = (tmp_path / "ok.aedat").read_bytes()
    (tmp_path / "cut.aedat").write_bytes(blob[:-3])
    with pytest.raises(ValueError, match="truncated"):
        read_aedat31_polarity(tmp_path / "cut.aedat")
    (tmp_path / "v2.aedat").write_bytes(b"#!AER-DAT2.0\r\n" + bytes(16))
    with pytest.raises(ValueError, match="not an AEDAT 3.1 file"):
        read_aedat31_polarity(tmp_path / "v2.aedat")


def _window_events(rng, cls, start, end, n_on, n_off):
    """Events of one gesture: class k fires in the row band 10k..10k+9; the first at ``start``, the last
    at ``end - 1`` (both inside the window)."""
    n = n_on + n_off
    t = np.sort(np.concatenate([[start, end - 1], rng.integers(start, end, n - 2)]))
    x, y = rng.integers(0, 128, n), 10 * (cls - 1) + rng.integers(0, 10, n)
    p = rng.permutation(np.r_[np.ones(n_on, int), np.zeros(n_off, int)])
    return x, y, t, p


def _packets(x, y, t, p, valid, per_packet=7):
    """Time-ordered events cut into polarity packets (one overflow each), a special packet after the first,
    and unused slots in the last."""
    order = np.argsort(t, kind="stable")
    x, y, t, p, valid = x[order], y[order], t[order], p[order], valid[order]
    packets = []
    for overflow in np.unique(t >> 31):
        idx = np.flatnonzero((t >> 31) == overflow)
        for chunk in np.array_split(idx, max(1, -(-len(idx) // per_packet))):
            packets.append(polarity_packet(x[chunk], y[chunk], t[chunk], p[chunk], valid[chunk]))
    packets.insert(1, special_packet(t0=int(t[0]) & 0x7FFFFFFF))
    packets[-1].spare = 3
    return packets


TRIALS = {  # name: (split, [(class, start_us, end_us, n_on, n_off)], times of events outside every window)
    "user01_fluorescent": ("train", [(1, 1_000_000, 1_500_000, 6, 4), (5, 2_000_000, 2_600_000, 3, 9),
                                     (11, 3_000_000, 3_200_000, 5, 5)], [500_000, 1_500_000, 1_800_000, 4_000_000]),
    "user01_led": ("train", [(2, 100, 50_100, 2, 3), (3, 60_000, 90_000, 7, 1)], [50_100, 95_000]),
    "user02_natural": ("test", [(11, OVERFLOW - 10_000, OVERFLOW + 10_000, 8, 8),
                                (4, OVERFLOW + 20_000, OVERFLOW + 30_000, 4, 2)], [OVERFLOW + 15_000]),
}


def _release(root, seed=0):
    """The release layout in ``root`` (= DvsGesture/); returns the expected samples per split."""
    rng = np.random.default_rng(seed)
    expected = {"train": [], "test": []}
    for name, (split, windows, outside) in TRIALS.items():
        parts = []
        for cls, start, end, n_on, n_off in windows:
            x, y, t, p = _window_events(rng, cls, start, end, n_on, n_off)
            expected[split].append((cls - 1, x, y, t, p))
            parts.append((x, y, t, p, np.ones(len(t), int)))
            # an invalidated event inside the window: must not count
            parts.append((np.array([1]), np.array([1]), np.array([start + 1]), np.array([1]), np.array([0])))
        m = len(outside)
        parts.append((rng.integers(0, 128, m), rng.integers(0, 128, m), np.array(outside), np.ones(m, int),
                      np.ones(m, int)))
        x, y, t, p, valid = (np.concatenate(col) for col in zip(*parts))
        write_gesture_trial(root, name, [(c, s, e) for c, s, e, _, _ in windows], _packets(x, y, t, p, valid))
    (root / "trials_to_train.txt").write_text("user01_fluorescent.aedat\nuser01_led.aedat\n\n")
    (root / "trials_to_test.txt").write_text("user02_natural.aedat\n")
    (root / "README.txt").write_text("DVS128 Gesture (synthetic stand-in)\n")
    (root / "._user01_fluorescent.aedat").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS litter
    return expected


def test_original_release_cut_into_labelled_samples(tmp_path, monkeypatch):
    expected = _release(tmp_path / "DvsGesture")
    data = load_event_dataset("dvs-gesture", tmp_path, T=3, cache_dir=tmp_path / "cache")
    assert data.train_x.shape == (5, 3, 2, 128, 128) and data.test_x.shape == (2, 3, 2, 128, 128)
    assert data.train_y.tolist() == [0, 4, 10, 1, 2] and data.test_y.tolist() == [10, 3]  # class 1..11 -> 0..10
    for split, frames in (("train", data.train_x), ("test", data.test_x)):
        for got, (_, x, y, t, p) in zip(frames, expected[split]):
            assert int(got.sum()) == len(t)                         # exactly the window's events
            assert int(got[:, 1].sum()) == int(p.sum())             # ON events in channel 1
            assert int(got[:, 0].sum()) == int((p == 0).sum())      # OFF events in channel 0
            np.testing.assert_array_equal(got, bin_events(x, y, t, p, 3, SENSOR))  # coordinates and times too
    # the window spanning the timestamp overflow: 8 + 8 events, across packets with overflow 0 and 1
    assert int(data.test_x[0].sum()) == 16

    monkeypatch.setattr(events, "read_aedat31_polarity", lambda *a: pytest.fail("a cached dataset was re-read"))
    again = load_event_dataset("dvs-gesture", tmp_path, T=3, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(again.train_x, data.train_x)


def test_changed_labels_are_read_again(tmp_path):
    root = tmp_path / "DvsGesture"
    _release(root)
    first = load_event_dataset("dvs-gesture", root, T=2, cache_dir=tmp_path / "cache")
    csv = root / "user01_led_labels.csv"
    csv.write_bytes(csv.read_bytes().replace(b"\r\n3,", b"\r\n7,"))
    second = load_event_dataset("dvs-gesture", root, T=2, cache_dir=tmp_path / "cache")
    assert first.train_y.tolist()[-1] == 2 and second.train_y.tolist()[-1] == 6


def test_count_bins_and_pooling_apply_to_the_release(tmp_path):
    expected = _release(tmp_path / "DvsGesture")
    data = load_event_dataset("dvs-gesture", tmp_path, T=2, mode="count", size=32, cache_dir=tmp_path / "cache")
    assert data.train_x.shape == (5, 2, 2, 32, 32)
    _, x, y, t, p = expected["train"][1]
    np.testing.assert_array_equal(data.train_x[1], bin_events(x, y, t, p, 2, SENSOR, "count", 32))


def test_bad_label_row_is_named(tmp_path):
    root = tmp_path / "DvsGesture"
    _release(root)
    csv = root / "user01_led_labels.csv"
    csv.write_bytes(csv.read_bytes().replace(b"\r\n3,", b"\r\n12,"))
    with pytest.raises(DatasetFormatError, match=r"user01_led_labels.csv, line 3.*1\.\.11"):
        load_event_dataset("dvs-gesture", root, T=2, cache_dir=tmp_path / "cache")


def test_listed_but_missing_recording_is_named(tmp_path):
    root = tmp_path / "DvsGesture"
    _release(root)
    (root / "user02_natural.aedat").unlink()
    with pytest.raises(DatasetNotFoundError, match="trials_to_test.txt names files.*user02_natural.aedat"):
        load_event_dataset("dvs-gesture", tmp_path, T=2, cache_dir=tmp_path / "cache")


def test_corrupt_recording_is_named(tmp_path):
    root = tmp_path / "DvsGesture"
    _release(root)
    blob = (root / "user01_led.aedat").read_bytes()
    (root / "user01_led.aedat").write_bytes(blob[:-5])
    with pytest.raises(DatasetFormatError, match="user01_led.aedat.*truncated"):
        load_event_dataset("dvs-gesture", root, T=2, cache_dir=tmp_path / "cache")


def test_not_found_message_names_both_layouts(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_event_dataset("dvs-gesture", tmp_path, T=2, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "ibmGestureTrain" in message and "trials_to_train.txt" in message and "DvsGesture.tar.gz" in message
