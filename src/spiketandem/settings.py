"""One declaration per setting: the record a run setting or a rule option is declared with, torch-free.

A ``Setting`` gives the name (the config field or option, the YAML key, and the flag ``--NAME`` with dashes),
its type, default, help text, allowed values (``choices``; ``minimum``/``maximum`` inclusive, ``above``/``below``
exclusive; ``null``: what None means where None is allowed) and where its flag stands (``group`` of the
``--help`` page, ``scope`` of commands, ``metavar``, ``shown``: the default in words).  ``RunConfig``'s fields
are declared with :func:`setting` (``config.py``), rule options as ``Option`` (the same record, owned by a
rule in ``rules/catalog.py``); validation, the command-line flags, their help and ranges, and the one-line
errors are derived from it.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from .errors import SpiketandemError

# which run commands show a setting's flag: every one (demo, teacher, train, compare), the commands that train
# a spiking student (demo, train, compare), or `teacher` alone
SCOPES = ("all", "student", "teacher")


@dataclass(frozen=True)
class Setting:
    """A setting (see the module docstring).  ``None`` as an option's default means "decided by the rule"."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    null: str | None = None
    group: str | None = None
    scope: str = "all"
    metavar: str | None = None
    shown: str | None = None
    nargs: str | None = None
    hint: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def integer(self) -> bool:
        return self.type is int

    def allowed(self) -> str:
        """What values are allowed, in words (for help and error messages)."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        lo = f"> {self.above}" if self.above is not None else f">= {self.minimum}" if self.minimum is not None else ""
        hi = f"< {self.below}" if self.below is not None else f"<= {self.maximum}" if self.maximum is not None else ""
        bounds = " and ".join(b for b in (lo, hi) if b)
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(self.type,
                                                                                                self.type.__name__)
        return kind + (f" {bounds}" if bounds else "")

    def bounds(self) -> str:
        """The range in interval notation ("in [0, 1)", ">= 1") for ``--help``; "" when unbounded."""
        if self.choices or self.type not in (int, float):
            return ""
        lo, lo_open = (self.above, True) if self.above is not None else (self.minimum, False)
        hi, hi_open = (self.below, True) if self.below is not None else (self.maximum, False)
        if lo is not None and hi is not None:
            return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        if lo is not None:
            return f"{'>' if lo_open else '>='} {lo:g}"
        if hi is not None:
            return f"{'<' if hi_open else '<='} {hi:g}"
        return ""

    def check(self, value):
        """A rule option's ``value`` converted to its type; one clear error if it is not allowed."""
        if value is None:
            return None
        problem = f"option {self.flag} ({self.name}): {value!r} is not allowed; it must be {self.allowed()}"
        if self.type is bool:
            if not isinstance(value, bool):
                raise SpiketandemError(problem)
            return value
        if isinstance(value, bool) or (self.type in (int, float) and isinstance(value, str)):
            raise SpiketandemError(problem)
        try:
            converted = self.type(value)
        except (TypeError, ValueError):
            raise SpiketandemError(problem) from None
        if self.type is int and converted != value:  # 4.5 is not an int option
            raise SpiketandemError(problem)
        if self.type is float and not math.isfinite(converted):
            raise SpiketandemError(problem)
        if self.choices and converted not in self.choices:
            raise SpiketandemError(problem)
        if not self._in_range(converted):
            raise SpiketandemError(problem)
        return converted

    def _in_range(self, value) -> bool:
        return not ((self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum)
                    or (self.above is not None and value <= self.above) or (self.below is not None and value >= self.below))

    # ---- a run config's field ---------------------------------------------------------------------------

    def field_allowed(self) -> str:
        """A numeric field's allowed values in words: 'a positive integer', 'a number in (0, 1]', ..."""
        integer, minimum, maximum, above, below = self.integer, self.minimum, self.maximum, self.above, self.below
        kind = "integer" if integer else "number"
        finite = "" if integer else ", finite"
        if maximum is None and below is None:
            if above == 0 or (integer and minimum == 1):
                return f"a positive{finite} {kind}"
            if minimum == 0:
                return f"a non-negative{finite} {kind}"
        lo = f"({above}" if above is not None else f"[{minimum}" if minimum is not None else "(-inf"
        hi = f"{below})" if below is not None else f"{maximum}]" if maximum is not None else "inf)"
        return f"a{'n' if integer else ''} {kind} in {lo}, {hi}"

    def check_field(self, value):
        """A config field's ``value`` as a plain value if it is allowed, else one error naming the field, the
        value and what is allowed.  Booleans are not numbers; an integer field takes no 4.5 (nor 4.0), and a
        YAML string such as '8' is refused rather than guessed."""
        name = self.name
        if self.choices is not None:
            if isinstance(value, (list, dict, set)) or value not in self.choices:
                shown = ", ".join(str(a) for a in self.choices if a is not None)
                raise SpiketandemError(f"config field {name!r}: {value!r} is not allowed; choose one of {shown}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise SpiketandemError(f"config field {name!r} must be true or false, got {value!r}")
            return value
        if self.type is str:
            if value is None and self.default is None:
                return None
            if not isinstance(value, str):
                allowed = "a string" + (" (or null)" if self.default is None else "")
                raise SpiketandemError(f"config field {name!r} must be {allowed}, got {value!r}")
            return value
        if value is None and self.null is not None:
            return None
        allowed = self.field_allowed() + (f" (or null: {self.null})" if self.null else "") + self.hint
        problem = SpiketandemError(f"config field {name!r} must be {allowed}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (numbers.Integral if self.integer else numbers.Real)):
            raise problem
        value = int(value) if self.integer else float(value)
        if not self.integer and not math.isfinite(value):
            raise problem
        if not self._in_range(value):
            raise problem
        return value


def setting(default, help: str = "", *, default_factory=None, **declared):
    """A ``RunConfig`` field declared with its :class:`Setting` (its name and type come from the field)."""
    metadata = {"setting": dict(help=help, **declared)}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def settings_of(cls) -> dict[str, Setting]:
    """The :class:`Setting` of every field of a dataclass declared with :func:`setting`, by name, in order."""
    from dataclasses import MISSING, fields
    found = {}
    for f in fields(cls):
        declared = f.metadata.get("setting")
        if declared is None:
            continue
        declared = dict(declared)
        default = f.default if f.default is not MISSING else f.default_factory()
        kind = declared.pop("type", None) or {"int": int, "float": float, "bool": bool, "str": str}.get(
            str(f.type).split(" ")[0], object)  # a list field names its items' type
        found[f.name] = Setting(f.name, kind, default, **declared)
    return found
