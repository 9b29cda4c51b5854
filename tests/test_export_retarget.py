"""Retargeting a subtract-reset student to reset-to-zero: threshold re-balancing by hand,
and on a small network."""
import torch
from torch import nn

from spiketandem.export.retarget import balance_thresholds
from spiketandem.export.verify import student_activity
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


def _pair(teacher, shape, kind="if"):
    students = []
    for reset in ("subtract", "zero"):
        torch.manual_seed(0)
        students.append(build_student(teacher.eval(), NeuronConfig(kind=kind, reset=reset, tau_m=8.0),
                                      torch.zeros(2, *shape), calibration_images=torch.randn(64, *shape)).eval())
    return students


def test_one_neuron_by_hand():
    """I = 0.3, theta = 1, T = 10: reset by subtraction fires at t = 4, 7, 10 (3 spikes: U = 1.2, 1.1, 1.0);
    reset to zero at t = 4, 8 (2 spikes). A threshold factor f in (0.6, 0.9] fires every 3 steps: 3 spikes."""
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 1))
    subtract, zero = _pair(teacher, (1, 1, 1))
    for s in (subtract, zero):
        lin = s.graph_module.get_submodule("1")
        lin.weight.data.fill_(0.3)
        lin.bias.data.zero_()
        neuron = s.neurons[s.layers[0].name]
        neuron.threshold.fill_(1.0)
        neuron.amplitude.fill_(1.0)
    x = torch.ones(1, 1, 1, 1)
    name = subtract.layers[0].name
    assert student_activity(subtract, x, 10)[1][name].sum() == 3
    assert student_activity(zero, x, 10)[1][name].sum() == 2
    factors = balance_thresholds(zero, subtract, x, 10)
    assert 0.6 < factors[name] <= 0.9
    assert student_activity(zero, x, 10)[1][name].sum() == 3
    assert float(zero.neurons[name].amplitude) == 1.0  # the amplitude (the output's scale) is kept


def test_balanced_layers_fire_like_the_subtract_reset_student():
    subtract, zero = _pair(build_model("digits-cnn", 10, 1, 8, 0.25), (1, 8, 8), kind="lif")
    torch.manual_seed(1)
    images = torch.randn(32, 1, 8, 8)
    target = {k: float(v.sum()) for k, v in student_activity(subtract, images, 8)[1].items()}
    before = {k: float(v.sum()) for k, v in student_activity(zero, images, 8)[1].items()}
    assert all(before[k] < target[k] for k in target)  # reset to zero fires less
    factors = balance_thresholds(zero, subtract, images, 8)
    after = {k: float(v.sum()) for k, v in student_activity(zero, images, 8)[1].items()}
    for k in target:
        assert 0.2 <= factors[k] < 1.0
        assert abs(after[k] - target[k]) <= 0.03 * target[k], (k, after[k], target[k])
