"""Run folders: config.yaml, metrics.jsonl, summary.json, checkpoint.pt, and the trained models.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written file behind.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import yaml

from .errors import SpiketandemError

TEACHER_FORMAT = "spiketandem-teacher-1"
MODEL_FORMAT = "spiketandem-model-2"  # model_file.py: rule, info, config, teacher_arch, state


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; run files are for everyone who may read the folder
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        # a failed write (a full disk) names the file it was for; torch.save reports it as a RuntimeError
        cause = e if isinstance(e, OSError) else e.__context__ if isinstance(e, RuntimeError) else None
        if isinstance(cause, OSError) and cause.errno is not None and cause.filename in (None, tmp):
            raise OSError(cause.errno, cause.strerror, str(path)) from None
        raise


def atomic_save(obj, path: Path) -> None:
    import torch
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def atomic_text(text: str, path: Path) -> None:
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def safe_load(path: Path, what: str, map_location="cpu", *, expected_format: str | None = None) -> dict:
    """Load a spiketandem model or checkpoint file (``what`` names it in errors) without running code.

    Every model and checkpoint load goes through here, with ``torch.load(weights_only=True)``: only
    tensors (with their dtypes and ``torch.Size``), dicts (``OrderedDict`` too), lists, tuples, str,
    int, float, bool and None are rebuilt.  That is all spiketandem writes: module, optimizer and
    scheduler state dicts, the RNG state (a ByteTensor) and plain metadata (``DataInfo`` as a dict), so
    no allow-list is needed.  A full pickle load can build any object, and a crafted file uses that to
    run code the moment it is loaded; a file that needs anything else is therefore refused, before any
    of it is built.  The result must be a dict whose 'format' is ``expected_format`` (when given).
    """
    obj = load_weights_only(path, what, map_location)
    if not isinstance(obj, dict) or not isinstance(obj.get("format"), str):
        raise SpiketandemError(f"{what} {path} is not a spiketandem file (no 'format' key)")
    if expected_format is not None and obj["format"] != expected_format:
        raise SpiketandemError(f"{what} {path} is a {obj['format']} file, not a {expected_format} one; pass a {what} "
                               "that spiketandem wrote")
    return obj


def load_weights_only(path: str | Path, what: str, map_location="cpu", *,
                      unsafe_fix: str = "re-create the file with spiketandem",
                      corrupt: str = "a spiketandem file",
                      corrupt_fix: str = "delete it and re-run the command that makes it"):
    """``torch.load(path, weights_only=True)``, or one clear error (``what`` names the file): a file that
    would run code when loaded is refused naming what it imports (``unsafe_fix`` says what to do), an
    unreadable one is called not ``corrupt`` (``corrupt_fix``)."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise SpiketandemError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the errors below say enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever torch cannot read as weights
        reason = _reason(e)
        code = _code_it_would_run(path, reason)
        if code:
            raise SpiketandemError(f"{what} {path} was refused: it holds objects that would run code when loaded "
                                   f"({', '.join(code[:4])}); spiketandem loads only weights (tensors and plain "
                                   f"values): {unsafe_fix}") from None
        raise SpiketandemError(f"{what} {path} is corrupt or not {corrupt} ({reason}); {corrupt_fix}") from None


def _reason(error: Exception) -> str:
    """One line from a failed load: the weights-only reader's own verdict, else the error's first line."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def _code_it_would_run(path: Path, reason: str) -> list[str]:
    """The functions and classes (beyond weights) a refused file imports; [] if it is merely unreadable."""
    named = re.findall(r"Unsupported (?:global: GLOBAL|class) (\S+)", reason)  # torch >= 2.4 | older torch
    if not named:
        return []
    import torch
    try:  # full names (zip files, torch >= 2.5); it reads the pickle's opcodes and runs nothing
        return torch.serialization.get_unsafe_globals_in_checkpoint(path) or named
    except Exception:
        return named


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file("config.yaml").is_file()

    def write_config(self, cfg, provenance: dict | None = None) -> None:
        """config.yaml: the resolved config that runs, then (``provenance:``) where it came from."""
        record = cfg.to_dict()
        if provenance is not None:
            record["provenance"] = provenance
        atomic_text(yaml.safe_dump(record, sort_keys=False), self.file("config.yaml"))

    def read_config(self) -> dict:
        """config.yaml as a dict; a missing, empty, unreadable or non-mapping file is one clear error
        (never "the defaults")."""
        from .config import read_yaml_text
        path = self.file("config.yaml")
        if not path.is_file():
            raise SpiketandemError(f"{self.path} is not a run folder (no config.yaml); pass the folder a `train`, "
                                   "`teacher` or `demo` run wrote")
        fix = "restore it, or start the run again (--overwrite)"
        data = read_yaml_text(path, "run config")  # names the file and what is wrong with it
        if data is None:
            raise SpiketandemError(f"run config {path} is empty (damaged); {fix}")
        if not isinstance(data, dict):
            raise SpiketandemError(f"run config {path} is damaged: it holds a {type(data).__name__}, not a mapping of "
                                   f"config fields; {fix}")
        return data

    def append_metrics(self, row: dict) -> None:
        """Add one epoch's row; rows of that epoch or later (from an earlier attempt) are dropped, so the
        file never holds an epoch twice."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) < row["epoch"]]
        rows.append(row)
        atomic_text("".join(json.dumps(r) + "\n" for r in rows), self.file("metrics.jsonl"))

    def read_metrics(self, name: str = "metrics.jsonl") -> list[dict]:
        """The rows of ``name`` (one JSON object per line; none if the file is absent); a damaged line is
        one clear error naming the file and the line."""
        path = self.file(name)
        if not path.is_file():
            return []
        rows = []
        for number, line in enumerate(_read_text(path, "metrics file").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise SpiketandemError(f"metrics file {path} is damaged at line {number} ({_json_problem(e)}); "
                                       "repair or delete that line") from None
            if not isinstance(row, dict) or not isinstance(row.get("epoch", 0), int) or isinstance(row.get("epoch"), bool):
                raise SpiketandemError(f"metrics file {path} is damaged at line {number}: each line must be one "
                                       "JSON object of an epoch's metrics (with an integer 'epoch'); repair or "
                                       "delete that line")
            rows.append(row)
        return rows

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the rows of the first ``epochs`` epochs (a resumed run rewrites the later ones)."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs]  # epochs are 1-based
        atomic_text("".join(json.dumps(r) + "\n" for r in rows), self.file("metrics.jsonl"))

    def write_json(self, name: str, obj: dict) -> None:
        atomic_text(json.dumps(obj, indent=2) + "\n", self.file(name))

    def read_json(self, name: str) -> dict:
        """The JSON object in ``name``; a missing, damaged or non-object file is one clear error."""
        path = self.file(name)
        if not path.is_file():
            raise SpiketandemError(f"{path} does not exist; is {self.path} a finished run?")
        fix = (f"delete it and run `spiketandem eval {self.path}` to write it again" if name in ("summary.json",
               "activity.json") else "restore it or delete it")
        text = _read_text(path, "run file")
        if not text.strip():
            raise SpiketandemError(f"run file {path} is empty (damaged); {fix}")
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise SpiketandemError(f"run file {path} is damaged: not valid JSON ({_json_problem(e)}); {fix}") from None
        if not isinstance(obj, dict):
            raise SpiketandemError(f"run file {path} is damaged: it holds a JSON {type(obj).__name__}, not an object; "
                                   f"{fix}")
        return obj


def _read_text(path: Path, what: str) -> str:
    """``path`` as UTF-8 text; one clear error for a file that is binary or cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpiketandemError(f"{what} {path} is damaged: not UTF-8 text; restore it or delete it") from None
    except OSError as e:
        raise SpiketandemError(f"cannot read {what} {path}: {e.strerror}") from None


def _json_problem(error: ValueError) -> str:
    """One line from a JSON parse error: what and where."""
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} (line {error.lineno}, column {error.colno})"
    return str(error).splitlines()[0]
