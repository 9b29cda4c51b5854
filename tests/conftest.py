"""Shared fixtures: one digits teacher per test session (a few seconds on a CPU)."""
import pytest
import torch

from spiketandem.config import make_config
from spiketandem.workflow import train_teacher
from spiketandem.runs import RunFolder


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # two test processes may share two cores; one thread each avoids oversubscription
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory) -> str:
    """Path of a teacher.pt for digits-cnn trained for 15 epochs (about 98-99% test accuracy)."""
    run = RunFolder(tmp_path_factory.mktemp("digits-teacher"))
    cfg = make_config({"dataset": "digits", "arch": "digits-cnn", "epochs": 15, "progress": False, "out": str(run.path)})
    train_teacher(cfg, run, log=lambda *a, **k: None)
    return str(run.file("teacher.pt"))
