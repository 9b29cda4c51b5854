"""Teacher files: writing and reading ``teacher.pt``, and the teachers that ship with the package.

A teacher is named by a path (a ``teacher.pt`` file, or a run folder holding one) or, for a shipped teacher,
by ``pretrained:NAME`` (e.g. ``--teacher pretrained:resnet20-cifar10``): the file
``spiketandem/pretrained/NAME.pt`` installed with the package, read offline with ``weights_only=True``
like every other file, beside ``NAME.json``, the record of how it was made (the command, seed, data,
test accuracy and training time that produced it)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import statistics
from pathlib import Path

import torch

from .errors import SpiketandemError
from .model_file import check_info, load_weights
from .models import build_model
from .rules.base import DataInfo
from .runs import TEACHER_FORMAT, atomic_save, safe_load

PRETRAINED = "pretrained:"
PRETRAINED_FOLDER = Path(__file__).parent / "pretrained"


def pretrained_names() -> list[str]:
    """The names of the teachers that ship with the package."""
    return sorted(p.stem for p in PRETRAINED_FOLDER.glob("*.pt"))


def pretrained_record(name: str) -> dict:
    """How the shipped teacher ``name`` was made (its ``NAME.json``)."""
    return json.loads((PRETRAINED_FOLDER / f"{name}.json").read_text(encoding="utf-8"))


def teacher_file(spec: str | Path) -> Path:
    """The ``teacher.pt`` that ``spec`` names: ``pretrained:NAME``, a run folder, or the file itself."""
    text = str(spec)
    if text.startswith(PRETRAINED):
        name = text[len(PRETRAINED):]
        if name not in pretrained_names():
            shipped = ", ".join(PRETRAINED + n for n in pretrained_names()) or "none"
            raise SpiketandemError(f"no shipped teacher is called {name!r}; the shipped teachers: {shipped}")
        return PRETRAINED_FOLDER / f"{name}.pt"
    return Path(spec) / "teacher.pt" if Path(spec).is_dir() else Path(spec)


def save_teacher(model: torch.nn.Module, cfg, info: DataInfo, accuracy: float, path: Path) -> None:
    atomic_save({"format": TEACHER_FORMAT, "arch": cfg.arch, "width": cfg.width, "act_clip": cfg.act_clip,
                 "act_levels": cfg.act_levels, "dataset": cfg.dataset,
                 "info": dataclasses.asdict(info), "state_dict": model.state_dict(), "accuracy": accuracy}, path)


def read_teacher_record(spec: str | Path, device="cpu") -> dict:
    """The record of the teacher ``spec`` names (see :func:`teacher_file`), checked: its architecture, width,
    activation, data shape, accuracy and weights."""
    path = teacher_file(spec)
    obj = safe_load(path, "teacher checkpoint", map_location=device, expected_format=TEACHER_FORMAT)
    check_info(obj.get("info"), path, "teacher checkpoint")
    if not (isinstance(obj.get("arch"), str) and isinstance(obj.get("state_dict"), dict)
            and isinstance(obj.get("width"), (int, float))):
        raise SpiketandemError(f"teacher checkpoint {path} is damaged (no 'arch', 'width' or 'state_dict' entry); "
                               "train the teacher again (`spiketandem teacher`)")
    bad = [k for k, v in obj["state_dict"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise SpiketandemError(f"teacher {path} holds non-finite values ({', '.join(bad[:3])}): its training diverged; "
                               "train it again with a lower --lr")
    return obj


def load_teacher(spec: str | Path, info: DataInfo | None = None, device="cpu") -> tuple[torch.nn.Module, dict]:
    """The teacher ``spec`` names (``pretrained:NAME``, a ``teacher.pt`` file or a run folder holding one) as
    an eval-mode model, and its record; ``info``: the data it must fit (else one clear error)."""
    path = teacher_file(spec)
    obj = read_teacher_record(path, device)
    saved = DataInfo(**obj["info"])
    if info is not None and saved != info:
        trained_on = f" ({obj['dataset']}: pass --dataset {obj['dataset']} and its --data-dir)" if obj.get("dataset") else ""
        raise SpiketandemError(f"teacher {spec} was trained for {saved}{trained_on} but this dataset is {info}; use "
                               "the teacher's dataset, or train a teacher on this one (`spiketandem teacher --dataset ...`)")
    model = build_model(obj["arch"], saved.num_classes, saved.in_channels, saved.image_size, obj["width"],
                        obj.get("act_clip"), obj.get("act_levels"))
    load_weights(model, obj["state_dict"], f"teacher checkpoint {spec}")
    return model.to(device).eval(), obj


def ship_teacher(run_dir: str | Path, name: str, folder: Path | None = None) -> Path:
    """Make the finished teacher run ``run_dir`` the shipped teacher ``name``: its ``teacher.pt`` copied to
    ``folder/NAME.pt`` (default: the package's), beside ``NAME.json``, the record of how it was made, from
    the run's own files: the command and seed, the settings, the data (its file's MD5 where it is one), the
    test accuracy, the training time and the software that ran."""
    from .runs import RunFolder
    run = RunFolder(run_dir)
    config, summary = run.read_config(), run.read_json("summary.json")
    record = read_teacher_record(run.file("teacher.pt"))
    made = config.get("provenance") or {}
    data_file = Path(config["data_dir"]) if config.get("data_dir") else None
    epochs = [r["epoch_seconds"] for r in run.read_metrics()]
    folder = Path(folder or PRETRAINED_FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.pt"
    shutil.copyfile(run.file("teacher.pt"), target)
    shipped = {
        "name": name, "arch": record["arch"], "width": record["width"], "act_clip": record.get("act_clip"),
        "dataset": record.get("dataset"), "test_accuracy": record["accuracy"],
        "test_samples": summary.get("test_samples"),
        "data": {"path": str(data_file) if data_file else None,
                 "md5": hashlib.md5(data_file.read_bytes()).hexdigest() if data_file and data_file.is_file() else None,
                 "n_train": config.get("n_train"), "n_test": config.get("n_test")},
        "command": " ".join(map(str, made.get("command") or [])), "seed": config.get("seed"),
        "settings": {k: config.get(k) for k in ("epochs", "batch_size", "optimizer", "lr", "weight_decay",
                                                "lr_schedule", "label_smoothing", "act_clip", "amp", "channels_last")},
        "train_seconds": summary.get("train_seconds"),
        "epoch_seconds_median": statistics.median(epochs) if epochs else None,
        "software": {k: made.get(k) for k in ("spiketandem", "git_commit", "torch", "python")},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "device": made.get("device")},
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    (folder / f"{name}.json").write_text(json.dumps(shipped, indent=2) + "\n", encoding="utf-8")
    return target
