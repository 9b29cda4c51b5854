"""Dspike (Li et al. 2021): the surrogate's closed form, the temperature selection by finite-difference
gradients (against an independent recomputation), and learning on digits."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from spiketandem.config import make_config
from spiketandem.rules.base import DataInfo
from spiketandem.runs import RunFolder
from spiketandem.rules.dspike import Dspike, finite_difference_gradient, select_temperature
from spiketandem.surrogate import Surrogate, spike


@pytest.mark.parametrize("b", [0.5, 2.0, 3.0, 8.0])
def test_peak_is_b_over_2_tanh_b_over_2_and_area_is_one(b):
    s = Surrogate("dspike", b)
    assert float(s.derivative(torch.tensor(0.0, dtype=torch.float64))) == pytest.approx(b / (2 * math.tanh(b / 2)))
    x = torch.linspace(-0.5, 0.5, 200001, dtype=torch.float64)
    assert float(torch.trapezoid(s.derivative(x), x)) == pytest.approx(1.0, abs=1e-8)
    assert float(s.derivative(torch.tensor([0.5001, -0.7], dtype=torch.float64)).abs().max()) == 0.0


def test_spike_gradient_at_threshold_is_the_peak_over_theta():
    b, theta = 3.0, 0.5
    u = torch.tensor([theta], dtype=torch.float64, requires_grad=True)
    spike(u, theta, Surrogate("dspike", b)).sum().backward()
    assert float(u.grad) == pytest.approx(b / (2 * math.tanh(b / 2)) / theta)


def test_finite_differences_are_exact_on_a_quadratic():
    w = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    A = torch.tensor([[2.0, 0.3, 0.0, 0.1], [0.3, 1.0, 0.2, 0.0], [0.0, 0.2, 4.0, 0.5], [0.1, 0.0, 0.5, 3.0]],
                     dtype=torch.float64)
    loss = lambda: float(0.5 * w.reshape(-1) @ A @ w.reshape(-1))  # noqa: E731  (central differences are exact)
    got = finite_difference_gradient(loss, w, torch.tensor([0, 2, 3]), eps=0.1)
    torch.testing.assert_close(got, (A @ w.reshape(-1))[[0, 2, 3]])


def test_selection_picks_the_best_cosine_on_a_constructed_case():
    fd = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    grads = {3.0: torch.tensor([0.0, 1.0, 1.0]),    # cos = 2/sqrt(10) = 0.632
             3.5: torch.tensor([2.0, 3.0, 0.5]),    # cos = 8/sqrt(5*13.25) = 0.983
             2.5: torch.tensor([-1.0, -2.0, 0.0])}  # cos = -1
    best, scores = select_temperature([3.0, 3.5, 2.5], fd, grads.__getitem__)
    assert best == 3.5
    assert scores[3.0] == pytest.approx(2 / math.sqrt(10))
    assert scores[3.5] == pytest.approx(8 / math.sqrt(5 * 13.25))
    assert scores[2.5] == pytest.approx(-1.0)


def test_rule_selection_matches_an_independent_recomputation():
    torch.manual_seed(0)
    cfg = make_config({"rule": "dspike", "arch": "digits-mlp", "width": 0.05, "T": 4, "threshold": 0.5,
                       "dspike_b": 2.0, "dspike_db": 1.5, "dspike_fd_eps": 0.05})
    rule = Dspike(cfg, DataInfo(10, 1, 8), None, torch.randn(4, 1, 8, 8))
    rule.model.double()
    x, y = torch.randn(32, 1, 8, 8, dtype=torch.float64) * 2, torch.randint(0, 10, (32,))
    weight = rule.first_weight()

    def loss_at(b):
        for n in rule.model.neurons.values():
            n.config = dataclasses.replace(n.config, surrogate=Surrogate("dspike", b))
        return F.cross_entropy(rule.model(x, 4).mean(0), y)

    fd = torch.zeros(weight.numel(), dtype=torch.float64)
    with torch.no_grad():
        for i in range(weight.numel()):
            w0 = float(weight.view(-1)[i])
            weight.view(-1)[i] = w0 + 0.05
            plus = float(loss_at(2.0))
            weight.view(-1)[i] = w0 - 0.05
            minus = float(loss_at(2.0))
            weight.view(-1)[i] = w0
            fd[i] = (plus - minus) / 0.1
    expected = {}
    for b in (2.0, 3.5, 0.5):
        (g,) = torch.autograd.grad(loss_at(b), weight)
        expected[b] = float(F.cosine_similarity(g.reshape(-1), fd, dim=0))
    assert fd.abs().sum() > 0 and len(set(round(v, 6) for v in expected.values())) == 3

    start = {k: v.clone() for k, v in rule.model.state_dict().items()}
    scores = rule.choose_temperature(x, y)
    assert set(scores) == {2.0, 3.5, 0.5}
    for b, cos in expected.items():
        assert scores[b] == pytest.approx(cos, abs=1e-9)
    best = max(expected, key=expected.get)
    assert rule.b == best
    assert all(n.config.surrogate == Surrogate("dspike", best) for n in rule.model.neurons.values())
    for k, v in rule.model.state_dict().items():  # nothing moved: weights and statistics restored
        torch.testing.assert_close(v, start[k])


def test_fixed_temperature_option_keeps_b():
    cfg = make_config({"rule": "dspike", "arch": "digits-mlp", "width": 0.05, "T": 2, "dspike_b": 4.0,
                       "dspike_select": False})
    rule = Dspike(cfg, DataInfo(10, 1, 8), None, torch.randn(4, 1, 8, 8))
    opt = torch.optim.Adam(rule.optim_parameters(), 1e-3)
    rule.train(True)
    for epoch in range(2):
        logs = rule.train_step(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)), opt, epoch)
        assert logs["dspike_b"] == 4.0


def test_dspike_learns_digits(direct_run):
    summary = direct_run("dspike", dspike_fd_coords=32, dspike_fd_batch=32)
    assert summary["student_acc"] > 0.8  # chance is 0.10
    rows = RunFolder(summary["run_dir"]).read_metrics()
    assert all(r["dspike_b"] in (2.0, 2.5, 3.0, 3.5, 4.0) for r in rows)  # a temperature chosen each epoch
