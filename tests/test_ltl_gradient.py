"""One LTL layer's weight gradient against an independent, hand-written backward recursion (Eq. 4-7)."""
import pytest
import torch

from spiketandem.neuron import run_neuron
from spiketandem.surrogate import Surrogate


def ltl_layer_loss(W, s_in, target, T, a, theta, p, truncate=False):
    currents = torch.einsum("oi,tbi->tbo", W, s_in)
    spikes, _ = run_neuron(currents, T, a, torch.tensor(theta, dtype=W.dtype), "subtract", Surrogate("boxcar", p),
                           truncate=truncate)
    rate = spikes.sum(0) / T
    return ((target - rate) ** 2).sum()


def hand_gradient(W, s_in, target, T, a, theta, p, full=True):
    """Forward by hand, then e[t] = (d - theta*e[t+1]) s'(U[t]) + a e[t+1] (full BPTT) or e[t] = d s'(U[t])
    (Eq. 6-7 as printed), with d = -(2/T)(target - C/T) and dL/dW = sum_t e[t] S_in[t]^T."""
    B, n_out = s_in.shape[1], W.shape[0]
    U = torch.zeros(T, B, n_out, dtype=W.dtype)
    S = torch.zeros(T, B, n_out, dtype=W.dtype)
    u, s = torch.zeros(B, n_out, dtype=W.dtype), torch.zeros(B, n_out, dtype=W.dtype)
    for t in range(T):
        u = a * u + s_in[t] @ W.T - theta * s
        s = (u >= theta).to(W.dtype)
        U[t], S[t] = u, s
    d = -(2 / T) * (target - S.sum(0) / T)
    surrogate = ((U - theta).abs() < p * theta / 2).to(W.dtype) / (p * theta)
    grad = torch.zeros_like(W)
    e_next = torch.zeros(B, n_out, dtype=W.dtype)
    for t in reversed(range(T)):
        e = (d - theta * e_next) * surrogate[t] + a * e_next if full else d * surrogate[t]
        grad += e.T @ s_in[t]
        e_next = e
    return grad


@pytest.mark.parametrize("a,theta,p", [(1.0, 1.0, 1.0), (0.9, 1.0, 0.6), (0.8, 1.7, 1.0)])
def test_full_bptt_gradient_matches_hand_recursion(a, theta, p):
    g = torch.Generator().manual_seed(1)
    T, B, n_in, n_out = 8, 5, 12, 7
    s_in = (torch.rand(T, B, n_in, generator=g) < 0.4).double()
    W = (torch.randn(n_out, n_in, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    target = torch.rand(B, n_out, generator=g, dtype=torch.float64)
    ltl_layer_loss(W, s_in, target, T, a, theta, p).backward()
    expected = hand_gradient(W.detach(), s_in, target, T, a, theta, p, full=True)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(W.grad, expected, rtol=1e-10, atol=1e-12)


def test_truncated_option_is_printed_eq_6_7_and_differs_from_full():
    g = torch.Generator().manual_seed(2)
    T, B, n_in, n_out = 8, 6, 10, 9
    s_in = (torch.rand(T, B, n_in, generator=g) < 0.5).double()
    W = (torch.randn(n_out, n_in, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    target = torch.rand(B, n_out, generator=g, dtype=torch.float64)
    ltl_layer_loss(W, s_in, target, T, 0.9, 1.0, 1.0, truncate=True).backward()
    truncated = hand_gradient(W.detach(), s_in, target, T, 0.9, 1.0, 1.0, full=False)
    torch.testing.assert_close(W.grad, truncated, rtol=1e-10, atol=1e-12)
    full = hand_gradient(W.detach(), s_in, target, T, 0.9, 1.0, 1.0, full=True)
    assert (full - truncated).norm() / full.norm() > 0.1  # the printed form is not full BPTT


def hand_gradient_with_bias(W, bias, s_in, target, T, a, theta, p, scale):
    """``hand_gradient`` for currents W s_in + bias and a loss scaled by ``scale`` (the rule's mean)."""
    B, n_out = s_in.shape[1], W.shape[0]
    U = torch.zeros(T, B, n_out, dtype=W.dtype)
    S = torch.zeros(T, B, n_out, dtype=W.dtype)
    u, s = torch.zeros(B, n_out, dtype=W.dtype), torch.zeros(B, n_out, dtype=W.dtype)
    for t in range(T):
        u = a * u + s_in[t] @ W.T + bias - theta * s
        s = (u >= theta).to(W.dtype)
        U[t], S[t] = u, s
    d = -scale * (2 / T) * (target - S.sum(0) / T)
    surrogate = ((U - theta).abs() < p * theta / 2).to(W.dtype) / (p * theta)
    grad, e_next = torch.zeros_like(W), torch.zeros(B, n_out, dtype=W.dtype)
    for t in reversed(range(T)):
        e = (d - theta * e_next) * surrogate[t] + a * e_next
        grad += e.T @ s_in[t]
        e_next = e
    return grad


def test_the_rules_own_local_loss_has_the_hand_gradient():
    """LTLOffline.local_losses on a real student: layer 2's weight gradient (its input: layer 1's spikes
    times its amplitude, detached) equals the hand recursion for L = mean((target - C/T)^2)."""
    from torch import nn

    from spiketandem.config import make_config
    from spiketandem.neuron import RunContext
    from spiketandem.rules import LTLOffline, configure
    from spiketandem.rules.base import DataInfo

    torch.manual_seed(3)
    T, a, p = 8, 0.9, 1.0
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    cfg = configure(make_config({"T": T, "leak": a, "surrogate_param": p, "neuron_backend": "reference",
                                 "percentile": 90.0}))
    images = torch.randn(64, 1, 2, 2)
    rule = LTLOffline(cfg, DataInfo(3, 1, 2), teacher, images)
    rule.setup(images, "cpu")
    first, second = (layer.name for layer in rule.model.layers)
    x = torch.randn(6, 1, 2, 2)
    _, acts = rule.taps(x)
    ctx = RunContext(T=T, batch=6, detach=True, records={})
    rule.model.run(x, ctx)
    losses = rule.local_losses(ctx.records, acts)
    weight, bias = (p_ for p_ in rule.model.layer_parameters(second))
    weight.grad = None
    losses[second].backward()
    neuron1, neuron2 = rule.model.neurons[first], rule.model.neurons[second]
    s_in = ctx.records[first].double() * float(neuron1.amplitude)
    target = rule.targets.target(second, acts[second]).double()
    expected = hand_gradient_with_bias(weight.detach().double(), bias.detach().double(), s_in, target, T, a,
                                       float(neuron2.threshold), p, scale=1 / target.numel())
    assert expected.abs().sum() > 0
    torch.testing.assert_close(weight.grad.double(), expected, rtol=1e-4, atol=1e-6)
