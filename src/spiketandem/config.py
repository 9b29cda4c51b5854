"""Run configuration: one dataclass, YAML in and out, validation with messages that name the field."""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import yaml

# torch-free, so that the command line can parse and help without importing torch
from .choices import (AMP_MODES, BIN_MODES, ENCODINGS, INITS, LR_SCHEDULES, NEURON_BACKENDS, NEURON_KINDS, OPTIMIZERS,
                      RESETS, SURROGATES, SYNOPS_CONVENTIONS)
from .errors import SpiketandemError

if TYPE_CHECKING:
    from .neuron import NeuronConfig

# fields whose value must be one of a fixed set, each list declared once in ``choices.py`` (beside the module
# that implements it); rules, their options and datasets are checked by their registries (``rules.configure``,
# ``data.registry``)
CHOICES = {
    "neuron": NEURON_KINDS,
    "reset": RESETS,
    "neuron_backend": NEURON_BACKENDS,
    "surrogate": SURROGATES,
    "init": INITS,
    "encoding": ENCODINGS,
    "optimizer": OPTIMIZERS + (None,),
    "lr_schedule": LR_SCHEDULES,
    "amp": AMP_MODES,
    "bins": BIN_MODES,
    "synops_convention": SYNOPS_CONVENTIONS,
}
# numeric fields: integer or real, the allowed range (``above``/``below`` exclusive, ``minimum``/``maximum``
# inclusive; reals must also be finite) and, where null is allowed, what null means
NUMBERS = {
    "T": dict(integer=True, minimum=1),
    "batch_size": dict(integer=True, minimum=1),
    "pipeline_stages": dict(integer=True, minimum=1, hint=" (1: no layer pipelining)"),
    "teacher_epochs": dict(integer=True, minimum=1),
    "epochs": dict(integer=True, minimum=0, hint=" (0 for rules that train nothing, e.g. convert)"),
    "seed": dict(integer=True, minimum=0, maximum=2 ** 32 - 1),
    "n_train": dict(integer=True, minimum=1, null="the whole training split"),
    "n_test": dict(integer=True, minimum=1, null="the whole test split"),
    "event_size": dict(integer=True, minimum=1, null="the full sensor"),
    "width": dict(minimum=1 / 64, maximum=16, hint=" (a channel multiplier: at 1/64 VGG's narrowest layer keeps one "
                                                   "channel)"),
    "threshold": dict(above=0),
    "tau_m": dict(above=0),
    "dt": dict(above=0),
    "leak": dict(above=0, maximum=1, null="exp(-dt/tau_m)"),
    "surrogate_param": dict(above=0, null="the surrogate's default"),
    "percentile": dict(above=0, maximum=100),
    "lr": dict(above=0, null="the rule's default"),
    "weight_decay": dict(minimum=0, null="the rule's default"),
    "act_clip": dict(above=0, null="a plain ReLU"),
    "act_levels": dict(integer=True, minimum=1, null="full precision"),
    "act_penalty": dict(minimum=0),
}
BOOLEANS = ("download", "progress", "detach_reset", "tensorboard", "channels_last")
STRINGS = ("rule", "dataset", "device")
OPTIONAL_STRINGS = ("name", "data_dir", "arch", "teacher", "out")


def _allowed(integer: bool, minimum=None, maximum=None, above=None, below=None) -> str:
    """The allowed values in words: 'a positive integer', 'a number in (0, 1]', ..."""
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


def _check_number(name: str, value, *, integer=False, minimum=None, maximum=None, above=None, below=None,
                  null: str | None = None, hint: str = ""):
    """``value`` as a plain int/float if it is allowed, else one SpiketandemError naming the field, the value
    and what is allowed.  Booleans are not numbers; an integer field takes no 4.5 (nor 4.0), and a YAML
    string such as '8' is refused rather than guessed."""
    if value is None and null is not None:
        return None
    allowed = _allowed(integer, minimum, maximum, above, below) + (f" (or null: {null})" if null else "") + hint
    problem = SpiketandemError(f"config field {name!r} must be {allowed}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral if integer else numbers.Real)):
        raise problem
    value = int(value) if integer else float(value)
    if not integer and not math.isfinite(value):
        raise problem
    if ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
            or (above is not None and value <= above) or (below is not None and value >= below)):
        raise problem
    return value


def _check_windows(name: str, value) -> list:
    """Time windows: a positive integer or a non-empty list of them, as a list of int."""
    windows = [value] if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if (not isinstance(windows, (list, tuple)) or not windows
            or any(isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1 for t in windows)):
        raise SpiketandemError(f"config field {name!r} must be a positive integer or a non-empty list of them "
                               f"(time windows in steps), got {value!r}")
    return [int(t) for t in windows]


def check_windows(flag: str, value) -> list:
    """Time windows given to a command (e.g. ``eval --eval-T``): each a positive integer."""
    try:
        return _check_windows(flag, value)
    except SpiketandemError:
        shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else repr(value)
        raise SpiketandemError(f"{flag} must be positive integers (time windows in steps), got {shown}") from None


def _check_milestones(value) -> list:
    """Step-schedule milestones: fractions of the epochs in (0, 1), increasing."""
    if (not isinstance(value, (list, tuple))
            or any(isinstance(m, bool) or not isinstance(m, numbers.Real) or not 0 < m < 1 for m in value)
            or any(b <= a for a, b in zip(value, value[1:]))):
        raise SpiketandemError(f"config field 'milestones' must be a list of increasing fractions of the epochs in "
                               f"(0, 1) (e.g. [0.3, 0.6, 0.8]), got {value!r}")
    return [float(m) for m in value]


@dataclass
class RunConfig:
    """Everything a run needs. ``None`` means "the rule's / dataset's default"."""

    rule: str = "ltl-offline"
    name: str | None = None
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    n_train: int | None = None
    n_test: int | None = None
    bins: str = "time"  # event datasets: T equal time bins or T bins of equal event counts (data/events.py)
    event_size: int | None = None  # event datasets: sum-pool the sensor to event_size x event_size (None: full)
    # model
    arch: str | None = None
    width: float = 1.0
    act_clip: float | None = None  # teacher activation min(max(x, 0), act_clip) instead of ReLU (the authors' use 2)
    act_levels: int | None = None  # teacher activation quantized to act_levels levels (QCFS, models/quantized.py)
    act_penalty: float = 0.0  # teachers: + act_penalty * the student's operations per step (models/activation_cost.py)
    teacher: str | None = None
    teacher_epochs: int = 30
    # neuron
    neuron: str = "lif"
    threshold: float = 1.0
    tau_m: float = 10.0
    dt: float = 1.0
    leak: float | None = None
    reset: str = "subtract"
    surrogate: str = "boxcar"
    surrogate_param: float | None = None
    detach_reset: bool = False
    neuron_backend: str = "auto"  # fused multi-step kernel when it applies (auto), always (fused), or never (reference)
    # student
    T: int = 16
    eval_T: list = field(default_factory=lambda: [4, 8, 16, 32])
    init: str = "teacher"
    encoding: str = "analog"
    percentile: float = 99.9
    synops_convention: str = "exact"  # how SynOps are counted (metrics/synops.py): exact events or standard
    # optimisation
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    lr_schedule: str = "cosine"
    milestones: list = field(default_factory=lambda: [0.3, 0.6, 0.8])
    pipeline_stages: int = 1  # >1: the student's layers as that many pipelined stages, one per process (pipelining/)
    # system
    seed: int = 0
    device: str = "auto"
    out: str | None = None
    progress: bool = True
    tensorboard: bool = False  # log each epoch to <run>/tensorboard
    amp: str = "off"            # "bf16": bfloat16 autocast of weight layers (neurons and losses stay float32)
    channels_last: bool = False  # NHWC memory format for conv weights and image batches
    # rule-specific options (declared by each rule's ``options``), name -> value
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        """Check every field (type and range) and normalise numbers to plain int/float, so that a bad value
        is one clear error here, before any work, never a traceback from deep inside torch."""
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if isinstance(value, (list, dict, set)) or value not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise SpiketandemError(f"config field {name!r}: {value!r} is not allowed; choose one of {shown}")
        for name, spec in NUMBERS.items():
            setattr(self, name, _check_number(name, getattr(self, name), **spec))
        for name in BOOLEANS:
            if not isinstance(getattr(self, name), bool):
                raise SpiketandemError(f"config field {name!r} must be true or false, got {getattr(self, name)!r}")
        for name in STRINGS + OPTIONAL_STRINGS:
            value = getattr(self, name)
            if isinstance(value, PurePath):
                value = str(value)
                setattr(self, name, value)
            if not (isinstance(value, str) or (value is None and name in OPTIONAL_STRINGS)):
                allowed = "a string" + (" (or null)" if name in OPTIONAL_STRINGS else "")
                raise SpiketandemError(f"config field {name!r} must be {allowed}, got {value!r}")
        if self.name is not None and (self.name in ("", ".") or PurePath(self.name).is_absolute()
                                      or ".." in PurePath(self.name).parts):
            raise SpiketandemError(f"config field 'name' must be a folder name inside runs/ (no '..', not absolute), "
                                   f"got {self.name!r}; to put the run elsewhere use --out DIR")
        self.eval_T = _check_windows("eval_T", self.eval_T)
        self.milestones = _check_milestones(self.milestones)
        if not isinstance(self.options, dict) or not all(isinstance(k, str) for k in self.options):
            raise SpiketandemError(f"config field 'options' must be a mapping of option name: value, got "
                                   f"{self.options!r}")

    def neuron_config(self) -> NeuronConfig:
        from .neuron import NeuronConfig
        from .surrogate import Surrogate
        return NeuronConfig(kind=self.neuron, threshold=self.threshold, tau_m=self.tau_m, dt=self.dt, leak=self.leak,
                            reset=self.reset, surrogate=Surrogate(self.surrogate, self.surrogate_param),
                            detach_reset=self.detach_reset, backend=self.neuron_backend)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` (``None`` sets a field to None: "the default"), validated again."""
        unknown = sorted(set(changes) - set(FIELD_NAMES))
        if unknown:
            raise SpiketandemError(f"unknown config field(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


FIELD_NAMES = tuple(f.name for f in fields(RunConfig))


def make_config(base: dict | None = None, overrides: dict | None = None) -> RunConfig:
    """Build a config from a dict (e.g. YAML) and overrides (flags; ``None`` = not given).

    Keys that are not config fields (top level, or under ``options:``) are rule options; they are
    checked against the rule that runs by ``spiketandem.rules.configure``."""
    if base is not None and not isinstance(base, dict):
        raise SpiketandemError(f"a config must be a mapping of field: value, got {type(base).__name__}")
    merged = dict(base or {})
    bad_keys = [k for k in merged if not isinstance(k, str)]
    if bad_keys:
        raise SpiketandemError(f"config keys must be field names, got {bad_keys[0]!r}; config fields: "
                               f"{', '.join(FIELD_NAMES)}")
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None and k != "options"})
    options = merged.pop("options", None) or {}
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise SpiketandemError(f"config field 'options' must be a mapping of option name: value, got {options!r}")
    options = dict(options)
    options.update({k: v for k, v in ((overrides or {}).get("options") or {}).items() if v is not None})
    for key in [k for k in merged if k not in FIELD_NAMES]:
        options[key] = merged.pop(key)
    merged["options"] = {k: v for k, v in options.items() if v is not None}
    try:
        return RunConfig(**merged)
    except TypeError as e:
        raise SpiketandemError(f"bad config: {e}") from None


class YAMLLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-3`` as a number as YAML 1.2 does (YAML 1.1, PyYAML's default,
    needs ``1.0e-3`` and reads ``lr: 1e-3`` as the text '1e-3')."""


YAMLLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                 re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line from a YAML parse error: what is wrong and where (PyYAML's own message spans lines)."""
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


def read_yaml_text(path: Path, what: str) -> object:
    """The YAML document in ``path`` (None when empty); one clear error if it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpiketandemError(f"{what} {path} is not a text file (it is damaged, or not YAML)") from None
    except OSError as e:
        raise SpiketandemError(f"cannot read {what} {path}: {e.strerror}") from None
    try:
        return yaml.load(text, Loader=YAMLLoader)
    except yaml.YAMLError as e:
        raise SpiketandemError(f"{what} {path} is not valid YAML ({yaml_problem(e)})") from None


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict of field: value (``batch-size`` is read as ``batch_size``); an empty
    file is an empty config."""
    path = Path(path)
    if not path.exists():
        raise SpiketandemError(f"config file {path} does not exist")
    if not path.is_file():
        raise SpiketandemError(f"config file {path} is not a file (a YAML file of field: value is expected)")
    data = read_yaml_text(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpiketandemError(f"config file {path} must hold a mapping of field: value, got a "
                               f"{type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise SpiketandemError(f"config file {path}: keys must be field names, got {bad[0]!r}; config fields: "
                               f"{', '.join(FIELD_NAMES)}")
    return {k.replace("-", "_"): v for k, v in data.items()}
