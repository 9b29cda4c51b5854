"""Energy per inference from operation counts.

    E = MACs * e_MAC + SynOps * e_AC

Defaults are the 45 nm CMOS figures the LTL paper uses (its ref. [23], after Horowitz, ISSCC 2014):
a 32-bit floating-point multiply-accumulate costs 4.6 pJ and an accumulate 0.9 pJ, so a MAC is about
5x an AC.  Only arithmetic is modelled: memory access, data movement and neuron-state updates are
not, so the figures compare operation energy, not a chip's power.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import SpiketandemError

MAC_PJ = 4.6
AC_PJ = 0.9


@dataclass(frozen=True)
class EnergyModel:
    """Energy of one multiply-accumulate (``mac_pj``) and one accumulate (``ac_pj``), in picojoules."""

    mac_pj: float = MAC_PJ
    ac_pj: float = AC_PJ

    def __post_init__(self):
        for name in ("mac_pj", "ac_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise SpiketandemError(f"energy model: {name} (--{name.replace('_', '-')}) must be a non-negative, "
                                       f"finite number of picojoules, "
                                       f"got {value!r}")

    def picojoules(self, macs: float, synops: float) -> float:
        """E = macs * e_MAC + synops * e_AC, in pJ."""
        return macs * self.mac_pj + synops * self.ac_pj

    def compare(self, student_macs: float, student_synops: float, teacher_macs: float) -> dict:
        """Per-inference energy of a student (SynOps + any MACs) and its teacher (MACs), in microjoules,
        and their ratio student / teacher."""
        student = self.picojoules(student_macs, student_synops)
        teacher = self.picojoules(teacher_macs, 0)
        return {**asdict(self), "student_uj": student * 1e-6, "teacher_uj": teacher * 1e-6,
                "ratio": student / teacher if teacher > 0 else None}
