"""DECOLLE (Kaiser et al. 2020): the online form (eligibility traces, one step at a time) gives the same
gradient as layer-local BPTT with the reset detached; readouts stay fixed; gradients stay layer-local;
learning on digits."""
import pytest
import torch

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.rules.base import DataInfo
from spiketandem.rules.decolle import Decolle


def decolle(**fields):
    cfg = make_config({"rule": "decolle", "arch": "digits-cnn", "T": 5, **fields})
    return Decolle(cfg, DataInfo(10, 1, 8), None, torch.randn(16, 1, 8, 8))


@pytest.mark.parametrize("neuron,loss,burnin", [("lif", "mse", 0), ("if", "ce", 2)])
def test_online_eligibility_gradient_equals_offline_bptt(neuron, loss, burnin):
    torch.manual_seed(0)
    rule = decolle(neuron=neuron, threshold=0.7, decolle_loss=loss, decolle_burnin=burnin)
    rule.model.double()
    rule.readouts.double()
    x, y = torch.randn(6, 1, 8, 8, dtype=torch.float64) * 2, torch.randint(0, 10, (6,))
    rule.train(True)
    offline_loss, _, _ = rule.loss(x, y, 0)
    offline_loss.backward()
    offline = {n: p.grad.clone() for n, p in rule.model.named_parameters()}
    rule.model.zero_grad(set_to_none=True)
    online_loss, _ = rule.online_gradients(x, y)
    assert online_loss == pytest.approx(float(offline_loss.detach()), rel=1e-10)
    nonzero = 0
    for name, p in rule.model.named_parameters():
        torch.testing.assert_close(p.grad, offline[name], rtol=1e-8, atol=1e-12)
        nonzero += int(p.grad.abs().sum() > 0)
    assert nonzero == len(offline)  # every layer (and the readout) learns


def test_gradient_of_one_layer_loss_stays_in_that_layer():
    rule = decolle(decolle_mode="offline")
    x, y = torch.randn(8, 1, 8, 8) * 2, torch.randint(0, 10, (8,))
    from spiketandem.neuron import RunContext
    ctx = RunContext(T=5, batch=8, detach=True, records={})
    rule.model.run(x, ctx)
    rule.local_loss("relu_1", ctx.records["relu_1"], y).backward()
    for layer in rule.model.layers:
        grads = [p.grad for p in rule.model.layer_parameters(layer.name)]
        if layer.name == "relu_1":
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None for g in grads)


@pytest.mark.parametrize("updates", ["step", "window"])
def test_readouts_stay_fixed_while_the_weights_learn(updates):
    rule = decolle(decolle_updates=updates)
    readouts = {k: v.clone() for k, v in rule.readouts.state_dict().items()}
    weights = {k: v.clone() for k, v in rule.model.state_dict().items()}
    assert not {id(p) for p in rule.readouts.parameters()} and not list(rule.readouts.parameters())
    opt = torch.optim.Adam(rule.optim_parameters(), 1e-2)
    rule.train(True)
    for _ in range(2):
        rule.train_step(torch.randn(8, 1, 8, 8) * 2, torch.randint(0, 10, (8,)), opt, 0)
    for k, v in rule.readouts.state_dict().items():
        assert torch.equal(v, readouts[k])
    assert any(not torch.equal(v, weights[k]) for k, v in rule.model.state_dict().items())


def test_online_form_refuses_what_it_cannot_do():
    with pytest.raises(SpiketandemError, match="decolle-mode offline"):
        decolle(encoding="rate")
    with pytest.raises(SpiketandemError, match="burnin"):
        decolle(decolle_burnin=5)
    decolle(encoding="rate", decolle_mode="offline")  # the offline form takes any encoding


def test_decolle_learns_digits(direct_run):
    assert direct_run("decolle")["student_acc"] > 0.8  # chance is 0.10
