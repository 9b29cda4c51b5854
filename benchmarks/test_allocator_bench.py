"""`benchmarks/allocator.py`: each setting in its own process, named, and the speed-up computed from them."""
import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spiketandem import allocator

SCRIPT = Path(__file__).resolve().parent / "allocator.py"
TINY = ["--arch", "vgg11", "--width", "0.0625", "--T", "1", "--batch-size", "2", "--batches", "1", "--device", "cpu"]


def test_the_benchmark_runs_each_setting_in_its_own_process_and_names_it(tmp_path):
    """The script as a user runs it: the tuned child says mallopt, the other the opt-out."""
    env = {k: v for k, v in os.environ.items() if k not in allocator.GLIBC_VARIABLES + (allocator.OPT_OUT,)}
    env.pop("GLIBC_TUNABLES", None)
    done = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--rounds", "1",
                           "--out", str(tmp_path), "--quiet"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "allocator.json").read_text())
    assert [row["setting"] for row in result["rows"]] == ["tuned", "glibc defaults"]
    tuned, default = result["rows"]
    if hasattr(ctypes.CDLL(None), "gnu_get_libc_version"):
        assert tuned["allocator"] == "mallopt: trim threshold 1073741824, top pad 1073741824"
    assert default["allocator"] == "user: SPIKETANDEM_MALLOC_TUNING=off"
    for rule in ("teacher", "ltl-offline"):
        assert result["speedup"][rule] == pytest.approx(
            default["seconds_per_batch"][rule] / tuned["seconds_per_batch"][rule])
    assert all(row["minor_faults"] > 0 for row in result["rows"])  # the children's own usage, not zero
    assert sorted(p.name for p in tmp_path.iterdir()) == ["allocator.json"]  # the children wrote elsewhere
