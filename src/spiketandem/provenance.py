"""Where a run came from: the versions, commit, device, command line, seed and start time recorded in
its ``config.yaml`` (``provenance:``), so that the record says what ran."""
from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from pathlib import Path


def git_commit(path: Path) -> str | None:
    """The commit of the checkout ``path`` lies in (``+dirty`` with uncommitted changes), or None when it is
    not a git checkout (an installed wheel) or git is missing."""
    try:
        root = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True,
                              text=True, timeout=10)
        if root.returncode != 0:
            return None
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "") if commit else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(cfg, device) -> dict:
    import torch

    from . import __version__
    return {"spiketandem": __version__, "git_commit": git_commit(Path(__file__).resolve().parent),
            "torch": str(torch.__version__), "python": platform.python_version(), "device": str(device),
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "seed": cfg.seed,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
