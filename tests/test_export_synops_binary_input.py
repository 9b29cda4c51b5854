"""SynOps counter (metrics/synops.py): an analog-encoded student's input is a current, so
its input layer is counted as MACs whatever the pixel values -- also for a binary image, whose non-zero
pixels all share one magnitude and would otherwise pass for spikes (docs/metrics.md). Rate-coded inputs
are spikes made inside the forward and stay SynOps.  (Placed here by file ownership; it belongs with
tests/test_synops.py.)"""
import torch
from torch import nn

from spiketandem.metrics import count_ops
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


def _binary_images(n=6):
    torch.manual_seed(0)
    return (torch.rand(n, 1, 8, 8) > 0.5).float()  # pixels 0 or 1: one magnitude


def test_binary_image_into_an_analog_student_costs_the_teachers_first_layer_macs():
    teacher = build_model("digits-cnn", 10, 1, 8, 0.25).eval()
    x = _binary_images()
    student = build_student(teacher, NeuronConfig(), x, calibration_images=torch.randn(32, 1, 8, 8)).eval()
    counts, _ = count_ops(lambda im: student(im, 4), x, named=student.graph_module)
    teacher_counts, _ = count_ops(teacher, x, dense=True)
    assert counts.macs["conv1"] == teacher_counts.macs["conv1"]  # once per inference, as MACs
    assert counts.synops.get("conv1", 0) == 0
    # the old guess from the values is still there on request (and is what the bug counted)
    guessed, _ = count_ops(lambda im: student(im, 4), x, named=student.graph_module, analog_inputs=False)
    assert guessed.synops["conv1"] > 0 and guessed.macs.get("conv1", 0) == 0


def test_signed_binary_image_after_normalisation_is_still_analog():
    """(x - 0.5) / 0.5 gives pixels of +-1: one magnitude, signed -- still an image."""
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = (_binary_images() - 0.5) / 0.5
    student = build_student(teacher, NeuronConfig(kind="if"), x, calibration_images=torch.randn(32, 1, 8, 8)).eval()
    counts, _ = count_ops(lambda im: student(im, 3), x, named=student.graph_module)
    assert counts.macs["1"] == x.shape[0] * 64 * 16 and counts.synops.get("1", 0) == 0


def test_rate_coded_binary_input_is_counted_as_spikes():
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = _binary_images()
    student = build_student(teacher, NeuronConfig(kind="if"), x, encoding="rate",
                            calibration_images=torch.randn(32, 1, 8, 8)).eval()
    torch.manual_seed(1)
    counts, _ = count_ops(lambda im: student(im, 3), x, named=student.graph_module)
    # P = |x| / max|x| = x for a binary image: every lit pixel spikes at every step, fan-out 16
    assert counts.synops["1"] == int(x.sum()) * 3 * 16
    assert counts.macs.get("1", 0) == 0


def test_a_layer_called_on_spikes_directly_still_counts_synops():
    layer = nn.Linear(4, 3)
    spikes = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert count_ops(layer, spikes)[0].total_synops() == 2 * 3
