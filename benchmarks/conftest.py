"""The benchmark kits' own tests (collected by the test command with tests/): their scripts import each other
by name, as they do when run from their folders."""
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE / "gpu"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # two test processes may share two cores; one thread each avoids oversubscription
    torch.set_num_threads(1)
