"""The learning-rule interface: a rule owns the trained model, its losses and its optimizer defaults;
the data, the training loop (``train.fit``), evaluation and the run folder are shared by all rules.

A rule is *told* its lifecycle by the loop, never guesses it:

    rule = SomeRule(cfg, info, teacher, calibration)   # structure only (also when rebuilt from a file)
    data = rule.setup(data, device)                    # once, before the first epoch of a training run
    for epoch in range(start, cfg.epochs):             # 0-based
        rule.on_epoch_start(epoch)
        ... rule.train_step(x, y, optimizer, epoch) for every batch ...
        stop = rule.on_epoch_end(epoch, row)           # before the epoch's evaluation; True stops
    rule.summary_extras()                               # run-level results for summary.json

It declares the modules it trains once (``modules()``) and any non-module state (``extra_state()`` /
``load_extra_state()``); checkpointing, train/eval mode and the optimizer's parameters derive from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpiketandemError
from ..models import build_model
from ..student import Student, build_student
from .catalog import Option, recipe_values  # noqa: F401  (Option: declared torch-free; re-exported for rule authors)


@dataclass(frozen=True)
class DataInfo:
    num_classes: int
    in_channels: int
    image_size: int

    def example_input(self, batch: int = 2, device="cpu") -> torch.Tensor:
        return torch.zeros(batch, self.in_channels, self.image_size, self.image_size, device=device)


class Rule:
    """Base class. Subclasses set ``model`` and implement ``loss`` (or override ``train_step``).

    Rule-specific settings are declared with the rule's entry in ``rules/catalog.py`` (torch-free, so the
    command line lists and checks them without importing torch), set as ``options = CATALOG[name].options``
    and read with ``self.option(name)``; the CLI and the YAML loader pick them up from the catalog, so
    adding a rule touches only its own file and its catalog entry.
    """

    name = "base"
    options: tuple[Option, ...] = ()
    needs_teacher = True
    spiking = True
    # optimizer defaults used when the config leaves them unset
    default_optimizer = "adam"
    default_lr = 1e-3
    default_weight_decay = 0.0

    model: nn.Module

    def __init__(self, cfg, info: DataInfo, teacher: nn.Module | None = None, calibration: torch.Tensor | None = None):
        self.cfg = cfg
        self.info = info
        self.teacher = teacher
        for opt in self.options:  # also when built directly, not through rules.configure
            opt.check(cfg.options.get(opt.name))
        # the values in effect: a configured run's options already hold what --recipe set; a rule built directly
        # from an unconfigured config gets the same values here, once
        self._options = {**recipe_values(self.options, cfg.options),
                         **{k: v for k, v in cfg.options.items() if v is not None}}

    @classmethod
    def optimizer_settings(cls, cfg) -> dict:
        """The optimizer, learning rate and weight decay that run: the config's, else this rule's defaults
        (what config.yaml records, and what the optimizer is built with)."""
        return {"optimizer": cfg.optimizer or cls.default_optimizer,
                "lr": cfg.lr if cfg.lr is not None else cls.default_lr,
                "weight_decay": cfg.weight_decay if cfg.weight_decay is not None else cls.default_weight_decay}

    @classmethod
    def option_named(cls, name: str) -> Option | None:
        return next((o for o in cls.options if o.name == name), None)

    def option(self, name: str):
        """The value of one of this rule's options (the config's, else the declared default)."""
        opt = self.option_named(name)
        if opt is None:
            raise KeyError(f"{self.name} declares no option {name!r}")
        return self._options.get(name, opt.default)

    # ---- what the rule trains (checkpoints, modes, optimizer and torchrun derive from it) ----------

    def modules(self) -> dict[str, nn.Module]:
        """Every module this rule trains, by name (the student first).  Never the teacher."""
        return {"model": self.model}

    def extra_state(self) -> dict:
        """Non-module state to checkpoint (plain Python values and tensors only)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what :meth:`extra_state` returned."""

    def optim_parameters(self) -> list:
        """Everything the optimizer may update (frozen ones simply get no gradient)."""
        return [p for module in self.modules().values() for p in module.parameters()]

    def state_dict(self) -> dict:
        return {**{name: m.state_dict() for name, m in self.modules().items()}, "extra": self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        modules = self.modules()
        missing = sorted(set(modules) - set(state))
        if missing:
            raise SpiketandemError(f"the saved state of rule {self.name!r} lacks {', '.join(missing)}; it was written "
                                   "by another rule or version")
        for name, module in modules.items():
            module.load_state_dict(state[name])
        self.load_extra_state(state.get("extra", {}))

    def train(self, mode: bool = True):
        for module in self.modules().values():
            module.train(mode)
        if self.teacher is not None:
            self.teacher.eval()

    # ---- lifecycle (called by train.fit) -----------------------------------------------------------

    def setup(self, data, device: torch.device):
        """Once before the first epoch of training (not when a trained rule is rebuilt from its file; on
        ``--resume`` the checkpoint's state replaces what this did).  Data-dependent initialisation goes
        here.  Returns the data the loop trains on (a rule may hold part of it out)."""
        return data

    def on_epoch_start(self, epoch: int) -> None:
        """Before each training epoch (0-based): schedules, layer stages."""

    def on_epoch_end(self, epoch: int, row: dict) -> bool:
        """After each training epoch, with its metrics row (before the test evaluation): stage logic.
        Returning True stops training after this epoch."""
        return False

    def summary_extras(self) -> dict:
        """Rule-specific run-level results for summary.json."""
        return {}

    def on_distributed(self, comm) -> None:
        """Under torchrun, once before training: make rank-dependent choices global (``comm`` offers
        ``gather_flat(tensor)`` and ``broadcast_float(value)``, see ``distributed.py``)."""

    # ---- training -----------------------------------------------------------------------------

    def loss(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Returns (loss, logits [B, classes] for the running accuracy, extra logs)."""
        raise NotImplementedError

    def train_step(self, x, y, optimizer, epoch: int) -> dict:
        """One optimisation step on one batch; returns logs (at least ``loss`` and ``correct``)."""
        loss, logits, logs = self.loss(x, y, epoch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), "correct": int((logits.argmax(1) == y).sum()), **logs}

    def require_teacher(self, teacher, role: str, *, teacher_init: bool = True, otherwise: str = "") -> None:
        """The one refusal of a rule built without the trained teacher it needs (``role``: what it does with it;
        ``teacher_init``: it also needs the student initialised from the teacher, ``--init teacher``)."""
        if teacher is None or (teacher_init and self.cfg.init != "teacher"):
            raise SpiketandemError(missing_teacher(self.name, role, teacher_init, otherwise))

    def membrane_init(self) -> float:
        """The fraction f of its threshold every membrane of the student this rule builds starts at,
        U[0] = f * theta (0 unless the rule sets it: --membrane-init, --recipe low-latency, qcfs's shift).
        Read once, when the student is built: from then on the student carries it."""
        return float(self.option("membrane_init")) if self.option_named("membrane_init") else 0.0

    def context(self, batch: int, T: int | None = None, **fields):
        """The RunContext of one forward of this rule's student over T steps (default the run's), as the rule
        runs it (a rule with hooks, e.g. a chip's noise, adds them); ``fields``: RunContext's.  Observers
        (firing rates, TensorBoard) ask here, so they see the network the rule computes."""
        return self.model.context(T or self.cfg.T, batch, **fields)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        """Class scores [B, classes] at time window T (ignored by non-spiking models)."""
        return self.model(x, T or self.cfg.T).mean(0)


def missing_teacher(rule: str, role: str = "learns from a teacher", teacher_init: bool = False,
                    otherwise: str = "") -> str:
    """What a rule that needs a trained teacher says when it has none (every door: the command line and Python)."""
    keep = " and keep --init teacher" if teacher_init else ""
    return (f"rule {rule} {role}: pass --teacher (or let `train` train one){keep}; from Python, teacher=<your trained "
            f"nn.Module>{otherwise}")


def make_student(cfg, info: DataInfo, teacher: nn.Module | None, calibration: torch.Tensor | None,
                 membrane_init: float = 0.0) -> Student:
    """The student of ``teacher`` per the config (init, encoding, neuron, attention_time), every membrane starting at
    ``membrane_init`` x its threshold.  Without a teacher (rules that train from scratch) the student of an
    untrained ``cfg.arch`` is built, randomly initialised."""
    device = calibration.device if calibration is not None else "cpu"
    if teacher is None:
        teacher = build_model(cfg.arch, info.num_classes, info.in_channels, info.image_size, cfg.width, cfg.act_clip,
                              cfg.act_levels).to(device)
        init = "random"
    else:
        init = cfg.init
    student = build_student(teacher, cfg.neuron_config(), info.example_input(device=device), init=init,
                            encoding=cfg.encoding, calibration_images=calibration, percentile=cfg.percentile,
                            membrane_init=membrane_init)
    student.set_attention_time(cfg.attention_time)  # a spiking transformer's product in time (none in a CNN)
    return student


def cross_entropy_with_kd(logits, y, teacher_logits=None, kd_weight: float = 0.0, temperature: float = 4.0):
    """CE on labels, plus (if kd_weight > 0) Hinton distillation KL(teacher || student) at temperature tau."""
    loss = F.cross_entropy(logits, y)
    if kd_weight > 0 and teacher_logits is not None:
        kl = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                      log_target=True, reduction="batchmean")
        loss = loss + kd_weight * temperature ** 2 * kl
    return loss
