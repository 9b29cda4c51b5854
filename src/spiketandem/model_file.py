"""The trained-model file (``student.pt``): everything needed to rebuild the trained rule and its
student from the file alone, and nothing that runs code when loaded (plain values and tensors, read
with ``weights_only=True``).

    {"format": MODEL_FORMAT, "rule": name, "info": DataInfo fields, "config": the RunConfig that ran,
     "teacher_arch": {"name", "width", "act_clip", "act_levels"} of the zoo teacher the student was built from (None for
     a user's own teacher class), "state": Rule.state_dict()}

The student's structure is the teacher's traced graph, so a student of a zoo teacher is rebuilt from the
architecture's name (the teacher's weights are not needed: the student holds its own); a student of a
user's own teacher class is rebuilt given an instance of that class (any weights).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from .errors import SpiketandemError
from .runs import MODEL_FORMAT, atomic_save, safe_load


def zoo_architecture(cfg) -> dict | None:
    """The ``teacher_arch`` entry of a student built from the zoo architecture of ``cfg`` (None for a student
    of the user's own module, ``cfg.teacher_class``)."""
    if getattr(cfg, "teacher_class", None):
        return None
    return {"name": cfg.arch, "width": cfg.width, "act_clip": cfg.act_clip, "act_levels": cfg.act_levels}


def model_record(rule, teacher_arch: dict | None) -> dict:
    """The model file's entries except the state."""
    return {"format": MODEL_FORMAT, "rule": rule.name, "info": dataclasses.asdict(rule.info),
            "config": rule.cfg.to_dict(), "teacher_arch": teacher_arch}


def save_model(rule, path: str | Path, teacher_arch: dict | None) -> None:
    """Write ``rule`` (its config and every module and state it trains) as a model file, atomically."""
    atomic_save({**model_record(rule, teacher_arch), "state": rule.state_dict()}, Path(path))


def read_model(path: str | Path, device="cpu") -> dict:
    """The model file at ``path`` (or ``path/student.pt`` for a run folder), checked to be one."""
    path = Path(path)
    if path.is_dir():
        path = path / "student.pt"
    obj = safe_load(path, "trained model", map_location=device, expected_format=MODEL_FORMAT)
    check_record(obj, path)
    return obj


INFO_KEYS = ("num_classes", "in_channels", "image_size")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_info(info, path, what: str) -> None:
    """``info`` (a file's DataInfo entry) is a mapping of three positive integers, else one clear error."""
    if not isinstance(info, dict) or sorted(info) != sorted(INFO_KEYS) or not all(
            _is_int(info[k]) and info[k] > 0 for k in INFO_KEYS):
        raise SpiketandemError(f"{what} {path} is damaged: its 'info' is not {{{', '.join(INFO_KEYS)}}} (positive "
                               "integers); re-create the file with spiketandem")


def check_record(obj: dict, path) -> None:
    """A model file's entries are those ``save_model`` writes (else one clear error naming the file), and
    its stored config is a valid one."""
    from .config import make_config
    from .rules.catalog import CATALOG
    damaged = f"trained model {path} is damaged or not a model file spiketandem wrote"
    for key, kind in (("rule", str), ("info", dict), ("config", dict), ("state", dict)):
        if not isinstance(obj.get(key), kind):
            raise SpiketandemError(f"{damaged} (its {key!r} entry is missing or not a {kind.__name__}); re-create it "
                                   "with `spiketandem train`")
    if obj["rule"] not in CATALOG:
        raise SpiketandemError(f"{damaged}: it names the rule {obj['rule']!r}, which is not one of "
                               f"{', '.join(CATALOG)}")
    check_info(obj["info"], path, "trained model")
    arch = obj.get("teacher_arch")
    if arch is not None and not (isinstance(arch, dict) and isinstance(arch.get("name"), str)):
        raise SpiketandemError(f"{damaged} (its 'teacher_arch' entry is not {{name, width, act_clip}})")
    try:
        make_config(obj["config"])
    except SpiketandemError as e:
        raise SpiketandemError(f"{damaged}: its stored config is invalid ({e})") from None


def load_weights(module: nn.Module, state, label: str, fix: str | None = None) -> None:
    """``module.load_state_dict(state)``; weights that do not fit (missing, extra, of another shape) are
    one clear error naming the file (``label``: e.g. "trained model run/student.pt"), not torch's
    many-line report.  ``fix``: what the error tells the user to do (default: the file spiketandem wrote
    is damaged; re-create it)."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = next((line for line in lines if not line.startswith("Error(s) in loading")), lines[0] if lines else "")
        if fix is not None:
            raise SpiketandemError(f"{label}: its weights do not fit the network named "
                                   f"({misfit(module, state) or detail[:200]}); {fix}") from None
        raise SpiketandemError(f"{label} is damaged: its weights do not fit the model it describes "
                               f"({detail[:200]}); re-create it with spiketandem") from None


def misfit(module: nn.Module, state) -> str:
    """How the weights ``state`` differ from ``module``'s, in a few words: the names missing from the file, the
    names the network lacks (three of each, and how many) and the first tensor of another shape; "" if none."""
    if not isinstance(state, dict):
        return ""
    own = module.state_dict()

    def few(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    missing, extra = [k for k in own if k not in state], [k for k in state if k not in own]
    shaped = [k for k in own if k in state and torch.is_tensor(state[k]) and state[k].shape != own[k].shape]
    parts = ([f"the file lacks {few(missing)}"] if missing else []) + \
        ([f"the network has no {few(extra)}"] if extra else []) + \
        ([f"{shaped[0]} is {list(state[shaped[0]].shape)} in the file, {list(own[shaped[0]].shape)} in the network"]
         if shaped else [])
    return "; ".join(parts)


def rebuild_rule(obj: dict, device, teacher: nn.Module | None = None, source: str | Path | None = None):
    """The trained rule of a model file, with its saved state.  ``teacher``: the real teacher (for
    evaluation against it), or an instance of the user's teacher class; without one, a zoo teacher's
    architecture is rebuilt from ``teacher_arch`` (its weights are not needed).  ``source``: the file's
    path, for errors."""
    from .config import make_config
    from .models import build_model
    from .rules import configure, get_rule
    from .rules.base import DataInfo
    cfg = configure(make_config(obj["config"]))
    info = DataInfo(**obj["info"])
    rule_cls = get_rule(obj["rule"])
    given = teacher is not None  # the caller's own teacher instance (else a zoo teacher is rebuilt here)
    if rule_cls.needs_teacher and teacher is None:
        arch = obj.get("teacher_arch")
        if not arch:
            own = f"{cfg.teacher_class} (--teacher-class)" if cfg.teacher_class else "a teacher class of your own"
            name = cfg.teacher_class.partition(":")[2] if cfg.teacher_class else "MyNet"
            raise SpiketandemError(f"this student was built from {own}: pass an instance of it (any weights), e.g. "
                                   f"load_student(path, teacher={name}())")
        teacher = build_model(arch["name"], info.num_classes, info.in_channels, info.image_size, arch["width"],
                              arch.get("act_clip"), arch.get("act_levels"))
    if teacher is not None:
        teacher = teacher.to(device).eval()
    what = f"trained model {source}" if source is not None else "the trained model"
    try:
        rule = rule_cls(cfg, info, teacher if rule_cls.needs_teacher else None, None)
        for module in rule.modules().values():
            module.to(device)
        load_weights(rule, obj["state"], what)
    except Exception as e:  # noqa: BLE001 - a teacher of another shape fails in tracing or in loading the weights
        if not (given and rule_cls.needs_teacher):
            raise
        raise SpiketandemError(
            f"the teacher given does not fit the {what}: its student was built from a teacher of "
            f"{info.in_channels}-channel {info.image_size}x{info.image_size} images and {info.num_classes} classes "
            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else 'no message'}); pass an instance "
            "of the class the student was trained from (any weights)") from None
    rule.train(False)
    return rule


def load_student(path: str | Path, *, teacher: nn.Module | None = None, device: str = "cpu"):
    """The trained spiking student (a :class:`~spiketandem.student.Student`, in eval mode) of a model
    file or run folder, rebuilt from the file alone (see the module docstring for ``teacher``).
    ``student(x, T)`` gives the readout ``[T, B, classes]``; ``spiketandem.api.predict`` the scores."""
    from .student import Student
    obj = read_model(path, device)
    rule = rebuild_rule(obj, torch.device(device), teacher, source=path)
    if not isinstance(rule.model, Student):
        raise SpiketandemError(f"{path} holds a {obj['rule']!r} model, which is not a spiking student")
    rule.model.origin = model_record(rule, obj.get("teacher_arch"))
    return rule.model


def save_student(student, path: str | Path) -> Path:
    """Write a student returned by ``spiketandem.api.train`` (or :func:`load_student`) as a model file
    that :func:`load_student` rebuilds alone."""
    origin = getattr(student, "origin", None)
    if origin is None:
        raise SpiketandemError("this student carries no record of how it was built; save the students that "
                               "spiketandem.api.train or load_student return")
    path = Path(path)
    atomic_save({**origin, "state": {"model": student.state_dict(), "extra": {}}}, path)
    return path
