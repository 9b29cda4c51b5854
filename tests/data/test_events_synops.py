"""SynOps when the input is event-count frames: the first layer is event-driven (events x fan-out),
checked against hand counts."""
import pytest
import torch
from torch import nn

from spiketandem.errors import SpiketandemError
from spiketandem.metrics import count_ops
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


def test_event_counts_into_a_linear_layer_cost_events_times_fan_out():
    layer = nn.Linear(4, 5)
    x = torch.tensor([[2.0, 0, 3, 1]])  # 6 events, each reaches the 5 outputs: 30 ACs
    counts, _ = count_ops(layer, x, event_inputs=True)
    assert counts.total_synops() == 30 and counts.total_macs() == 0
    analog, _ = count_ops(layer, x)  # graded values without the flag are analog: 4 x 5 MACs
    assert analog.total_macs() == 20 and analog.total_synops() == 0


def test_event_counts_into_a_padded_conv_by_hand():
    conv = nn.Conv2d(2, 4, 3, padding=1)
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 0, 0] = 2  # a corner pixel is read by the 4 outputs (0,0), (0,1), (1,0), (1,1): 4 taps
    x[0, 1, 1, 1] = 1  # the centre pixel is read by all 9 outputs: 9 taps
    counts, _ = count_ops(conv, x, event_inputs=True)
    assert counts.total_synops() == (2 * 4 + 1 * 9) * 4  # x 4 output channels = 68


def test_frames_student_counts_its_input_layer_as_synops():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    frames = torch.zeros(1, 2, 2, 2, 2)  # [B, T=2, C, H, W]
    frames[0, 0, 0, 0, 0] = 3
    frames[0, 1, 1, 1, 1] = 1
    frames[0, 1, 0, 1, 0] = 2
    student = build_student(teacher, NeuronConfig(kind="if"), torch.zeros(2, 2, 2, 2), encoding="frames",
                            calibration_images=frames).eval()
    counts, _ = count_ops(lambda x: student(x, 2), frames, named=student.graph_module, event_inputs=True)
    first = "1"  # the first Linear keeps the teacher's module path
    assert isinstance(student.graph_module.get_submodule(first), nn.Linear) and first in counts.layers()
    assert counts.synops[first] == (3 + 1 + 2) * 3            # 6 events over both steps, fan-out 3
    assert counts.macs.get(first, 0) == 0
    dense, _ = count_ops(lambda x: student(x, 2), frames, named=student.graph_module)
    assert dense.macs[first] == 2 * 8 * 3                     # without the flag: 2 steps of 8 x 3 MACs


def test_event_inputs_must_be_counts():
    with pytest.raises(SpiketandemError, match="event counts"):
        count_ops(nn.Linear(2, 2), torch.tensor([[0.5, 1.0]]), event_inputs=True)


def test_api_synops_ratio_on_frames_by_hand():
    from spiketandem import api
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(8, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    frames = torch.zeros(2, 2, 2, 2, 2)
    frames[0, 0, 0, 0, 0], frames[0, 1, 1, 0, 1], frames[1, 1, 0, 1, 1] = 4, 1, 5   # 10 events in 2 samples
    student = build_student(teacher, NeuronConfig(kind="if"), torch.zeros(2, 2, 2, 2), encoding="frames",
                            calibration_images=frames)
    for neuron in student.neurons.values():
        neuron.threshold.fill_(1e9)  # a silent hidden layer: the readout gets no events
    # per sample: student 10 / 2 events x fan-out 3 = 15 SynOps; teacher 8 x 3 + 3 x 2 = 30 MACs
    assert api.synops_ratio(student, teacher, frames, T=2) == pytest.approx(15 / 30)
