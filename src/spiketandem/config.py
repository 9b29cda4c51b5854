"""Run configuration: one dataclass, YAML in and out, validation with messages that name the field."""
from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import yaml

# torch-free, so that the command line can parse and help without importing torch
from .choices import (AMP_MODES, ATTENTION_TIMES, BIN_MODES, ENCODINGS, INITS, LR_SCHEDULES, NEURON_BACKENDS,
                      NEURON_KINDS, OPTIMIZERS, RESETS, SURROGATES, SYNOPS_CONVENTIONS)
from .data.registry import DATASET_HELP  # torch-free: the one table of datasets
from .errors import SpiketandemError
from .settings import setting, settings_of

if TYPE_CHECKING:
    from .neuron import NeuronConfig

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


SYNOPS_CONVENTION_HELP = ("how SynOps are counted: exact (every event times its fan-out, also through pooling and "
                          "residual sums) or standard (each non-zero input value times its fan-out); docs/metrics.md")
RECIPE = "{recipe}"  # the default of the optimizer settings in words: the rule's own, or the teacher recipe's


@dataclass
class RunConfig:
    """Everything a run needs, each field declared once with its :class:`~spiketandem.settings.Setting`: its
    default, help, allowed values and flag (``group``: where ``--help`` lists it; none: config and YAML only).
    ``None`` means "the rule's / dataset's default"."""

    # run
    rule: str = setting("ltl-offline", "learning rule: {rules}", group="spiking student", scope="student",
                        metavar="RULE")
    name: str | None = setting(None, "run name", group="run", metavar="NAME", shown="<dataset>-<arch>-{kind}")
    # data
    dataset: str = setting("digits", DATASET_HELP, group="data", metavar="NAME")
    data_dir: str | None = setting(None, "where the dataset lives (see README: Data)", group="data", metavar="DIR")
    download: bool = setting(False, "download through torchvision if missing", group="data")
    n_train: int | None = setting(None, "use a random subset of this many training images", group="data",
                                  metavar="N", minimum=1, null="the whole training split", shown="all")
    n_test: int | None = setting(None, "use a random subset of this many test images", group="data", metavar="N",
                                 minimum=1, null="the whole test split", shown="all")
    validation: int | None = setting(None, "hold out this many training images (the same ones for every seed) and "
                                     "evaluate on them instead of the test set: choose settings without touching "
                                     "the test set", group="data", metavar="N", minimum=1, null="off", shown="off")
    bins: str = setting("time", "event datasets: T equal time bins or T bins of equal event counts", group="data",
                        choices=BIN_MODES)
    event_size: int | None = setting(None, "event datasets: pool the sensor to S x S frames (e.g. 48 for "
                                     "CIFAR10-DVS)", group="data", metavar="S", minimum=1, null="the full sensor",
                                     shown="the full sensor")
    # model
    arch: str | None = setting(None, "vgg11, vgg13, vgg16, vgg11-strided, vgg16-strided, resnet20, digits-cnn, "
                               "digits-mlp; spiking-transformer teachers: vit-tiny, vit-small", group="model",
                               metavar="NAME",
                               shown="the dataset's: digits-cnn for digits and fashion-mnist, else vgg11")
    width: float = setting(1.0, "channel width multiplier (e.g. 0.25 for a CPU)", group="model", metavar="FACTOR",
                           minimum=1 / 64, maximum=16,
                           hint=" (a channel multiplier: at 1/64 VGG's narrowest layer keeps one channel)")
    act_clip: float | None = setting(None, "teachers trained here use the clipped ReLU min(max(x, 0), C) (the LTL "
                                     "authors' teacher: C = 2); helps students at small T", group="model",
                                     metavar="C", above=0, null="a plain ReLU", shown="plain ReLU")
    act_levels: int | None = setting(None, "teachers trained here quantize each activation to L levels (QCFS: a "
                                     "learned clip per layer, starting at --act-clip): the teacher of a student "
                                     "with T = L steps", group="model", metavar="L", minimum=1,
                                     null="full precision", shown="full precision")
    act_penalty: float = setting(0.0, "energy-aware teacher: adds P times the share of its MACs that a rate-coded "
                                 "student spends per time step (each weight layer's input relative to the clip, "
                                 "weighted by the layer's MACs; logged as act_cost) to the loss: sparser teachers, "
                                 "students with fewer SynOps (needs a clipped activation)", group="model",
                                 scope="teacher", metavar="P", minimum=0)
    teacher: str | None = setting(None, "teacher.pt, a teacher run folder, pretrained:NAME (a teacher shipped "
                                  "with the package), or your own state_dict file with --arch or --teacher-class "
                                  "(docs/teachers.md)", group="model", metavar="PATH",
                                  shown="one is trained, with --teacher-epochs")
    teacher_class: str | None = setting(None, "your own teacher module as MODULE:NAME (a torch.nn.Module class, or a "
                                        "function of no arguments returning one), imported from the current folder "
                                        "or the installed packages; --teacher then names its state_dict file, read "
                                        "with weights_only=True (docs/teachers.md)", group="model", scope="student",
                                        metavar="MODULE:NAME", null="a zoo architecture (--arch)",
                                        shown="a zoo architecture (--arch)")
    teacher_epochs: int = setting(30, "epochs of the teacher trained when --teacher is omitted", group="model",
                                  scope="student", metavar="N", minimum=1)
    # neuron
    neuron: str = setting("lif", "integrate-and-fire or leaky integrate-and-fire", group="spiking student",
                          scope="student", choices=NEURON_KINDS)
    T: int = setting(16, "time window (steps) for training", group="spiking student", scope="student",
                     metavar="N", minimum=1)
    eval_T: list = setting(None, "time windows to evaluate", default_factory=lambda: [4, 8, 16, 32], type=int,
                           group="spiking student", scope="student", metavar="N", nargs="+")
    threshold: float = setting(1.0, "firing threshold of randomly initialised students", group="spiking student",
                               scope="student", metavar="THETA", above=0)
    tau_m: float = setting(10.0, "LIF membrane time constant in steps (leak exp(-dt/tau_m))",
                           group="spiking student", scope="student", metavar="STEPS", above=0)
    dt: float = setting(1.0, "the neuron's time step (leak exp(-dt/tau_m))", above=0)
    leak: float | None = setting(None, "LIF leak factor a directly (overrides --tau-m)", group="spiking student",
                                 scope="student", metavar="A", above=0, maximum=1, null="exp(-dt/tau_m)",
                                 shown="exp(-dt/tau_m)")
    reset: str = setting("subtract", "reset by subtraction (paper) or to zero (authors' code)",
                         group="spiking student", scope="student", choices=RESETS)
    surrogate: str = setting("boxcar", "surrogate gradient (boxcar: Eq. 8)", group="spiking student",
                             scope="student", choices=SURROGATES)
    surrogate_param: float | None = setting(None, "boxcar/triangle width p or sigmoid/atan slope",
                                            group="spiking student", scope="student", metavar="P", above=0,
                                            null="the surrogate's default", shown="the surrogate's own")
    detach_reset: bool = setting(False, "detach the reset from the gradient (S[t-1] in the reset as a constant)")
    neuron_backend: str = setting("auto", "auto: the fused multi-step kernel where it applies; fused: always (an "
                                  "error where it cannot); reference: the per-step loop", group="spiking student",
                                  scope="student", choices=NEURON_BACKENDS)
    # student
    init: str = setting("teacher", "from the teacher (BN folded, thresholds balanced) or random",
                        group="spiking student", scope="student", choices=INITS)
    encoding: str = setting("analog", "input: analog constant current, rate spikes or event frames",
                            group="spiking student", scope="student", choices=ENCODINGS)
    attention_time: str = setting("step", "spiking transformers: the attention product s(QK^T)V in time, of each "
                                  "step's spikes, of the running rates, or their increments (docs/results/"
                                  "transformers.md)", group="spiking student", scope="student",
                                  choices=ATTENTION_TIMES)
    percentile: float = setting(99.9, "percentile for y_norm and threshold balancing", group="spiking student",
                                scope="student", metavar="P", above=0, maximum=100)
    synops_convention: str = setting("exact", SYNOPS_CONVENTION_HELP, group="spiking student", scope="student",
                                     choices=SYNOPS_CONVENTIONS)
    # optimisation
    epochs: int = setting(5, "training epochs", group="optimisation", metavar="N", minimum=0,
                          hint=" (0 for rules that train nothing, e.g. convert)")
    batch_size: int = setting(64, "the global batch: under torchrun each of the N processes gets batch-size / N of "
                              "it (must divide evenly)", group="optimisation", metavar="N", minimum=1)
    pipeline_stages: int = setting(1, "experimental: train the student's neuron layers as S pipelined stages, one "
                                   "per process: torchrun --nproc_per_node=S*R (R data-parallel replicas of the "
                                   "pipeline); layer-local rules only (ltl-offline); docs/performance.md",
                                   group="optimisation", scope="student", metavar="S", minimum=1,
                                   hint=" (1: no layer pipelining)")
    lr: float | None = setting(None, "learning rate", group="optimisation", metavar="LR", above=0,
                               null="the rule's default", shown=RECIPE)
    optimizer: str | None = setting(None, "optimizer", group="optimisation", choices=OPTIMIZERS + (None,),
                                    shown=RECIPE)
    weight_decay: float | None = setting(None, "L2 weight decay", group="optimisation", metavar="WD", minimum=0,
                                         null="the rule's default", shown=RECIPE)
    lr_schedule: str = setting("cosine", "learning-rate schedule over the epochs", group="optimisation",
                               choices=LR_SCHEDULES)
    label_smoothing: float = setting(0.0, "teachers trained here learn from smoothed targets: (1 - EPS) on the "
                                     "label, EPS spread evenly over all classes (Szegedy et al. 2016)",
                                     group="optimisation", scope="teacher", metavar="EPS", minimum=0, below=1)
    milestones: list = setting(None, "the step schedule's milestones, as fractions of the epochs",
                               default_factory=lambda: [0.3, 0.6, 0.8])
    amp: str = setting("off", "mixed precision: bf16 autocast of the weight layers (GPU; allowed but slow on most "
                       "CPUs); neuron states and losses stay float32", group="optimisation", choices=AMP_MODES)
    channels_last: bool = setting(False, "NHWC memory format for conv weights and image batches (faster "
                                  "convolutions on GPUs)", group="optimisation")
    # system
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", group="run", metavar="DEVICE")
    seed: int = setting(0, "random seed", group="run", metavar="N", minimum=0, maximum=2 ** 32 - 1)
    out: str | None = setting(None, "run folder", group="run", metavar="DIR",
                              shown="runs/<name>, or runs/<name>-2, -3, ... when taken")
    progress: bool = setting(True, "a progress bar and per-epoch lines (--quiet: off)")
    tensorboard: bool = setting(False, "log losses, accuracies, per-layer firing rates and local losses to "
                                "RUN/tensorboard (needs: pip install 'spiketandem[tensorboard]')", group="run")
    # rule-specific options (declared by each rule's ``options``), name -> value
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        """Check every field (type and range) and normalise numbers to plain int/float, so that a bad value
        is one clear error here, before any work, never a traceback from deep inside torch."""
        for name, declared in SETTINGS.items():
            value = getattr(self, name)
            if name in ("eval_T", "milestones"):
                continue
            if isinstance(value, PurePath):
                value = str(value)
            setattr(self, name, declared.check_field(value))
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
SETTINGS = settings_of(RunConfig)  # every field's Setting, in declaration order
# fields whose value must be one of a fixed set, each list declared once in ``choices.py`` (beside the module
# that implements it); rules, their options and datasets are checked by their registries
CHOICES = {name: declared.choices for name, declared in SETTINGS.items() if declared.choices is not None}


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
