"""A small Python API: bring your own teacher and data, get a trained spiking student in a few lines.

    from spiketandem import api
    print(api.check_teacher(teacher, example).render())                    # what the builder and NIR refuse
    student = api.train_ltl(teacher, train_x, train_y, T=8, epochs=3)       # offline LTL on tensors
    student = api.train_ltl(teacher, my_dataset, test=my_test_set, T=8)      # any Dataset / DataLoader
    acc = api.accuracy(student, test_x, test_y, T=8)
    ratio = api.synops_ratio(student, teacher, test_x, T=8)                 # SynOps / teacher MACs
    api.save_student(student, "student.pt"); student = spiketandem.load_student("student.pt", teacher=MyNet())
    chip_ready, report = api.retarget(student, teacher, train_x, train_y, test=(test_x, test_y))
    api.export_nir(chip_ready, "student.nir")                               # reset to zero, from v = 0

Data is a float tensor ``[N, C, H, W]`` of images (already normalised the way the teacher expects) with
int64 labels ``[N]``, an ``(images, labels)`` pair, any ``torch.utils.data.Dataset`` of
``(image, label)`` (torchvision datasets with their transforms, tonic datasets with ``ToFrame``) or a
``DataLoader``, or a built-in dataset (``spiketandem.data.load_dataset``: training uses its training split,
evaluation its test split, both normalised as the CLI's runs are).  Training runs through the one training
loop, ``spiketandem.train.fit``, exactly as the CLI's.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import torch
from torch import nn

from .config import make_config
from .data.feeding import calibration_images, evaluation_batches, split_size
from .data.user_data import UserData, _as_dataset, _check_tensors, _Epochs
from .errors import SpiketandemError
from .metrics import count_ops, teacher_macs
from .model_file import load_student, model_record, save_model, save_student, zoo_architecture
from .rules import configure, get_rule
from .rules.base import DataInfo, missing_teacher
from .ownership import check_folder, claim
from .provenance import provenance
from .runs import RunFolder
from .student import Student
from .teacher_check import check_teacher
from .train import fit, resolve_device, seed_everything

LTL_RULES = ("ltl-offline", "ltl-online")


def _check_data(images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    if not torch.is_tensor(images):
        raise SpiketandemError(f"images must be a float tensor [N, C, H, W], got {type(images).__name__}")
    if labels is None:
        labels = torch.zeros(len(images), dtype=torch.long)
    _check_tensors(images, labels, "the")


EVAL_BATCH = 256


def _is_builtin(data) -> bool:
    """``data`` is a built-in dataset (``ArrayDataset`` / ``EventDataset``: uint8 splits and their normalisation)."""
    return hasattr(data, "train_x") and hasattr(data, "mean")


def _batches(data, labels, device, *, need_labels: bool):
    """``data`` in order as (images, labels) batches on ``device``: a tensor of images (labels None where
    none are given and none are needed), an (images, labels) pair, a Dataset or a DataLoader (its own batches),
    or a built-in dataset's test split, normalised exactly as the training loop evaluates it."""
    if _is_builtin(data):
        if labels is not None:
            raise SpiketandemError("a built-in dataset carries its own labels (its test split is evaluated); pass "
                                   "it alone")
        return evaluation_batches(data, SimpleNamespace(batch_size=EVAL_BATCH, seed=0, channels_last=False), device)
    if torch.is_tensor(data) and labels is None and not need_labels:
        _check_data(data)
        return [(chunk.to(device), None) for chunk in data.split(EVAL_BATCH)]
    return _Epochs(_as_dataset(data, labels, "the"), EVAL_BATCH, device, seed=0, shuffle=False, augment=False)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _as_training_data(data, labels, test, test_labels, num_classes, augment):
    """What the training loop takes: a built-in dataset as it is, anything else as :class:`UserData`."""
    if _is_builtin(data):
        if labels is not None or test is not None:
            raise SpiketandemError("a built-in dataset carries its own labels and test split; pass it alone")
        return data
    return UserData(data, labels, test, test_labels, num_classes=num_classes, augment=augment)


def train_ltl(teacher: nn.Module, data, labels: torch.Tensor | None = None, *, T: int = 8, epochs: int = 5,
              online: bool = False, **kwargs) -> Student:
    """Train the spiking student of ``teacher`` by Local Tandem Learning; returns the student.

    Each neuron layer l is fitted to the teacher's ReLU output at the same node (offline LTL:
    L_l = || amplitude_l * mean_t S_l[t] - y_l ||^2 / y_norm, Yang et al. 2022, Eq. 4-5); ``online=True``
    uses the online form (per-step local losses).  ``teacher`` is any module of
    conv/linear/BatchNorm/pooling/flatten/ReLU; it is not modified.  Event frames ``[T, C, H, W]`` per
    sample are fed one frame per step, and the teacher sees their time average.  Other keyword
    arguments are those of :func:`train`.
    """
    return train(LTL_RULES[1] if online else LTL_RULES[0], data, labels, teacher=teacher, T=T, epochs=epochs, **kwargs)


def train(rule: str, data, labels: torch.Tensor | None = None, *, test=None, test_labels=None,
          teacher: nn.Module | None = None, arch: str | None = None, T: int = 8, epochs: int = 5, neuron: str = "lif",
          reset: str = "subtract", batch_size: int = 64, lr: float | None = None, num_classes: int | None = None,
          augment: bool = False, seed: int = 0, device: str = "cpu", out: str | Path | None = None,
          log: Callable[[str], None] | None = None, history: list | None = None, **config) -> Student:
    """Train a spiking student by any registered rule (``spiketandem.rules.RULES``); returns it.

    ``data`` (and ``test``): see the module docstring; ``augment``: random crop (padding 4) and flip of
    in-memory images.  Rules with a teacher (LTL, tandem, conversion) use ``teacher``; direct-training
    rules (STBP, TET, ...) build a random student of the zoo architecture ``arch``
    (``spiketandem.models``).  Extra keyword arguments are ``RunConfig`` fields (``tau_m=4.0``,
    ``percentile=99.9``, ``lr_schedule="constant"``) or the rule's options (``ynorm="fixed"``, ``kd=0.5``,
    ``schedule="sequential"``).  ``out``: also write a run folder there, a new or empty folder, with the
    files of a CLI run: ``config.yaml`` (the settings that ran, the optimizer's included, and their
    provenance), ``metrics.jsonl``, the checkpoint, ``student.pt``, ``learning_curve.png`` and
    ``summary.json`` (with ``test``: accuracy at ``T`` (and at ``eval_T=[...]`` if given), SynOps against
    the teacher, firing rates).  ``history``: a list that receives every epoch's metrics row (with
    ``test_acc`` when ``test`` is given).  The student can be saved with :func:`save_student`.
    """
    rule_cls = get_rule(rule)
    if rule_cls.needs_teacher and teacher is None:
        raise SpiketandemError(missing_teacher(rule))
    if not rule_cls.needs_teacher and arch is None:
        raise SpiketandemError(f"rule {rule!r} trains a zoo architecture from scratch: pass arch= (e.g. 'digits-cnn')")
    training = _as_training_data(data, labels, test, test_labels, num_classes, augment)
    fields = {"rule": rule, "T": T, "epochs": epochs, "neuron": neuron, "reset": reset, "batch_size": batch_size,
              "lr": lr, "seed": seed, "progress": False, "arch": arch, "dataset": getattr(training, "name", "user data"),
              "out": str(out) if out is not None else None, **config}
    steps = training.sample_shape[0] if isinstance(training, UserData) and training.frames else \
        (training.train_x.shape[1] if not isinstance(training, UserData) and training.train_x.dim() == 5 else None)
    if steps is not None:
        if steps != T:
            raise SpiketandemError(f"event frames have {steps} time bins but T={T}; bin the events into T frames "
                                   f"(or pass T={steps})")
        fields["encoding"] = "frames"
    cfg = configure(make_config(fields))  # every setting checked before any work
    cfg = configure(cfg, **rule_cls.optimizer_settings(cfg))  # the values that run, as the record says
    if out is not None:
        check_folder(Path(out), "new", "out=")
    dev = resolve_device(device)
    info = DataInfo(training.num_classes, training.in_channels, training.image_size)
    seed_everything(seed)
    if teacher is not None:
        teacher = teacher.to(dev).eval()
    model_rule = rule_cls(cfg, info, teacher if rule_cls.needs_teacher else None, calibration_images(training, dev))
    for module in model_rule.modules().values():
        module.to(dev)
    teacher_arch = zoo_architecture(cfg) if not rule_cls.needs_teacher else None
    with (claim(out, "new", out="out=") if out is not None else contextlib.nullcontext()):
        run = RunFolder(out) if out is not None else None
        if run is not None:
            run.write_config(cfg, {**provenance(cfg, dev), "entry": "spiketandem.api.train"})
        from .pipelining import wrap  # pipeline_stages=S under torchrun: the loop drives the stage wrapper
        result = fit(wrap(model_rule, cfg), cfg, training, dev, run, log=log or (lambda *a, **k: None))
        if history is not None:
            history.extend(result.rows)
        if run is not None:
            save_model(model_rule, run.file("student.pt"), teacher_arch)
            _write_summary(run, cfg, model_rule, teacher, training, dev, result.seconds, explicit_T="eval_T" in config)
    model_rule.train(False)
    student = model_rule.model
    student.origin = model_record(model_rule, teacher_arch)
    return student


def _write_summary(run: RunFolder, cfg, rule, teacher, training, device, seconds: float, explicit_T: bool) -> None:
    """summary.json and learning_curve.png of an API run, as a CLI run writes them: evaluated on the test data
    when it was given (at ``cfg.T``, and at ``cfg.eval_T`` when the caller set it), else the training record
    alone (``student_acc`` null, ``test_samples`` 0)."""
    from .report import plot_learning_curve
    from .workflow import evaluate_run_objects, summary_row, teacher_accuracy
    has_test = split_size(training) > 0
    teacher_acc = teacher_accuracy(teacher, training, cfg, device) if teacher is not None and has_test else None
    if has_test:
        summary = evaluate_run_objects(cfg, rule, teacher, training, device, teacher_acc, seconds,
                                       T_list=None if explicit_T else [cfg.T], run=run)
    else:
        summary = {**summary_row(cfg, rule, {}, None, None, seconds, device), "test_samples": 0}
    run.write_json("summary.json", summary)
    plot_learning_curve(run.read_metrics(), run.file("learning_curve.png"), teacher_acc=teacher_acc,
                        title=f"{cfg.rule} student on {cfg.dataset} (T={cfg.T})")


@torch.no_grad()
def predict(student: Student, data, T: int) -> torch.Tensor:
    """Class scores ``[N, classes]``: the readout averaged over T steps, (1/T) sum_t logits[t].  ``data``:
    a tensor of images, or what training takes (an (images, labels) pair, a Dataset, a DataLoader, a
    built-in dataset: its test split)."""
    student.eval()
    batches = _batches(data, None, _device_of(student), need_labels=False)
    return torch.cat([student(x, T).mean(0).cpu() for x, _ in batches])


@torch.no_grad()
def accuracy(model: nn.Module, data, labels: torch.Tensor | None = None, T: int | None = None) -> float:
    """Top-1 accuracy of a student (at window T) or of a plain ANN (T omitted) on ``data``: images with
    their ``labels``, or what training takes (an (images, labels) pair, a Dataset, a DataLoader, a built-in
    dataset: its test split, normalised as training evaluates it)."""
    if isinstance(model, Student) and T is None:
        raise SpiketandemError("accuracy of a spiking student needs the time window T")
    model.eval()
    correct = total = 0
    for x, y in _batches(data, labels, _device_of(model), need_labels=True):
        scores = model(x, T).mean(0) if isinstance(model, Student) else model(x)
        correct += int((scores.argmax(1) == y).sum())
        total += y.numel()
    return correct / max(1, total)  # exact, as the training loop counts


def synops_ratio(student: Student, teacher: nn.Module, data, T: int, convention: str = "exact") -> float:
    """(student SynOps + student MACs) / teacher MACs per inference at window T (the LTL paper's
    operation ratio), counted by ``spiketandem.metrics.count_ops`` on ``data``: a tensor of images, or the
    first batch of a Dataset (256 samples), a DataLoader or a built-in dataset's test split; SynOps in
    ``convention``: "exact" (every event times its fan-out) or "standard" (each non-zero input value times
    its fan-out; docs/metrics.md)."""
    images = next(iter(_batches(data, None, _device_of(student), need_labels=False)))[0]
    student.eval()
    teacher.eval()
    with torch.no_grad():
        frames = student.encoding == "frames"  # event counts: input layer event-driven, teacher on the time average
        counts, _ = count_ops(lambda x: student(x, T), images, named=student.graph_module, event_inputs=frames)
        reference = teacher_macs(teacher, images.mean(1) if frames else images)
    return (counts.total_synops(convention) + counts.total_macs()) / max(1, reference.total_macs())


def retarget(student: Student, teacher: nn.Module, data, labels: torch.Tensor | None = None, *, test=None,
             test_labels=None, to: str | None = "zero-reset", weight_bits: int | None = None,
             weight_quant: str | None = None, epochs: int = 1, lr: float | None = None,
             batch_size: int | None = None, num_classes: int | None = None,
             log: Callable[[str], None] | None = None) -> tuple[Student, dict]:
    """The student made deployable, as ``spiketandem export --retarget zero-reset --weight-bits K`` makes a run's:
    returns ``(new_student, report)``; ``student`` itself is not changed.

    ``to="zero-reset"``: a copy that resets its membranes to zero and starts them at 0 (NIR's IF/LIF neurons),
    its thresholds re-balanced to the spike counts of ``student`` and recovered by ``epochs`` epochs of offline
    LTL against ``teacher`` (``export.retarget.retarget_zero_reset``; learning rate ``lr``, default 1e-4);
    ``to=None`` keeps the reset.  ``weight_bits=K``: then every weight quantized to K bits and calibrated by
    on-chip online LTL (``export.retarget.quantize_weights``, ``weight_quant``: its quantizer, default
    symmetric).  Of the starting state and each epoch, the one best on a held-out tenth of the training data
    is kept.  ``data``/``labels``/``test``: as for :func:`train` (a test split is required: the report gives
    test accuracy before and after; a built-in dataset brings its own).  ``report``: ``{"retarget": ...,
    "weight_quantization": ...}`` (the steps that ran), the records the CLI writes into the exported file.
    The new student saves with :func:`save_student` and exports with :func:`export_nir`."""
    from .export.options import RETARGETS, WEIGHT_QUANT_DEFAULT
    from .export.retarget import quantize_weights, retarget_zero_reset
    if to is not None and to not in RETARGETS:
        raise SpiketandemError(f"retarget to={to!r} is not one of {', '.join(map(repr, RETARGETS))} or None (keep "
                               "the reset)")
    if to is None and weight_bits is None:
        raise SpiketandemError("retarget with to=None and no weight_bits has nothing to do: pass to='zero-reset' "
                               "and/or weight_bits=K")
    rule, training = _rule_of(student, teacher, data, labels, test, test_labels, num_classes)
    dev, info, cfg, say = _device_of(student), rule.info, rule.cfg, log or (lambda *a, **k: None)
    report: dict = {}
    if to == "zero-reset":
        start = max(student.membrane_inits().values())
        if all(n.config.reset == "zero" for n in student.neurons.values()) and not start:
            report["retarget"] = {"to_reset": "zero", "note": "the student already resets to zero from v = 0; "
                                                              "nothing to do"}
        else:
            rule, cfg, report["retarget"] = retarget_zero_reset(cfg, rule, info, training, dev, epochs=epochs, lr=lr,
                                                                batch_size=batch_size, log=say)
    result = rule.model
    if weight_bits is not None:
        result, report["weight_quantization"] = quantize_weights(
            cfg, rule, info, training, dev, bits=weight_bits, mode=weight_quant or WEIGHT_QUANT_DEFAULT,
            epochs=epochs, lr=lr if lr is not None else cfg.lr, batch_size=batch_size, log=say)
    result.eval()
    result.origin = model_record(rule, student.origin.get("teacher_arch"))
    return result, report


def _rule_of(student: Student, teacher: nn.Module, data, labels, test, test_labels, num_classes):
    """The rule ``student`` was trained by (from its record), holding a copy of it and ``teacher``, and the data
    as the training loop takes it, checked to fit the student and to have a test split."""
    import copy
    from .rules.base import DataInfo
    origin = getattr(student, "origin", None)
    if origin is None:
        raise SpiketandemError("retarget takes a student that spiketandem.api.train or load_student returned (it "
                               "carries the record of how it was built)")
    if not isinstance(teacher, nn.Module):
        raise SpiketandemError(f"retarget recovers the accuracy by LTL against the teacher: pass the trained teacher "
                               f"(an nn.Module), got {type(teacher).__name__}")
    training = _as_training_data(data, labels, test, test_labels, num_classes, augment=False)
    info = DataInfo(**origin["info"])
    given = DataInfo(training.num_classes, training.in_channels, training.image_size)
    if given != info:
        raise SpiketandemError(f"the data given ({given}) do not fit the student, trained for {info}: pass the "
                               "data it was trained on")
    if isinstance(training, UserData) and training.test is None:
        raise SpiketandemError("retarget reports test accuracy before and after: pass test= (images with "
                               "test_labels=, an (images, labels) pair, a Dataset or a DataLoader)")
    dev = _device_of(student)
    cfg = configure(make_config(origin["config"]))
    rule_cls = get_rule(origin["rule"])
    teacher = teacher.to(dev).eval()
    rule = rule_cls(cfg, info, teacher if rule_cls.needs_teacher else None, calibration_images(training, dev))
    rule.model = copy.deepcopy(student).to(dev)
    rule.teacher = teacher
    return rule, training


def export_nir(student: Student, path: str | Path, dt: float | None = None, allow_subtract_reset: bool = False) -> Path:
    """Write the student as a NIR graph (docs/nir.md); returns the path.  Needs ``pip install nir``."""
    from .export import DEFAULT_DT, write_nir
    return write_nir(student.eval(), path, dt=dt or DEFAULT_DT, allow_subtract_reset=allow_subtract_reset)


__all__ = ["check_teacher", "train_ltl", "train", "predict", "accuracy", "synops_ratio", "retarget", "export_nir", "save_student",
           "load_student"]
