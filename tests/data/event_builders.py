"""Writers of event recordings in the official formats (N-MNIST's 40-bit records, CIFAR10-DVS's AEDAT 2.0
DVS128), for the event tests: written from the format descriptions, independently of the readers under test."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def encode_dvs128(x, y, p) -> np.ndarray:
    """The DVS128 address of events at ``(x, y)`` with polarity ``p`` (1 = ON): the inverse of
    ``spiketandem.data.aedat.decode_dvs128``, for writing synthetic recordings."""
    x, y, p = (np.asarray(v, dtype=np.int64) for v in (x, y, p))
    if len(x) and (x.min() < 0 or x.max() > 127 or y.min() < 0 or y.max() > 127):
        raise ValueError("DVS128 coordinates lie in 0..127")
    return (((y & 0x7F) << 8) | ((127 - x) << 1) | (1 - (p > 0).astype(np.int64))).astype(np.uint32)


def write_aedat2_dvs128(path: str | Path, x, y, t, p) -> None:
    """Write events as an AEDAT 2.0 DVS128 recording (jAER's header line, CRLF, big-endian records);
    for the tests' recordings.  ``t`` in microseconds, below 2^32."""
    address = encode_dvs128(x, y, p)
    t = np.asarray(t, dtype=np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 2 ** 32):
        raise ValueError("AEDAT 2.0 timestamps are unsigned 32-bit microseconds")
    records = np.empty(len(t), dtype=[("address", ">u4"), ("timeStamp", ">u4")])
    records["address"], records["timeStamp"] = address, t
    header = b"#!AER-DAT2.0\r\n# synthetic DVS128 recording written by spiketandem\r\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(header + records.tobytes())


def write_nmnist_recording(path: str | Path, x, y, t, p) -> None:
    """Write events in N-MNIST's 40-bit format (x: 8 bits, y: 8 bits, polarity: 1 bit, t: 23 bits in
    microseconds), for the tests' recordings.  Timestamps must be below 2^23."""
    x, y, t, p = (np.asarray(v, dtype=np.int64) for v in (x, y, t, p))
    if len(t) and t.max() >= 2 ** 23:
        raise ValueError("N-MNIST timestamps are 23-bit (< 8388608 us)")
    raw = np.zeros((len(t), 5), dtype=np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = ((p & 1) << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(raw.tobytes())


def write_synthetic_nmnist(root: str | Path, per_class: dict, events: tuple[int, int], seed: int = 0) -> None:
    """A synthetic N-MNIST release under ``root`` (``Train/`` and ``Test/``, one folder per digit, 40-bit event
    records): each digit fires ``events`` = (low, high) random events in its own 8 x 8 cell of a 4 x 4 grid over
    the 34 x 34 sensor, within 0.3 s.  ``per_class``: recordings per digit by split, e.g. {"Train": 8, "Test": 3}."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for digit in range(10):
            for i in range(count):
                n = int(rng.integers(*events))
                row, col = divmod(digit, 4)
                x, y = col * 8 + rng.integers(0, 8, n), row * 8 + rng.integers(0, 8, n)
                write_nmnist_recording(Path(root) / split / str(digit) / f"{i:05d}.bin", x, y,
                                       np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 2, n))
