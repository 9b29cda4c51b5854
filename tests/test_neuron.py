"""Neuron dynamics (Eq. 1-3) and surrogates (Eq. 8) against hand computations and closed forms."""
import math

import pytest
import torch

from spiketandem.errors import SpiketandemError
from spiketandem.neuron import NeuronConfig, run_neuron
from spiketandem.surrogate import SURROGATES, Surrogate, spike

BOX = Surrogate("boxcar", 1.0)


@pytest.mark.parametrize("current,T", [(0.375, 16), (0.125, 32), (0.75, 8), (1.0, 5), (0.0, 7)])
def test_if_constant_input_spike_count_closed_form(current, T):
    # IF with reset by subtraction and a constant input I <= theta fires floor(T * I / theta) times
    theta = 1.0
    spikes, _ = run_neuron(torch.full((T, 3), current), T, 1.0, torch.tensor(theta), "subtract", BOX)
    assert spikes.sum(0).tolist() == [math.floor(T * current / theta)] * 3


def test_if_static_input_equals_repeated_input():
    I = torch.rand(4, 5)
    a, _ = run_neuron(I, 9, 1.0, torch.tensor(0.5), "subtract", BOX, static=True)
    b, _ = run_neuron(I.expand(9, 4, 5), 9, 1.0, torch.tensor(0.5), "subtract", BOX)
    assert torch.equal(a, b)


def test_lif_trace_by_hand_reset_by_subtraction_and_to_zero():
    I = torch.tensor([[0.8], [0.8], [0.8], [0.0]])
    # subtract: U = .8 ; .4+.8 = 1.2 (spike) ; .6+.8-1 = .4 ; .2+0-0 = .2   (reset not decayed, Eq. 1)
    s, st = run_neuron(I, 4, 0.5, torch.tensor(1.0), "subtract", BOX)
    assert s.flatten().tolist() == [0, 1, 0, 0]
    assert st.u.item() == pytest.approx(0.2)
    # zero: U = .8 ; 1.2 (spike) ; .5*1.2*0 + .8 = .8 ; .4
    s, st = run_neuron(I, 4, 0.5, torch.tensor(1.0), "zero", BOX)
    assert s.flatten().tolist() == [0, 1, 0, 0]
    assert st.u.item() == pytest.approx(0.4)


def test_leak_from_tau_and_validation():
    assert NeuronConfig("lif", tau_m=10, dt=1).alpha == pytest.approx(math.exp(-0.1))
    assert NeuronConfig("lif", leak=0.7).alpha == 0.7
    assert NeuronConfig("if", leak=0.7).alpha == 1.0
    with pytest.raises(SpiketandemError, match="reset"):
        NeuronConfig(reset="hard")
    with pytest.raises(SpiketandemError, match="leak"):
        NeuronConfig("lif", leak=1.5)


@pytest.mark.parametrize("p", [0.5, 1.0, 2.0])
def test_boxcar_gradient_is_eq8(p):
    u = torch.tensor([0.0, 0.5, 0.74, 0.76, 1.0, 1.24, 1.26, 2.0], requires_grad=True)
    spike(u, 1.0, Surrogate("boxcar", p)).sum().backward()
    expected = [(1 / p) * (abs(v - 1.0) < p / 2) for v in u.tolist()]
    assert u.grad.tolist() == pytest.approx(expected)


def test_spike_forward_is_heaviside_at_threshold():
    u = torch.tensor([0.99, 1.0, 1.01, -3.0])
    assert spike(u, 1.0, BOX).tolist() == [0, 1, 1, 0]


def test_threshold_normalised_surrogate():
    # dS/dU = g((U - theta)/theta) / theta: a boxcar of width p*theta and height 1/(p*theta)
    theta = 2.0
    u = torch.tensor([0.9, 1.6, 2.0, 2.9, 3.1], requires_grad=True)
    spike(u, theta, Surrogate("boxcar", 1.0)).sum().backward()
    assert u.grad.tolist() == pytest.approx([0.0, 0.5, 0.5, 0.5, 0.0])


@pytest.mark.parametrize("name", SURROGATES)
def test_every_surrogate_integrates_to_one(name):
    x = torch.linspace(-2000, 2000, 4_000_001, dtype=torch.float64)  # atan's tails need the width
    area = torch.trapezoid(Surrogate(name).derivative(x), x).item()
    assert area == pytest.approx(1.0, abs=2e-3)


def test_dspike_peak_and_window():
    b = 3.0
    g = Surrogate("dspike", b).derivative(torch.tensor([0.0, 0.5, 0.51]))
    assert g[0].item() == pytest.approx(b / (2 * math.tanh(b / 2)))
    assert g[1].item() > 0 and g[2].item() == 0


def test_sigmoid_and_atan_closed_forms():
    x = torch.tensor([0.0, 0.3])
    s = Surrogate("sigmoid", 4.0).derivative(x)
    assert s[0].item() == pytest.approx(1.0)
    assert s[1].item() == pytest.approx(4 * torch.sigmoid(torch.tensor(1.2)).item() * (1 - torch.sigmoid(torch.tensor(1.2)).item()))
    a = Surrogate("atan", 2.0).derivative(x)
    assert a[0].item() == pytest.approx(1.0)
    assert a[1].item() == pytest.approx(1 / (1 + (math.pi * 0.3) ** 2))


def test_unknown_surrogate_is_a_clear_error():
    with pytest.raises(SpiketandemError, match="boxcar"):
        Surrogate("relu")
