"""Teacher files: writing and reading ``teacher.pt``, and the teachers that ship with the package.

A teacher is named by a path (a ``teacher.pt`` file, or a run folder holding one) or, for a shipped teacher,
by ``pretrained:NAME`` (e.g. ``--teacher pretrained:resnet20-cifar10``): the file
``spiketandem/pretrained/NAME.pt`` installed with the package, read offline with ``weights_only=True``
like every other file, beside ``NAME.json``, the record of how it was made (the command, seed, data,
test accuracy and training time that produced it).

A teacher trained outside spiketandem enters as its ``state_dict`` file (``torch.save(model.state_dict(), path)``,
read with ``weights_only=True``), with the network it belongs to: a zoo architecture (``--arch NAME`` with the
``--width``, ``--act-clip`` and ``--act-levels`` it was trained with, built for the dataset's shape) or the user's
own module (``--teacher-class MODULE:NAME``: a ``torch.nn.Module`` class, or a function of no arguments that returns
the model, imported from the current folder or the installed packages).  A run writes the teacher it used as its own
``teacher.pt`` record; a record of a user's module names the class, which is imported only where the caller names
it again (``--teacher-class``, or an instance passed from Python), never because a file says so."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

from .errors import SpiketandemError
from .model_file import check_info, load_weights
from .models import build_model
from .rules.base import DataInfo
from .runs import TEACHER_FORMAT, atomic_save, load_weights_only

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


def save_teacher(model: torch.nn.Module, cfg, info: DataInfo, accuracy: float | None, path: Path) -> None:
    """Write ``model`` as a teacher record: the network (the zoo architecture of ``cfg``, or the user's module
    ``cfg.teacher_class``), the data shape, the weights and the test accuracy."""
    teacher_class = getattr(cfg, "teacher_class", None)
    atomic_save({"format": TEACHER_FORMAT, "arch": None if teacher_class else cfg.arch,
                 "teacher_class": teacher_class, "width": cfg.width, "act_clip": cfg.act_clip,
                 "act_levels": cfg.act_levels, "dataset": cfg.dataset,
                 "info": dataclasses.asdict(info), "state_dict": model.state_dict(), "accuracy": accuracy}, path)


def read_teacher_record(spec: str | Path, device="cpu") -> dict:
    """The record of the teacher ``spec`` names (see :func:`teacher_file`), checked: its architecture, width,
    activation, data shape, accuracy and weights."""
    path = teacher_file(spec)
    obj = read_weights_file(path, device)
    if "format" not in obj:
        raise SpiketandemError(f"teacher {spec} holds plain weights (a state_dict), not a teacher record: `spiketandem "
                               "train` takes it with --arch NAME or --teacher-class MODULE:NAME (docs/teachers.md), "
                               "and writes the record every command takes as its run's teacher.pt")
    return _teacher_record_of(obj, path)


def _teacher_record_of(obj: dict, path: Path) -> dict:
    """``obj``, a file spiketandem wrote, as a checked teacher record (another kind of file is one clear error)."""
    if obj["format"] != TEACHER_FORMAT:
        raise SpiketandemError(f"teacher {path} is a {obj['format']} file, not a {TEACHER_FORMAT} one; pass a "
                               "teacher.pt, a teacher run folder or a state_dict file")
    return _checked_record(obj, path)


def _checked_record(obj: dict, path: Path) -> dict:
    """A teacher record read from ``path``, checked (else one clear error naming the file)."""
    check_info(obj.get("info"), path, "teacher checkpoint")
    network = isinstance(obj.get("arch"), str) and isinstance(obj.get("width"), (int, float))
    if not ((network or isinstance(obj.get("teacher_class"), str)) and isinstance(obj.get("state_dict"), dict)):
        raise SpiketandemError(f"teacher checkpoint {path} is damaged (no 'arch', 'width' or 'state_dict' entry); "
                               "train the teacher again (`spiketandem teacher`)")
    _check_finite(obj["state_dict"], path)
    return obj


def _check_finite(state: dict, path) -> None:
    """Every floating-point weight of ``state`` is finite, else one clear error (a diverged training)."""
    bad = [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise SpiketandemError(f"teacher {path} holds non-finite values ({', '.join(bad[:3])}): its training diverged; "
                               "train it again with a lower --lr")


def load_teacher(spec: str | Path, info: DataInfo | None = None, device="cpu") -> tuple[torch.nn.Module, dict]:
    """The teacher ``spec`` names (``pretrained:NAME``, a ``teacher.pt`` file or a run folder holding one) as
    an eval-mode model, and its record; ``info``: the data it must fit (else one clear error).  A record of
    the user's own module is refused in one line: its class is imported only where the caller names it
    (``--teacher-class``, or ``load_student(..., teacher=MyNet())`` from Python)."""
    obj = read_teacher_record(spec, device)
    if obj.get("teacher_class"):
        raise SpiketandemError(_class_record_refusal(spec, obj["teacher_class"]))
    return _teacher_from_record(obj, _fitting_info(obj, spec, info), device, f"teacher checkpoint {spec}"), obj


def _class_record_refusal(spec, teacher_class: str, *, training: bool = False) -> str:
    """Why a record of the user's module ``teacher_class`` is not rebuilt from the file alone, and what to do
    (``training``: a run given it as --teacher, which may name the class)."""
    name = teacher_class.partition(":")[2] or teacher_class
    why = f"the teacher {spec} is your own module {teacher_class}, and spiketandem does not import code because a " \
          "file names it"
    if training:
        return f"{why}: pass --teacher-class {teacher_class} with --teacher {spec}"
    path = teacher_file(spec)
    run = path.parent if path.name == "teacher.pt" else "RUN"
    return (f"{why} (--teacher-class): rebuild its run in Python, spiketandem.load_student('{run}', "
            f"teacher={name}()), and evaluate or export it with spiketandem.api (accuracy, export_nir)")


def _fitting_info(record: dict, spec, info: DataInfo | None) -> DataInfo:
    """The data shape of a teacher record, checked against the dataset's ``info`` (when given)."""
    saved = DataInfo(**record["info"])
    if info is not None and saved != info:
        trained_on = f" ({record['dataset']}: pass --dataset {record['dataset']} and its --data-dir)" \
            if record.get("dataset") else ""
        raise SpiketandemError(f"teacher {spec} was trained for {saved}{trained_on} but this dataset is {info}; use "
                               "the teacher's dataset, or train a teacher on this one (`spiketandem teacher --dataset ...`)")
    return saved


def _teacher_from_record(record: dict, info: DataInfo, device, label: str, fix: str | None = None) -> nn.Module:
    """The eval-mode network a zoo record describes (``arch``, ``width``, ``act_clip``, ``act_levels``), built
    for ``info``, holding the record's weights (``fix``: what a misfit's error tells the user to do)."""
    model = build_model(record["arch"], info.num_classes, info.in_channels, info.image_size, record["width"],
                        record.get("act_clip"), record.get("act_levels"))
    load_weights(model, record["state_dict"], label, fix)
    return model.to(device).eval()


# ---- a teacher trained outside spiketandem --------------------------------------------------------------

@contextlib.contextmanager
def _current_folder_importable():
    """The current folder first on ``sys.path`` (as ``python -m`` has it), for the block's imports only."""
    here = os.getcwd()
    sys.path.insert(0, here)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(here)


def _import_factory(spec: str):
    """The object ``MODULE:NAME`` names (``NAME`` may be dotted), imported; one clear error for each way it fails."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or " " in spec:
        raise SpiketandemError(f"--teacher-class {spec!r} is not MODULE:NAME; name the module and the class, e.g. "
                               "--teacher-class mynets:MyNet for class MyNet in mynets.py of the current folder")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise SpiketandemError(f"--teacher-class {spec}: no module {module_name!r} in the current folder or "
                                   f"the installed packages; run from the folder that holds "
                                   f"{module_name.replace('.', '/')}.py, or install its package") from None
        raise SpiketandemError(f"--teacher-class {spec}: importing {module_name} failed (ModuleNotFoundError: "
                               f"{e}); install what it imports") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while it was imported
        raise SpiketandemError(f"--teacher-class {spec}: importing {module_name} failed ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160] if str(e) else 'no message'}); fix the module until "
                               f"`python -c 'import {module_name}'` runs") from None
    found = module
    for part in attr.split("."):
        if not hasattr(found, part):
            defined = sorted(n for n, v in vars(module).items() if not n.startswith("_") and (
                inspect.isfunction(v) or (inspect.isclass(v) and issubclass(v, nn.Module)))
                and getattr(v, "__module__", None) == module.__name__)
            raise SpiketandemError(f"--teacher-class {spec}: module {module_name} has no {attr!r} (it defines: "
                                   f"{', '.join(defined[:8]) or 'no classes or functions'}); name one of those")
        found = getattr(found, part)
    return found


def build_teacher_class(spec: str) -> nn.Module:
    """A new instance of the user's teacher module named by ``spec`` (``MODULE:NAME``: an ``nn.Module`` class
    or a function of no arguments that returns the model), imported with the current folder first on the
    path and called with no arguments (random weights)."""
    with _current_folder_importable():
        factory = _import_factory(spec)
        if not callable(factory):
            raise SpiketandemError(f"--teacher-class {spec} is a {type(factory).__name__}, not a class or function; "
                                   "name your nn.Module class")
        try:
            inspect.signature(factory).bind()
        except TypeError as e:
            raise SpiketandemError(f"--teacher-class {spec} cannot be called with no arguments ({e}); name a "
                                   "function of no arguments that returns your model instead, e.g. def "
                                   "make_teacher(): return MyNet(width=2), and pass --teacher-class "
                                   f"{spec.partition(':')[0]}:make_teacher") from None
        except ValueError:  # no signature to read (a builtin): the call below says what is wrong
            pass
        try:
            model = factory()
        except Exception as e:  # noqa: BLE001 - the user's constructor failed
            raise SpiketandemError(f"--teacher-class {spec}: {spec.partition(':')[2]}() raised {type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:160] if str(e) else 'no message'}; it is called with "
                                   "no arguments and must return your nn.Module") from None
    if not isinstance(model, nn.Module):
        raise SpiketandemError(f"--teacher-class {spec}: calling it returned a {type(model).__name__}, not a "
                               "torch.nn.Module; name your nn.Module class (or a function returning an instance)")
    return model


def read_weights_file(path: Path, device="cpu") -> dict:
    """A user's ``state_dict`` file (``torch.save(model.state_dict(), path)``), or a teacher record spiketandem
    wrote, read with ``weights_only=True``: nothing in it runs code.  One clear error for a file that holds
    more than weights (e.g. ``torch.save(model, path)``) or no dict of tensors."""
    save = "torch.save(model.state_dict(), path)"
    obj = load_weights_only(path, "teacher", device, unsafe_fix=f"re-create the file with spiketandem, or save "
                            f"your model's weights alone with {save}", corrupt="a spiketandem file or state_dict",
                            corrupt_fix=f"re-create it, or save your model's weights with {save}")
    if isinstance(obj, dict) and "format" not in obj and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a checkpoint dict {"state_dict": ..., "epoch": ...}
    if not isinstance(obj, dict) or not obj or ("format" not in obj and not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())):
        raise SpiketandemError(f"teacher {path} holds a {type(obj).__name__}, not a state_dict (names to tensors); "
                               "save the weights with torch.save(model.state_dict(), path)")
    if "format" not in obj:
        _check_finite(obj, path)
    return obj


def given_teacher_record(cfg) -> dict:
    """The record of the teacher ``cfg.teacher`` names, checked before any work: a teacher spiketandem wrote
    (its own record), or the user's plain weights with the network named by ``cfg.teacher_class`` or by the
    zoo architecture ``cfg.arch`` (``width``, ``act_clip``, ``act_levels`` as the flags say; no ``info``,
    ``dataset`` or ``accuracy`` yet: the data decide them).  A user's module is built and its weights loaded
    here, so a misfit is refused before the data are read."""
    path = teacher_file(cfg.teacher)
    obj = read_weights_file(path)
    if "format" in obj:  # a file spiketandem wrote: it must be a teacher
        record = _teacher_record_of(obj, path)
        if record.get("teacher_class") and not cfg.teacher_class:
            raise SpiketandemError(_class_record_refusal(cfg.teacher, record["teacher_class"], training=True))
        if cfg.teacher_class and not record.get("teacher_class"):
            raise SpiketandemError(f"--teacher {cfg.teacher} is a {record['arch']} spiketandem trained; drop "
                                   f"--teacher-class (it names the module of a state_dict file)")
        return {**record, "teacher_class": cfg.teacher_class or None, "given": "record"}
    if cfg.teacher_class:
        model = build_teacher_class(cfg.teacher_class)
        load_weights(model, obj, f"--teacher {cfg.teacher}", f"pass the weights of a {cfg.teacher_class} (a file "
                     "saved with torch.save(model.state_dict(), path) from the same class)")
        return {"arch": None, "teacher_class": cfg.teacher_class, "width": cfg.width, "act_clip": None,
                "act_levels": None, "state_dict": obj, "info": None, "dataset": None, "accuracy": None,
                "given": "weights"}
    if cfg.arch is None:
        raise SpiketandemError(f"--teacher {cfg.teacher} holds plain weights (a state_dict), not a teacher spiketandem "
                               "wrote: name the network they belong to, with --arch NAME (a zoo architecture, with the "
                               "--width and --act-clip it was trained with) or --teacher-class MODULE:NAME (your own "
                               "nn.Module)")
    return {"arch": cfg.arch, "teacher_class": None, "width": cfg.width, "act_clip": cfg.act_clip,
            "act_levels": cfg.act_levels, "state_dict": obj, "info": None, "dataset": None, "accuracy": None,
            "given": "weights"}


def load_given_teacher(cfg, info: DataInfo, device="cpu") -> tuple[nn.Module, dict]:
    """The eval-mode teacher of a run (``cfg.teacher``, with ``cfg.teacher_class`` or ``cfg.arch`` for plain
    weights; see :func:`given_teacher_record`) for data of shape ``info``, and its record (``info`` and
    ``dataset`` filled in).  Weights or a module that do not fit the data are one clear error."""
    record = given_teacher_record(cfg)
    if record["info"] is not None:
        info = _fitting_info(record, cfg.teacher, info)
    record = {**record, "info": dataclasses.asdict(info), "dataset": record.get("dataset") or cfg.dataset}
    if record["teacher_class"]:
        model = build_teacher_class(record["teacher_class"])
        load_weights(model, record["state_dict"], f"--teacher {cfg.teacher}")
        check_teacher_output(model, info, f"--teacher-class {record['teacher_class']}")
        return model.to(device).eval(), record
    fix = None if record["given"] == "record" else (
        f"pass the --arch, --width and --act-clip it was trained with (here --arch {record['arch']} --width "
        f"{record['width']:g} for {info.in_channels}-channel {info.image_size}x{info.image_size} images of "
        f"{info.num_classes} classes), or --teacher-class MODULE:NAME for your own module")
    label = f"teacher checkpoint {cfg.teacher}" if record["given"] == "record" else f"--teacher {cfg.teacher}"
    return _teacher_from_record(record, info, device, label, fix), record


@torch.no_grad()
def check_teacher_output(model: nn.Module, info: DataInfo, label: str) -> None:
    """``model`` maps two images of the dataset's shape to ``[2, num_classes]`` scores, else one clear error."""
    x = info.example_input(2)
    was_training = model.training
    model.eval()
    try:
        out = model(x)
    except Exception as e:  # noqa: BLE001 - the user's forward failed on this data's shape
        raise SpiketandemError(f"{label} fails on this dataset's images {list(x.shape[1:])} ({type(e).__name__}: "
                               f"{str(e).splitlines()[0][:160] if str(e) else 'no message'}); pass the dataset the "
                               "module was built for, or build it for this one") from None
    finally:
        model.train(was_training)
    if not torch.is_tensor(out) or tuple(out.shape) != (2, info.num_classes):
        shape = list(out.shape) if torch.is_tensor(out) else type(out).__name__
        raise SpiketandemError(f"{label} gives {shape} for 2 images, but this dataset has {info.num_classes} "
                               f"classes: its output must be [batch, {info.num_classes}] class scores")


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
