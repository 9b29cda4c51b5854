"""AEDAT 2.0 recordings of a DVS128 sensor (the CIFAR10-DVS release, Li et al. 2017).

Container (iniVation's AEDAT 2.0 spec, https://docs.inivation.com/software/software-advanced-usage/file-formats/aedat-2.0.html):
header lines starting with ``#`` (the first is ``#!AER-DAT2.0``, lines end in CRLF), then one
8-byte record per event: a big-endian uint32 *address* followed by a big-endian uint32 *timestamp*
in microseconds.  The header and the records are parsed by tonic
(``tonic.io.read_aedat_header_from_file`` / ``get_aer_events_from_file``).

Address of a DVS128 event, as jAER's ``DVS128.Extractor`` decodes it (xmask 0xfe, ymask 0x7f00,
flipx, fliptype), which we follow exactly::

    bit 0       raw polarity: 0 = ON (brightness increase), 1 = OFF
    bits 1-7    column c;  x = 127 - c   (jAER mirrors the column)
    bits 8-14   row;       y = row
    bit 15+     special (sync/stereo) events, which carry no pixel: dropped

We decode the address ourselves because tonic 1.7's ``read_dvs_128`` fails on every file (it
unpacks two of the three values ``read_aedat_header_from_file`` returns) and swaps x and y
relative to jAER.  Orientation does not matter for training (it is the same for every recording).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

SENSOR = (128, 128)  # (H, W) of the DVS128
SPECIAL_BITS = 0xFFFF8000


def decode_dvs128(address: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split DVS128 addresses into ``(x, y, polarity, keep)``: polarity 1 = ON, ``keep`` is False for
    special events (any bit from 15 up set)."""
    address = np.asarray(address, dtype=np.uint32)
    keep = (address & SPECIAL_BITS) == 0
    x = 127 - ((address & 0xFE) >> 1).astype(np.int64)
    y = ((address & 0x7F00) >> 8).astype(np.int64)
    p = 1 - (address & 1).astype(np.int64)
    return x, y, p, keep


def encode_dvs128(x, y, p) -> np.ndarray:
    """The DVS128 address of events at ``(x, y)`` with polarity ``p`` (1 = ON): the inverse of
    :func:`decode_dvs128`, for writing synthetic recordings."""
    x, y, p = (np.asarray(v, dtype=np.int64) for v in (x, y, p))
    if len(x) and (x.min() < 0 or x.max() > 127 or y.min() < 0 or y.max() > 127):
        raise ValueError("DVS128 coordinates lie in 0..127")
    return (((y & 0x7F) << 8) | ((127 - x) << 1) | (1 - (p > 0).astype(np.int64))).astype(np.uint32)


def read_aedat2_dvs128(path: str | Path):
    """Events ``(x, y, t, p)`` of one AEDAT 2.0 DVS128 recording (t in microseconds, p 1 = ON)."""
    import tonic.io
    version, start = tonic.io.read_aedat_header_from_file(str(path))[:2]  # newer tonic also returns a start time
    if not 2 <= version < 3:
        raise ValueError(f"AEDAT version {version}, expected 2.x (the CIFAR10-DVS release format)")
    records = tonic.io.get_aer_events_from_file(str(path), version, start)
    x, y, p, keep = decode_dvs128(records["address"])
    return x[keep], y[keep], records["timeStamp"].astype(np.int64)[keep], p[keep]


def write_aedat2_dvs128(path: str | Path, x, y, t, p) -> None:
    """Write events as an AEDAT 2.0 DVS128 recording (jAER's header line, CRLF, big-endian records);
    for tests and synthetic data.  ``t`` in microseconds, below 2^32."""
    address = encode_dvs128(x, y, p)
    t = np.asarray(t, dtype=np.int64)
    if len(t) and (t.min() < 0 or t.max() >= 2 ** 32):
        raise ValueError("AEDAT 2.0 timestamps are unsigned 32-bit microseconds")
    records = np.empty(len(t), dtype=[("address", ">u4"), ("timeStamp", ">u4")])
    records["address"], records["timeStamp"] = address, t
    header = b"#!AER-DAT2.0\r\n# synthetic DVS128 recording written by spiketandem\r\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(header + records.tobytes())
