"""AEDAT recordings of a DVS128 sensor: 2.0 (the CIFAR10-DVS release, Li et al. 2017) and 3.1 (the
original DVS128 Gesture release, Amir et al. 2017).

AEDAT 2.0
---------

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

AEDAT 3.1
---------
iniVation's AEDAT 3.1 spec (https://docs.inivation.com/software/software-advanced-usage/file-formats/aedat-3.1.html)
and libcaer's ``events/common.h`` / ``events/polarity.h``: header lines (the first is
``#!AER-DAT3.1``, each ends in CRLF, the last is ``#!END-HEADER\r\n``), then event packets, all
little-endian.  A packet is a 28-byte header::

    int16 eventType   int16 eventSource   int32 eventSize   int32 eventTSOffset
    int32 eventTSOverflow   int32 eventCapacity   int32 eventNumber   int32 eventValid

followed by ``eventCapacity * eventSize`` bytes of events, of which the first ``eventNumber`` are
in use.  Packets of ``eventType`` 1 hold polarity events of 8 bytes: ``uint32 data`` and
``int32 timestamp`` (microseconds; at byte ``eventTSOffset``), with::

    bit 0        valid mark (0: the event was invalidated, e.g. by a filter; dropped)
    bit 1        polarity, 1 = ON
    bits 2-16    y
    bits 17-31   x
    time         timestamp | eventTSOverflow << 31

Other packet types (special, frame, IMU events...) are skipped by their size.  The packets are
walked in a Python loop (a recording holds thousands); the events of each are decoded with numpy.
"""
from __future__ import annotations

import struct
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


def read_aedat2_dvs128(path: str | Path):
    """Events ``(x, y, t, p)`` of one AEDAT 2.0 DVS128 recording (t in microseconds, p 1 = ON)."""
    import tonic.io
    version, start = tonic.io.read_aedat_header_from_file(str(path))[:2]  # newer tonic also returns a start time
    if not 2 <= version < 3:
        raise ValueError(f"AEDAT version {version}, expected 2.x (the CIFAR10-DVS release format)")
    records = tonic.io.get_aer_events_from_file(str(path), version, start)
    x, y, p, keep = decode_dvs128(records["address"])
    return x[keep], y[keep], records["timeStamp"].astype(np.int64)[keep], p[keep]


AEDAT31_VERSION_LINE = b"#!AER-DAT3.1"
AEDAT31_HEADER_END = b"#!END-HEADER\r\n"
_PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes, see the module docstring
POLARITY_EVENT = 1


def read_aedat31_polarity(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Valid polarity events ``(x, y, t, p)`` of one AEDAT 3.1 recording, in file order: int64 arrays,
    ``t`` in microseconds (with the packets' timestamp overflow), ``p`` 1 = ON.

    Raises ``ValueError`` naming the problem when the file is not AEDAT 3.1 or is truncated."""
    blob = Path(path).read_bytes()
    if not blob.startswith(AEDAT31_VERSION_LINE):
        first = blob[:blob.find(b"\n")] if b"\n" in blob[:200] else blob[:40]
        raise ValueError(f"not an AEDAT 3.1 file: its first line is {first!r}, expected {AEDAT31_VERSION_LINE!r}")
    end = blob.find(AEDAT31_HEADER_END)
    if end < 0:
        raise ValueError("the AEDAT 3.1 header has no '#!END-HEADER' line (truncated file?)")
    offset, size = end + len(AEDAT31_HEADER_END), len(blob)
    data, stamps = [], []
    while offset < size:
        if offset + _PACKET_HEADER.size > size:
            raise ValueError(f"truncated: {size - offset} bytes at offset {offset} are too few for a packet header")
        kind, _, event_size, ts_offset, overflow, capacity, number, _ = _PACKET_HEADER.unpack_from(blob, offset)
        start = offset + _PACKET_HEADER.size
        stop = start + capacity * event_size
        if event_size <= 0 or capacity < 0 or not 0 <= number <= capacity or overflow < 0:
            raise ValueError(f"corrupt packet header at offset {offset}: eventSize {event_size}, eventCapacity "
                             f"{capacity}, eventNumber {number}, eventTSOverflow {overflow}")
        if stop > size:
            raise ValueError(f"truncated: the packet at offset {offset} needs {stop - start} bytes of events, "
                             f"{size - start} remain")
        if kind == POLARITY_EVENT and number:
            if event_size < 8 or not 0 <= ts_offset <= event_size - 4:
                raise ValueError(f"polarity packet at offset {offset} has eventSize {event_size} and eventTSOffset "
                                 f"{ts_offset}; expected 8 and 4")
            layout = np.dtype({"names": ["data", "ts"], "formats": ["<u4", "<i4"], "offsets": [0, ts_offset],
                               "itemsize": event_size})
            events = np.frombuffer(blob, dtype=layout, count=number, offset=start)
            data.append(events["data"])
            stamps.append(events["ts"].astype(np.int64) | (np.int64(overflow) << 31))
        offset = stop
    if not data:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy(), empty.copy()
    word, t = np.concatenate(data), np.concatenate(stamps)
    keep = (word & 1).astype(bool)
    word, t = word[keep], t[keep]
    x = ((word >> 17) & 0x7FFF).astype(np.int64)
    y = ((word >> 2) & 0x7FFF).astype(np.int64)
    p = ((word >> 1) & 1).astype(np.int64)
    return x, y, t, p
