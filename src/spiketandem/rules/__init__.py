"""Learning rules by name. Each is a small object that configures the student and computes a loss.

Every rule is declared in ``catalog.py`` (its name, its class, its options) without importing torch;
``RULES`` (name -> class) imports the classes the first time it is used, so that the command line can
list and check rules and their options without loading torch.

Adding a rule: write its file (a ``Rule`` subclass with ``options = CATALOG[name].options``) and add its
entry to ``catalog.CATALOG``; the CLI flags, YAML keys, option checks and help come from that entry."""
from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING

from ..errors import SpiketandemError
from .catalog import CATALOG, CONFIG_CHECKS, Option, RuleEntry, check_pipeline, recipe_values

if TYPE_CHECKING:
    from .base import DataInfo, Rule

    RULES: dict[str, type[Rule]]


def _entry(name: str) -> RuleEntry:
    if name not in CATALOG:
        raise SpiketandemError(f"unknown rule {name!r}; choose one of {', '.join(CATALOG)}")
    return CATALOG[name]


def _load(entry: RuleEntry) -> type[Rule]:
    module, _, attr = entry.implementation.partition(":")
    cls = getattr(importlib.import_module(f".{module}", __name__), attr)
    if cls.name != entry.name or cls.options != entry.options:  # a class that disagrees with its entry
        raise RuntimeError(f"rule class {entry.implementation} (name {cls.name!r}) does not match its catalog "
                           f"entry {entry.name!r}: set name = {entry.name!r} and options = CATALOG[name].options")
    return cls


def _rules() -> dict[str, type[Rule]]:
    if "RULES" not in globals():  # imported once; later lookups of RULES find the dict itself
        globals()["RULES"] = {name: _load(entry) for name, entry in CATALOG.items()}
    return globals()["RULES"]


def __getattr__(name: str):
    """``RULES``, ``Rule``, ``DataInfo`` and every rule class by its class name (``LTLOffline``), imported
    on first use."""
    if name == "RULES":
        return _rules()
    if name in ("Rule", "DataInfo"):
        from . import base
        return getattr(base, name)
    entry = next((e for e in CATALOG.values() if e.implementation.partition(":")[2] == name), None)
    if entry is not None:
        return _rules()[entry.name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_rule(name: str) -> type[Rule]:
    return _rules()[_entry(name).name]


def all_options() -> dict[str, Option]:
    """name -> Option, over every registered rule (rules sharing an option share its declaration)."""
    return {o.name: o for entry in CATALOG.values() for o in entry.options}


def rules_declaring(name: str) -> list[str]:
    return [e.name for e in CATALOG.values() if e.option_named(name) is not None]


def configure(cfg, **changes):
    """``cfg`` with ``changes`` (config fields) and its rule options checked against the rule that runs, each
    converted to its type: one new config.

    An option the rule does not declare is an error naming the rules that do (or, for a name no rule
    declares, the valid config fields): e.g. ``--tet-lambda`` on ``ltl-offline``; so is a field the rule only
    runs one way (``RuleEntry.fixed``: conversion takes ``--neuron if``)."""
    from ..config import FIELD_NAMES
    entry = _entry(cfg.rule)
    checked = {}
    for name, value in cfg.options.items():
        opt = entry.option_named(name)
        if opt is None:
            users = rules_declaring(name)
            flag = "--" + name.replace("_", "-")
            if users:
                raise SpiketandemError(f"option {flag} ({name}) applies to rule(s) {', '.join(users)}, not to "
                                       f"{cfg.rule}; drop it or choose one of those rules with --rule")
            own = ", ".join(o.name for o in entry.options) or "none"
            raise SpiketandemError(f"unknown config field or option {name!r}; config fields: {', '.join(FIELD_NAMES)}"
                                   f"; options of rule {cfg.rule}: {own}")
        checked[name] = opt.check(value)
    checked.update(recipe_values(entry.options, checked))
    cfg = dataclasses.replace(cfg, **changes, options=checked)
    for field, needed in entry.fixed:
        if getattr(cfg, field) != needed:
            flag = "--" + field.replace("_", "-")
            raise SpiketandemError(f"rule {cfg.rule} runs only with {flag} {needed} (got {getattr(cfg, field)!r}); "
                                   f"pass {flag} {needed}")
    if cfg.rule in CONFIG_CHECKS:
        CONFIG_CHECKS[cfg.rule](cfg, entry)
    check_pipeline(cfg, entry)
    return cfg


__all__ = ["RULES", "CATALOG", "get_rule", "configure", "all_options", "rules_declaring", "Rule", "DataInfo", "Option"]
