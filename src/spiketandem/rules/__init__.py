"""Learning rules by name. Each is a small object that configures the student and computes a loss."""
from __future__ import annotations

from ..errors import SpiketandemError
from .ann import ANNRule
from .base import DataInfo, Rule
from .ltl_offline import LTLOffline

RULES: dict[str, type[Rule]] = {r.name: r for r in (ANNRule, LTLOffline)}


def get_rule(name: str) -> type[Rule]:
    if name not in RULES:
        raise SpiketandemError(f"unknown rule {name!r}; choose one of {', '.join(RULES)}")
    return RULES[name]


__all__ = ["RULES", "get_rule", "Rule", "DataInfo"]
