"""Run configuration: one dataclass, YAML in and out, validation with messages that name the field."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .data.events import BIN_MODES
from .errors import SpiketandemError
from .neuron import NEURON_BACKENDS, NEURON_KINDS, RESETS, NeuronConfig
from .precision import AMP_MODES
from .student import ENCODINGS, INITS
from .surrogate import SURROGATES, Surrogate
from .train import LR_SCHEDULES, OPTIMIZERS

# fields whose value must be one of a fixed set, each list owned by the module that implements it (rules,
# their options and datasets are checked by their registries: ``rules.configure``, ``data.registry``)
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
}
POSITIVE = ("T", "batch_size", "threshold", "tau_m", "dt", "width", "teacher_epochs")


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
    # optimisation
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None
    optimizer: str | None = None
    weight_decay: float | None = None
    lr_schedule: str = "cosine"
    milestones: list = field(default_factory=lambda: [0.3, 0.6, 0.8])
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
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise SpiketandemError(f"config field {name!r}: {value!r} is not allowed; choose one of {shown}")
        for name in POSITIVE:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise SpiketandemError(f"config field {name!r} must be a positive number, got {value!r}")
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 0:
            raise SpiketandemError(f"config field 'epochs' must be a non-negative integer (0 for rules that train "
                                   f"nothing, e.g. convert), got {self.epochs!r}")
        if self.act_clip is not None and (isinstance(self.act_clip, bool) or not isinstance(self.act_clip, (int, float))
                                          or self.act_clip <= 0):
            raise SpiketandemError(f"config field 'act_clip' must be a positive number (or null for a plain ReLU), "
                                   f"got {self.act_clip!r}")
        if not 0 < self.percentile <= 100:
            raise SpiketandemError(f"config field 'percentile' must lie in (0, 100], got {self.percentile}")
        if isinstance(self.eval_T, int):
            self.eval_T = [self.eval_T]
        if not self.eval_T or any(not isinstance(t, int) or t <= 0 for t in self.eval_T):
            raise SpiketandemError(f"config field 'eval_T' must be a list of positive integers, got {self.eval_T!r}")

    def neuron_config(self) -> NeuronConfig:
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
    merged = dict(base or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None and k != "options"})
    options = dict(merged.pop("options", None) or {})
    options.update({k: v for k, v in ((overrides or {}).get("options") or {}).items() if v is not None})
    for key in [k for k in merged if k not in FIELD_NAMES]:
        options[key] = merged.pop(key)
    merged["options"] = {k: v for k, v in options.items() if v is not None}
    try:
        return RunConfig(**merged)
    except TypeError as e:
        raise SpiketandemError(f"bad config: {e}") from None


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SpiketandemError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpiketandemError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SpiketandemError(f"config file {path} must hold a mapping of field: value, got {type(data).__name__}")
    return {k.replace("-", "_"): v for k, v in data.items()}
