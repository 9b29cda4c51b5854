"""The examples installed with the package (``spiketandem.examples``) run end to end on tiny data: what a
user copies must work.  They are run as a user runs them, ``python -m spiketandem.examples.NAME``, in a
process of their own, and through their ``main`` for the returned values."""
import subprocess
import sys

import nir
import pytest
import torch
from torch import nn

from spiketandem import api
from spiketandem.examples import nir_in_norse, quickstart
from spiketandem.export import write_nir
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("examples") / "student.nir"
    student = quickstart.main(["--tiny", "--out", str(out)])
    return student, out


def test_quickstart_trains_evaluates_and_exports(exported):
    student, out = exported
    assert out.is_file() and len(student.layers) == 2


def test_quickstart_student_beats_chance(exported):
    student, _ = exported
    _, _, test_x, test_y = quickstart.digits(250)  # the example's own held-out split
    assert api.accuracy(student, test_x, test_y, T=8) > 0.3  # 10 classes: chance is 0.1


def test_quickstart_digits_are_the_loops_digits():
    """The example normalises the shipped digits exactly as a CLI run's batches are (no scikit-learn)."""
    from spiketandem.config import make_config
    from spiketandem.data import load_dataset
    from spiketandem.data.feeding import evaluation_batches
    loop = torch.cat([x for x, _ in evaluation_batches(load_dataset("digits"), make_config({"dataset": "digits"}),
                                                      "cpu")])
    _, _, test_x, test_y = quickstart.digits(10)
    torch.testing.assert_close(test_x, loop)
    assert len(test_y) == len(loop) == 360


def test_examples_run_as_installed_modules(exported, tmp_path):
    _, out = exported
    run = subprocess.run([sys.executable, "-m", "spiketandem.examples.nir_in_norse", str(out), "--T", "4"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "same predictions: True" in run.stdout


def test_nir_in_norse_matches_reference(exported):
    _, out = exported
    norse_counts, ref_counts = nir_in_norse.main([str(out), "--T", "6"])
    assert norse_counts and {k: float(v) for k, v in norse_counts.items()} == \
        {k: float(v.sum()) for k, v in ref_counts.items()}


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 64, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        return self.fc(torch.relu(self.conv2(x) + x).flatten(1))


def test_nir_in_norse_runs_a_residual_student(tmp_path):
    """A residual join in Norse (plain norse.torch.from_nir reads one input of the join from the previous step,
    so its spikes differ): the example's counts equal the reference simulator's, layer by layer."""
    torch.manual_seed(0)
    student = build_student(_Residual().eval(), NeuronConfig(kind="if", reset="zero"), torch.zeros(2, 1, 8, 8),
                            calibration_images=torch.randn(64, 1, 8, 8)).eval()
    path = write_nir(student, tmp_path / "residual.nir")
    assert any(len(list(e for e in nir.read(str(path)).edges if e[1] == node)) > 1
               for node in nir.read(str(path)).nodes)  # the file has a join
    norse_counts, ref_counts = nir_in_norse.main([str(path), "--T", "6"])
    assert sum(norse_counts.values()) > 0
    assert {k: float(v) for k, v in norse_counts.items()} == {k: float(v.sum()) for k, v in ref_counts.items()}
