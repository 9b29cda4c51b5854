"""Learning rules by name. Each is a small object that configures the student and computes a loss.

Adding a rule: write its file (a ``Rule`` subclass with its ``options``) and add it to ``RULES`` here;
the CLI flags, YAML keys, option checks and help come from its declaration."""
from __future__ import annotations

import dataclasses

from ..errors import SpiketandemError
from .ann import ANNRule
from .base import DataInfo, Option, Rule
from .convert import QCFS, Convert
from .decolle import Decolle
from .dspike import Dspike
from .ltl_offline import LTLOffline
from .ltl_online import LTLOnline
from .ptl import PTL
from .qat import QAT
from .shortcut import Shortcut
from .stbp import STBP
from .tandem import Tandem
from .tet import TET

RULES: dict[str, type[Rule]] = {r.name: r for r in (
    ANNRule, LTLOffline, LTLOnline,            # the teacher's rule; offline and online LTL
    STBP, TET, Dspike, Shortcut, Decolle,      # direct training and DECOLLE
    Tandem, PTL, Convert, QCFS, QAT,           # tandem learning, conversion, quantized ANN
)}


def get_rule(name: str) -> type[Rule]:
    if name not in RULES:
        raise SpiketandemError(f"unknown rule {name!r}; choose one of {', '.join(RULES)}")
    return RULES[name]


def all_options() -> dict[str, Option]:
    """name -> Option, over every registered rule (rules sharing an option share its declaration)."""
    return {o.name: o for rule in RULES.values() for o in rule.options}


def rules_declaring(name: str) -> list[str]:
    return [r.name for r in RULES.values() if r.option_named(name) is not None]


def configure(cfg):
    """``cfg`` with its rule options checked against the rule that runs, each converted to its type.

    An option the rule does not declare is an error naming the rules that do (or, for a name no rule
    declares, the valid config fields): e.g. ``--tet-lambda`` on ``ltl-offline``."""
    from ..config import FIELD_NAMES
    rule = get_rule(cfg.rule)
    checked = {}
    for name, value in cfg.options.items():
        opt = rule.option_named(name)
        if opt is None:
            users = rules_declaring(name)
            flag = "--" + name.replace("_", "-")
            if users:
                raise SpiketandemError(f"option {flag} ({name}) applies to rule(s) {', '.join(users)}, not to "
                                       f"{cfg.rule}; drop it or choose one of those rules with --rule")
            own = ", ".join(o.name for o in rule.options) or "none"
            raise SpiketandemError(f"unknown config field or option {name!r}; config fields: {', '.join(FIELD_NAMES)}"
                                   f"; options of rule {cfg.rule}: {own}")
        checked[name] = opt.check(value)
    return dataclasses.replace(cfg, options=checked)


__all__ = ["RULES", "get_rule", "configure", "all_options", "Rule", "DataInfo", "Option"]
