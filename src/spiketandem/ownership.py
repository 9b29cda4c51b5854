"""A run owns its folder: it never writes into a folder that holds another run or anything it did not
write, and only one process writes a run folder at a time.

    with claim(run, "new" | "resume" | "overwrite"):
        ... train, write the run's files ...

- ``new``: the folder must not exist or be empty;
- ``resume``: it must hold a run (``config.yaml``);
- ``overwrite``: it may hold a run, whose own files (``RUN_FILES``) are removed first; a folder with any
  other file is refused (it is not only a run's);
- a new run that fails before its first checkpoint removes the folder it created (nothing half-written);
- a lock file ``.spiketandem.lock`` holding the process id and host makes a second process into the
  same folder fail at once; a lock left by a dead process on this host is detected and replaced.
Default folder names are unique (``unique_path``): ``runs/NAME``, else ``runs/NAME-2``, ``runs/NAME-3``, ...
as Lightning's ``version_N``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from pathlib import Path

from .errors import SpiketandemError

LOCK = ".spiketandem.lock"
# every file and folder a run writes (a teacher trained for the run lives in teacher/, a run of its own)
RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt", "student.pt", "teacher.pt",
             "learning_curve.png", "activity.json", "sweep_T.csv", "sweep_T.png", "report", "teacher", "tensorboard")
# what commands acting on a finished run write next to it by default (`noise` writes noise-<kind>.json/.md/.png)
RUN_FILE_PREFIXES = ("noise-",)
MODES = ("new", "resume", "overwrite")


def _is_run_file(name: str) -> bool:
    return (name in RUN_FILES or name == LOCK or name.startswith(RUN_FILE_PREFIXES)
            or (name.startswith(".") and name.endswith(".tmp")))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_lock(folder: Path, out: str) -> Path:
    lock = folder / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                holder = {}
            pid, host = holder.get("pid"), holder.get("host")
            if isinstance(pid, int) and host == me["host"] and not _alive(pid):
                lock.unlink(missing_ok=True)  # a stale lock: its process is gone
                continue
            who = f"process {pid} on {host}" if pid else "another process"
            raise SpiketandemError(f"{folder} is in use by {who} (lock file {lock}); wait for it to finish or choose "
                                   f"another {out} (delete the lock file only if that process is really gone)") from None
        except OSError as e:
            raise SpiketandemError(f"cannot write into {folder}: {e.strerror}; choose a writable {out}") from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return lock
    raise SpiketandemError(f"could not take the lock {lock}; try again")


def check_folder(folder: Path, mode: str, out: str = "--out") -> None:
    """Refuse ``mode`` for ``folder`` (one clear line) unless it is allowed; changes nothing.  ``out``: how the
    caller names the folder's setting (the CLI's ``--out``, the Python API's ``out=``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if folder.exists() and not folder.is_dir():
        raise SpiketandemError(f"{out} {folder} is a file, not a folder; choose a folder for the run")
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    holds_run = (folder / "config.yaml").is_file()
    foreign = [n for n in entries if not _is_run_file(n)]
    if mode == "resume":
        if not holds_run:
            raise SpiketandemError(f"--resume: {folder} holds no run to resume; drop --resume to start one")
        return
    if mode == "new" and entries:
        if holds_run:
            raise SpiketandemError(f"{folder} holds a run already; --resume continues it, --overwrite starts it again "
                                   f"(removing only its run files), or choose another {out}")
        raise SpiketandemError(f"{folder} is not empty and holds no spiketandem run ({', '.join(entries[:5])}"
                               f"{', ...' if len(entries) > 5 else ''}); choose an empty or new {out}")
    if mode == "overwrite" and foreign:
        raise SpiketandemError(f"--overwrite: {folder} holds files that no run wrote ({', '.join(foreign[:5])}"
                               f"{', ...' if len(foreign) > 5 else ''}); they are not removed and the run does not "
                               f"start; move them or choose another {out}")


@contextlib.contextmanager
def claim(folder: str | Path, mode: str, *, main: bool = True, out: str = "--out"):
    """Own ``folder`` for one run in ``mode`` while the block runs (see the module docstring).  Under
    torchrun only rank 0 (``main``) checks, locks and writes."""
    folder = Path(folder)
    if not main:
        yield folder
        return
    check_folder(folder, mode, out)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpiketandemError(f"cannot create the run folder {folder}: {e.strerror}; choose a writable {out}") from None
    if not os.access(folder, os.W_OK):
        raise SpiketandemError(f"the run folder {folder} is not writable; choose a writable {out}")
    lock = _take_lock(folder, out)
    try:
        if mode == "overwrite":
            for path in folder.iterdir():
                if path.name != LOCK and _is_run_file(path.name):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        yield folder
    except BaseException:
        lock.unlink(missing_ok=True)
        if created and not (folder / "checkpoint.pt").is_file():  # failed before any epoch: leave nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    lock.unlink(missing_ok=True)


def unique_path(base: str | Path) -> Path:
    """``base`` if it does not exist yet, else the first free ``base-2``, ``base-3``, ..."""
    base = Path(base)
    if not base.exists():
        return base
    n = 2
    while (candidate := base.with_name(f"{base.name}-{n}")).exists():
        n += 1
    return candidate


def latest_path(base: str | Path) -> Path:
    """The newest existing folder of the series ``base``, ``base-2``, ... (for ``--resume`` without --out)."""
    base = Path(base)
    found = [base] if base.exists() else []
    n = 2
    while (candidate := base.with_name(f"{base.name}-{n}")).exists():
        found.append(candidate)
        n += 1
    return found[-1] if found else base
