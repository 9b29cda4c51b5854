"""A small Python API: bring your own teacher, get a trained spiking student in a few lines.

    from spiketandem import api
    student = api.train_ltl(teacher, train_x, train_y, T=8, epochs=3)       # offline LTL
    acc = api.accuracy(student, test_x, test_y, T=8)
    ratio = api.synops_ratio(student, teacher, test_x, T=8)                 # SynOps / teacher MACs
    api.export_nir(student, "student.nir")

Images are float tensors ``[N, C, H, W]``, already normalised the way the teacher expects; labels
are int64 ``[N]``.  Everything here calls the same rules, student builder and metrics as the CLI.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .config import make_config
from .errors import SpiketandemError
from .metrics import count_ops, teacher_macs
from .rules import get_rule
from .rules.base import DataInfo
from .student import Student
from .train import make_optimizer, resolve_device, seed_everything

LTL_RULES = ("ltl-offline", "ltl-online")


def _check_data(images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    if not torch.is_tensor(images) or images.dim() not in (4, 5) or not images.is_floating_point():
        raise SpiketandemError(f"images must be a float tensor [N, C, H, W] (or event frames [N, T, C, H, W]), got "
                               f"{getattr(images, 'shape', type(images).__name__)}")
    if images.shape[-1] != images.shape[-2]:
        raise SpiketandemError(f"images must be square (H == W), got {tuple(images.shape[-2:])}; crop or pad them")
    if labels is not None and (labels.shape != images.shape[:1] or labels.dtype != torch.long):
        raise SpiketandemError(f"labels must be an int64 tensor [N] matching the images, got {labels.dtype} "
                               f"{tuple(labels.shape)}")


def train_ltl(teacher: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor, *, T: int = 8,
              epochs: int = 5, online: bool = False, **kwargs) -> Student:
    """Train the spiking student of ``teacher`` by Local Tandem Learning; returns the student.

    Each neuron layer l is fitted to the teacher's ReLU output at the same node (offline LTL:
    L_l = || amplitude_l * mean_t S_l[t] - y_l ||^2 / y_norm, Yang et al. 2022, Eq. 4-5); ``online=True``
    uses the online form (per-step local losses).  ``teacher`` is any module of
    conv/linear/BatchNorm/pooling/flatten/ReLU; it is not modified.  Event frames ``[N, T, C, H, W]``
    are fed one frame per step, and the teacher sees their time average.  Other keyword arguments
    are those of :func:`train`.
    """
    return train(LTL_RULES[1] if online else LTL_RULES[0], train_images, train_labels, teacher=teacher, T=T,
                 epochs=epochs, **kwargs)


def train(rule: str, train_images: torch.Tensor, train_labels: torch.Tensor, *, teacher: nn.Module | None = None,
          arch: str | None = None, T: int = 8, epochs: int = 5, neuron: str = "lif", reset: str = "subtract",
          batch_size: int = 64, lr: float | None = None, num_classes: int | None = None, seed: int = 0,
          device: str = "cpu", log: Callable[[str], None] | None = None, **config) -> Student:
    """Train a spiking student by any registered rule (``spiketandem.rules.RULES``); returns it.

    Rules with a teacher (LTL, tandem, conversion) use ``teacher``; direct-training rules (STBP, TET,
    ...) build a random student of the zoo architecture ``arch`` (``spiketandem.models``).  Extra
    keyword arguments are ``RunConfig`` fields (e.g. ``tau_m=4.0``, ``percentile=99.9``,
    ``options={"init_rate": 0.1}``).  Each epoch visits the data in a fresh random order once,
    calling the rule's own ``train_step``.
    """
    _check_data(train_images, train_labels)
    rule_cls = get_rule(rule)
    frames = train_images.dim() == 5
    if frames and train_images.shape[1] != T:
        raise SpiketandemError(f"event frames have {train_images.shape[1]} time bins but T={T}; bin the events into "
                               f"T frames (or pass T={train_images.shape[1]})")
    if rule_cls.needs_teacher and teacher is None:
        raise SpiketandemError(f"rule {rule!r} learns from a teacher: pass teacher=<your trained nn.Module>")
    if not rule_cls.needs_teacher and arch is None:
        raise SpiketandemError(f"rule {rule!r} trains a zoo architecture from scratch: pass arch= (e.g. 'digits-cnn')")
    fields = {"rule": rule, "T": T, "epochs": epochs, "neuron": neuron, "reset": reset, "batch_size": batch_size,
              "lr": lr, "seed": seed, "progress": False, "arch": arch, **config}
    if frames:
        fields["encoding"] = "frames"
    cfg = make_config(fields)
    dev = resolve_device(device)
    classes = num_classes or int(train_labels.max()) + 1
    info = DataInfo(classes, train_images.shape[-3], train_images.shape[-1])
    seed_everything(seed)
    if teacher is not None:
        teacher = teacher.to(dev).eval()
    model_rule = rule_cls(cfg, info, teacher if rule_cls.needs_teacher else None, train_images[:512].to(dev))
    model_rule.model.to(dev)
    optimizer = make_optimizer(model_rule, cfg)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model_rule.train(True)
        model_rule.on_epoch_start(epoch)
        order = torch.randperm(len(train_labels), generator=generator)
        loss_sum, correct = 0.0, 0
        for idx in order.split(batch_size):
            logs = model_rule.train_step(train_images[idx].to(dev), train_labels[idx].to(dev), optimizer, epoch)
            loss_sum += logs["loss"] * len(idx)
            correct += logs["correct"]
        if log is not None:
            log(f"epoch {epoch}/{epochs}: loss {loss_sum / len(order):.4f}, train accuracy "
                f"{correct / len(order):.3f}")
    model_rule.train(False)
    return model_rule.model


@torch.no_grad()
def predict(student: Student, images: torch.Tensor, T: int, batch_size: int = 256) -> torch.Tensor:
    """Class scores ``[N, classes]``: the readout averaged over T steps, (1/T) sum_t logits[t]."""
    _check_data(images)
    student.eval()
    device = next(student.parameters()).device
    return torch.cat([student(chunk.to(device), T).mean(0).cpu() for chunk in images.split(batch_size)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, T: int | None = None) -> float:
    """Top-1 accuracy of a student (at window T) or of a plain ANN (T omitted)."""
    _check_data(images, labels)
    if isinstance(model, Student):
        if T is None:
            raise SpiketandemError("accuracy of a spiking student needs the time window T")
        scores = predict(model, images, T)
    else:
        with torch.no_grad():
            model.eval()
            device = next(model.parameters()).device
            scores = torch.cat([model(c.to(device)).cpu() for c in images.split(256)])
    return float((scores.argmax(1) == labels).float().mean())


def synops_ratio(student: Student, teacher: nn.Module, images: torch.Tensor, T: int) -> float:
    """(student SynOps + student MACs) / teacher MACs per inference at window T (the LTL paper's
    operation ratio), counted by ``spiketandem.metrics.count_ops`` on ``images``."""
    _check_data(images)
    student.eval()
    teacher.eval()
    with torch.no_grad():
        frames = student.encoding == "frames"  # event counts: input layer event-driven, teacher on the time average
        counts, _ = count_ops(lambda x: student(x, T), images, named=student.graph_module, event_inputs=frames)
        reference = teacher_macs(teacher, images.mean(1) if frames else images)
    return (counts.total_synops() + counts.total_macs()) / max(1, reference.total_macs())


def export_nir(student: Student, path: str | Path, dt: float | None = None, allow_subtract_reset: bool = False) -> Path:
    """Write the student as a NIR graph (docs/nir.md); returns the path.  Needs ``pip install nir``."""
    from .export import DEFAULT_DT, write_nir
    return write_nir(student.eval(), path, dt=dt or DEFAULT_DT, allow_subtract_reset=allow_subtract_reset)


__all__ = ["train_ltl", "train", "predict", "accuracy", "synops_ratio", "export_nir"]
