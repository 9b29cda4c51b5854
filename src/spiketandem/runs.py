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

import torch
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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj, path: Path) -> None:
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
    path = Path(path)
    if not path.is_file():
        raise SpiketandemError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the errors below say enough
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        reason = _reason(e)
        code = _code_it_would_run(path, reason)
        if code:
            raise SpiketandemError(f"{what} {path} was refused: it holds objects that would run code when loaded "
                                   f"({', '.join(code)}); spiketandem loads only weights (tensors and plain "
                                   "values): re-create the file with spiketandem") from None
        raise SpiketandemError(f"{what} {path} is corrupt or not a spiketandem file ({reason}); "
                               "delete it and re-run the command that makes it") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("format"), str):
        raise SpiketandemError(f"{what} {path} is not a spiketandem file (no 'format' key)")
    if expected_format is not None and obj["format"] != expected_format:
        raise SpiketandemError(f"{what} {path} is a {obj['format']} file, not a {expected_format} one; pass a {what} "
                               "that spiketandem wrote")
    return obj


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
        path = self.file("config.yaml")
        if not path.is_file():
            raise SpiketandemError(f"{self.path} is not a run folder (no config.yaml); pass the folder a `train`, "
                                   "`teacher` or `demo` run wrote")
        return yaml.safe_load(path.read_text()) or {}

    def append_metrics(self, row: dict) -> None:
        """Add one epoch's row; rows of that epoch or later (from an earlier attempt) are dropped, so the
        file never holds an epoch twice."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) < row["epoch"]]
        rows.append(row)
        atomic_text("".join(json.dumps(r) + "\n" for r in rows), self.file("metrics.jsonl"))

    def read_metrics(self, name: str = "metrics.jsonl") -> list[dict]:
        path = self.file(name)
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the rows of the first ``epochs`` epochs (a resumed run rewrites the later ones)."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs]  # epochs are 1-based
        atomic_text("".join(json.dumps(r) + "\n" for r in rows), self.file("metrics.jsonl"))

    def write_json(self, name: str, obj: dict) -> None:
        atomic_text(json.dumps(obj, indent=2) + "\n", self.file(name))

    def read_json(self, name: str) -> dict:
        path = self.file(name)
        if not path.is_file():
            raise SpiketandemError(f"{path} does not exist; is {self.path} a finished run?")
        return json.loads(path.read_text())
