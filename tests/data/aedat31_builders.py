"""Writers of AEDAT 3.1 files and of the original DVS128 Gesture release, for the event tests.

Written from the format description (iniVation's AEDAT 3.1 spec, libcaer's ``common.h`` /
``polarity.h``), independently of the reader under test: a text header ending in
``#!END-HEADER\\r\\n``, then packets of a 28-byte little-endian header (int16 eventType, int16
eventSource, int32 eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber,
eventValid) and ``eventCapacity`` events of ``eventSize`` bytes. A polarity event (type 1) is
``uint32 data`` (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) + ``int32 timestamp``
(the low 31 bits of the time in us; the packet's eventTSOverflow holds the rest).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEADER = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
          b"#Start-Time: 2017-03-01 12:00:00 (TZ+0000)\r\n#!END-HEADER\r\n")


@dataclass
class Packet:
    event_type: int
    data: np.ndarray          # uint32 per event
    timestamps: np.ndarray    # int32 per event (low 31 bits)
    ts_overflow: int = 0
    spare: int = 0            # unused event slots after the events (eventCapacity - eventNumber)

    def to_bytes(self) -> bytes:
        n = len(self.data)
        valid = int((self.data & 1).sum()) if self.event_type == 1 else n
        header = struct.pack("<hhiiiiii", self.event_type, 1, 8, 4, self.ts_overflow, n + self.spare, n, valid)
        events = np.zeros(n + self.spare, dtype=[("data", "<u4"), ("ts", "<i4")])
        events["data"][:n], events["ts"][:n] = self.data, self.timestamps
        events["data"][n:] = 0xFFFFFFFF  # garbage in the unused slots: must never be read
        return header + events.tobytes()


def polarity_packet(x, y, t, p, valid=None, spare: int = 0) -> Packet:
    """One polarity packet; all times must share one overflow ``t >> 31``."""
    x, y, t, p = (np.asarray(v, dtype=np.int64) for v in (x, y, t, p))
    valid = np.ones(len(t), np.int64) if valid is None else np.asarray(valid, np.int64)
    overflow = set((t >> 31).tolist())
    assert len(overflow) <= 1, "a packet holds one timestamp overflow"
    data = (x << 17) | (y << 2) | (p << 1) | valid
    return Packet(1, data.astype(np.uint32), (t & 0x7FFFFFFF).astype(np.int32), overflow.pop() if overflow else 0,
                  spare)


def special_packet(n: int = 3, t0: int = 0) -> Packet:
    """A packet of special events (type 0: timestamp resets, external triggers...): to be skipped."""
    return Packet(0, np.full(n, 0x05, np.uint32), np.arange(t0, t0 + n, dtype=np.int32))


def write_aedat31(path: Path, packets: list[Packet]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HEADER + b"".join(packet.to_bytes() for packet in packets))


def write_gesture_trial(root: Path, name: str, windows, packets: list[Packet]) -> None:
    """``root/<name>.aedat`` and ``root/<name>_labels.csv`` (rows class,startTime_usec,endTime_usec)."""
    write_aedat31(root / f"{name}.aedat", packets)
    rows = ["class,startTime_usec,endTime_usec", *(f"{c},{s},{e}" for c, s, e in windows)]
    (root / f"{name}_labels.csv").write_text("\r\n".join(rows) + "\r\n")
