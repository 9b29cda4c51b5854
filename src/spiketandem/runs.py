"""Run folders: config.yaml, metrics.jsonl, summary.json, checkpoint.pt, and the trained models.

Every file is written atomically (temp file + rename), so an interrupted run never leaves a
half-written file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
import yaml

from .errors import SpiketandemError

TEACHER_FORMAT = "spiketandem-teacher-1"
MODEL_FORMAT = "spiketandem-model-1"


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


def safe_load(path: Path, what: str, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise SpiketandemError(f"{what} {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise SpiketandemError(f"{what} {path} is corrupt or not a spiketandem file ({type(e).__name__}: {e}); "
                               "delete it and re-run the command that makes it") from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise SpiketandemError(f"{what} {path} is not a spiketandem file (no 'format' key)")
    return obj


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self) -> bool:
        return self.file("config.yaml").is_file()

    def write_config(self, cfg) -> None:
        atomic_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), self.file("config.yaml"))

    def read_config(self) -> dict:
        path = self.file("config.yaml")
        if not path.is_file():
            raise SpiketandemError(f"{self.path} is not a run folder (no config.yaml); pass the folder a `train`, "
                                   "`teacher` or `demo` run wrote")
        return yaml.safe_load(path.read_text()) or {}

    def append_metrics(self, row: dict) -> None:
        rows = self.read_metrics()
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
