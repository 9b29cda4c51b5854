"""The learning-rule interface: a rule owns the trained model, its losses and its optimizer defaults;
the data, the training loop, evaluation and the run folder are shared by all rules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models import build_model
from ..student import Student, build_student


@dataclass(frozen=True)
class DataInfo:
    num_classes: int
    in_channels: int
    image_size: int

    def example_input(self, batch: int = 2, device="cpu") -> torch.Tensor:
        return torch.zeros(batch, self.in_channels, self.image_size, self.image_size, device=device)


@dataclass(frozen=True)
class Option:
    """A rule-specific setting: becomes the flag ``--NAME`` (dashes for underscores) and the YAML key NAME."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


class Rule:
    """Base class. Subclasses set ``model`` and implement ``loss`` (or override ``train_step``).

    Rule-specific settings are declared in ``options`` and read with ``self.option(name)``; the CLI
    and the YAML loader pick them up from there, so adding a rule touches only its own file and the
    registry in ``rules/__init__.py``.
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

    def option(self, name: str):
        """The value of one of this rule's options (the config's, else the declared default)."""
        opt = next((o for o in self.options if o.name == name), None)
        if opt is None:
            raise KeyError(f"{self.name} declares no option {name!r}")
        return self.cfg.options.get(name, opt.default)

    def optim_parameters(self) -> list:
        """Everything the optimizer may update (frozen ones simply get no gradient)."""
        return list(self.model.parameters())

    def on_epoch_start(self, epoch: int) -> None:
        """Called before each training epoch (schedules, temperature selection, layer stages)."""

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

    @torch.no_grad()
    def predict(self, x: torch.Tensor, T: int | None = None) -> torch.Tensor:
        """Class scores [B, classes] at time window T (ignored by non-spiking models)."""
        return self.model(x, T or self.cfg.T).mean(0)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])

    def train(self, mode: bool = True):
        self.model.train(mode)
        if self.teacher is not None:
            self.teacher.eval()


def make_student(cfg, info: DataInfo, teacher: nn.Module | None, calibration: torch.Tensor | None) -> Student:
    """The student of ``teacher`` per the config (init, encoding, neuron).  Without a teacher (rules
    that train from scratch) the student of an untrained ``cfg.arch`` is built, randomly initialised."""
    device = calibration.device if calibration is not None else "cpu"
    if teacher is None:
        teacher = build_model(cfg.arch, info.num_classes, info.in_channels, info.image_size, cfg.width, cfg.act_clip).to(device)
        init = "random"
    else:
        init = cfg.init
    return build_student(teacher, cfg.neuron_config(), info.example_input(device=device), init=init,
                         encoding=cfg.encoding, calibration_images=calibration, percentile=cfg.percentile)


def cross_entropy_with_kd(logits, y, teacher_logits=None, kd_weight: float = 0.0, temperature: float = 4.0):
    """CE on labels, plus (if kd_weight > 0) Hinton distillation KL(teacher || student) at temperature tau."""
    loss = F.cross_entropy(logits, y)
    if kd_weight > 0 and teacher_logits is not None:
        kl = F.kl_div(F.log_softmax(logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                      log_target=True, reduction="batchmean")
        loss = loss + kd_weight * temperature ** 2 * kl
    return loss
