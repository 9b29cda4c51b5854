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


def hand_forward(W, s_in, T, a, theta, bias=0.0):
    """Membranes U and spikes S [T, B, out] of U[t] = a U[t-1] + W S_in[t] + bias - theta S[t-1], by hand."""
    B, n_out = s_in.shape[1], W.shape[0]
    U = torch.zeros(T, B, n_out, dtype=W.dtype)
    S = torch.zeros(T, B, n_out, dtype=W.dtype)
    u, s = torch.zeros(B, n_out, dtype=W.dtype), torch.zeros(B, n_out, dtype=W.dtype)
    for t in range(T):
        u = a * u + s_in[t] @ W.T + bias - theta * s
        s = (u >= theta).to(W.dtype)
        U[t], S[t] = u, s
    return U, S


def hand_gradient(W, s_in, target, T, a, theta, p, full=True, bias=0.0, scale=1.0):
    """Forward by hand, then e[t] = (d - theta*e[t+1]) s'(U[t]) + a e[t+1] (full BPTT) or e[t] = d s'(U[t])
    (the state detached between steps), with d = -scale (2/T)(target - C/T) and dL/dW = sum_t e[t] S_in[t]^T."""
    B, n_out = s_in.shape[1], W.shape[0]
    U, S = hand_forward(W, s_in, T, a, theta, bias)
    d = -scale * (2 / T) * (target - S.sum(0) / T)
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


def test_per_step_option_detaches_the_state_and_differs_from_full():
    g = torch.Generator().manual_seed(2)
    T, B, n_in, n_out = 8, 6, 10, 9
    s_in = (torch.rand(T, B, n_in, generator=g) < 0.5).double()
    W = (torch.randn(n_out, n_in, generator=g, dtype=torch.float64) * 0.5).requires_grad_()
    target = torch.rand(B, n_out, generator=g, dtype=torch.float64)
    ltl_layer_loss(W, s_in, target, T, 0.9, 1.0, 1.0, truncate=True).backward()
    truncated = hand_gradient(W.detach(), s_in, target, T, 0.9, 1.0, 1.0, full=False)
    torch.testing.assert_close(W.grad, truncated, rtol=1e-10, atol=1e-12)
    full = hand_gradient(W.detach(), s_in, target, T, 0.9, 1.0, 1.0, full=True)
    assert (full - truncated).norm() / full.norm() > 0.1  # the per-step form is not full BPTT


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
    expected = hand_gradient(weight.detach().double(), s_in, target, T, a, float(neuron2.threshold), p,
                             bias=bias.detach().double(), scale=1 / target.numel())
    assert expected.abs().sum() > 0
    torch.testing.assert_close(weight.grad.double(), expected, rtol=1e-4, atol=1e-6)


def printed_eq_6_7_gradient(W, s_in, target, T, a, theta, p):
    """The paper's Eq. 5-8 exactly as printed, by hand: with d = -(2/T)(target - C/T) (Eq. 7, t = T_w) and
    s'[t] = (1/p') 1(|U[t] - theta| < p'/2) (Eq. 8, p' = p theta in the project's threshold units),
      delta[T] = d;  delta[t] = -theta delta[t+1] s'[t+1] + d                     (Eq. 7, t < T)
      dL/dU[T] = delta[T] s'[T];  dL/dU[t] = a delta[t+1] s'[t+1] + delta[t] s'[t] (Eq. 6)
      dL/dW = sum_t dL/dU[t] S_in[t]^T                                            (Eq. 5)."""
    U, S = hand_forward(W, s_in, T, a, theta)
    d = -(2 / T) * (target - S.sum(0) / T)
    sp = ((U - theta).abs() < p * theta / 2).to(W.dtype) / (p * theta)
    delta = [None] * T
    delta[T - 1] = d
    for t in reversed(range(T - 1)):
        delta[t] = -theta * delta[t + 1] * sp[t + 1] + d
    dU = [delta[t] * sp[t] + (a * delta[t + 1] * sp[t + 1] if t < T - 1 else 0) for t in range(T)]
    return sum(dU[t].T @ s_in[t] for t in range(T))


@pytest.mark.parametrize("a,theta,p", [(1.0, 1.0, 1.0), (0.9, 1.0, 0.6), (0.8, 1.7, 1.0)])
def test_printed_mode_is_eq_6_7_by_hand_and_differs_from_both_others(a, theta, p):
    from spiketandem.neuron import run_neuron_printed
    g = torch.Generator().manual_seed(4)
    T, B, n_in, n_out = 8, 5, 12, 7
    s_in = (torch.rand(T, B, n_in, generator=g) < 0.4).double()
    W = (torch.randn(n_out, n_in, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    target = torch.rand(B, n_out, generator=g, dtype=torch.float64)
    currents = torch.einsum("oi,tbi->tbo", W, s_in)
    spikes = run_neuron_printed(currents, T, a, theta, "subtract", Surrogate("boxcar", p))
    reference, _ = run_neuron(currents.detach(), T, a, torch.tensor(theta, dtype=W.dtype), "subtract",
                              Surrogate("boxcar", p))
    assert torch.equal(spikes.detach(), reference)  # the same forward
    ((target - spikes.sum(0) / T) ** 2).sum().backward()
    expected = printed_eq_6_7_gradient(W.detach(), s_in, target, T, a, theta, p)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(W.grad, expected, rtol=1e-10, atol=1e-12)
    full = hand_gradient(W.detach(), s_in, target, T, a, theta, p, full=True)
    per_step = hand_gradient(W.detach(), s_in, target, T, a, theta, p, full=False)
    assert (full - expected).norm() / full.norm() > 0.01 and (per_step - expected).norm() / full.norm() > 0.01


def test_printed_mode_through_the_rule_and_its_refusals():
    from torch import nn

    from spiketandem.config import make_config
    from spiketandem.errors import SpiketandemError
    from spiketandem.rules import LTLOffline, configure
    from spiketandem.rules.base import DataInfo
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    images = torch.randn(16, 1, 2, 2)
    for bptt in ("full", "per-step", "printed"):
        rule = LTLOffline(configure(make_config({"T": 4, "bptt": bptt})), DataInfo(3, 1, 2), teacher, images)
        rule.setup(images, "cpu")
        loss, _, _ = rule.loss(images[:8], torch.zeros(8, dtype=torch.long), 0)
        loss.backward()
        assert all(p.grad is not None for p in rule.model.layer_parameters(rule.model.layers[0].name))
    rule = LTLOffline(configure(make_config({"T": 4, "bptt": "printed", "reset": "zero"})), DataInfo(3, 1, 2),
                      teacher, images)
    with pytest.raises(SpiketandemError, match="reset by subtraction"):
        rule.loss(images[:8], torch.zeros(8, dtype=torch.long), 0)
    with pytest.raises(SpiketandemError, match="--bptt.*one of full, per-step, printed"):
        configure(make_config({"bptt": "truncated"}))
