"""Running `spiketandem` under the real torchrun launcher from a test (gloo on the CPU)."""
import os
import socket
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
TIMEOUT = 3600  # generous: a slow, shared machine must never fail a test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --nproc_per_node=NPROC -m spiketandem ARGS`, one thread per process."""
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "spiketandem"] + args
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
