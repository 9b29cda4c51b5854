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
