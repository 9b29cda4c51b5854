"""Learning rules by name. Each is a small object that configures the student and computes a loss."""
from __future__ import annotations

from ..errors import SpiketandemError
from .ann import ANNRule
from .base import DataInfo, Rule
from .ltl_offline import LTLOffline
from .decolle import Decolle
from .dspike import Dspike
from .shortcut import Shortcut
from .stbp import STBP
from .tet import TET
from .ltl_online import LTLOnline
from .convert import QCFS, Convert
from .ptl import PTL
from .qat import QAT
from .tandem import Tandem

RULES: dict[str, type[Rule]] = {r.name: r for r in (ANNRule, LTLOffline, LTLOnline)}

RULES.update({r.name: r for r in (STBP, TET, Dspike, Shortcut, Decolle)})  # direct training and DECOLLE
RULES.update({r.name: r for r in (Tandem, PTL, Convert, QCFS, QAT)})  # tandem learning, conversion, quantized ANN


def get_rule(name: str) -> type[Rule]:
    if name not in RULES:
        raise SpiketandemError(f"unknown rule {name!r}; choose one of {', '.join(RULES)}")
    return RULES[name]


__all__ = ["RULES", "get_rule", "Rule", "DataInfo"]
