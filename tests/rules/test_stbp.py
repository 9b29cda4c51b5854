"""STBP and its options: NeuNorm's auxiliary recursion on a hand example, tdBN's statistics over
(T, B, H, W) scaled by V_th, the voting output layer, and learning on digits."""
import pytest
import torch
from torch import nn

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.rules.base import DataInfo
from spiketandem.rules.neunorm import NeuNorm
from spiketandem.rules.stbp import STBP
from spiketandem.rules.tdbn import ThresholdBatchNorm

DIGITS = DataInfo(10, 1, 8)


def stbp(**fields):
    cfg = make_config({"rule": "stbp", "arch": "digits-cnn", "T": 4, **fields})
    return STBP(cfg, DIGITS, None, torch.randn(4, 1, 8, 8))


def test_neunorm_follows_its_recursion_on_a_hand_example():
    # spikes [T=3, B=1, F=2, H=1, W=2]; k = 0.5, v = 2 -> drive = (2 / 2^2) * sum_f o = 0.5 * sum_f o
    o = torch.tensor([[[[1, 0]], [[1, 1]]],
                      [[[0, 0]], [[1, 0]]],
                      [[[1, 1]], [[0, 0]]]], dtype=torch.float64).unsqueeze(1)
    # x[0] = 0.5*[2, 1] = [1, .5]; x[1] = 0.5*[1, .5] + 0.5*[1, 0] = [1, .25]; x[2] = 0.5*[1, .25] + 0.5*[1, 1]
    x = torch.tensor([[1.0, 0.5], [1.0, 0.25], [1.0, 0.625]], dtype=torch.float64)
    layer = NeuNorm((2, 1, 2), k=0.5, v=2.0).double()
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([[[0.2, 0.4]], [[-0.1, 1.0]]]))
    out = layer.normalise(o).detach()
    for t in range(3):
        for f, alpha in enumerate(([0.2, 0.4], [-0.1, 1.0])):
            for w in range(2):
                assert float(out[t, 0, f, 0, w]) == pytest.approx(float(o[t, 0, f, 0, w]) - alpha[w] * float(x[t, w]))


def test_neunorm_sits_between_layers_and_alpha_gets_gradient():
    torch.manual_seed(1)  # a draw whose layers fire: about two random draws in three leave alpha's gradient 0
    rule = stbp(neunorm=True)
    assert set(rule.neunorm) == {"relu", "relu_1"}  # the two convolutional spiking layers
    layer = rule.neunorm["relu"]
    with torch.no_grad():
        layer.alpha.uniform_(-0.5, 0.5)
    seen = {}
    conv2 = rule.model.graph_module.get_submodule("conv2")
    conv2.register_forward_pre_hook(lambda m, args: seen.update(conv2_in=args[0].detach()))
    x, y = torch.randn(6, 1, 8, 8) * 2, torch.randint(0, 10, (6,))
    out, ctx = rule.run(x, 4, records={})
    o = ctx.records["relu"].detach()                       # the layer's own spikes [T, B, F, H, W]
    drive = o.sum(2, keepdim=True) * (layer.v / o.shape[2] ** 2)
    aux, expected = torch.zeros_like(drive[0]), []
    for t in range(4):                                     # x[t] = k x[t-1] + (v/F^2) sum_f o[t]
        aux = layer.k * aux + drive[t]
        expected.append(o[t] - layer.alpha.detach() * aux)
    torch.testing.assert_close(seen["conv2_in"], torch.stack(expected).flatten(0, 1))
    rule.objective(out, ctx, y, 0)[0].backward()
    assert all(float(m.alpha.grad.abs().sum()) > 0 for m in rule.neunorm.values())
    assert {"graph_module.neunorm.relu.alpha", "graph_module.neunorm.relu_1.alpha"} <= set(rule.model.state_dict())


def test_tdbn_normalises_over_time_batch_and_space_scaled_by_threshold():
    rule = stbp(tdbn=True, threshold=0.5)
    bns = {n: m for n, m in rule.model.graph_module.named_modules() if isinstance(m, ThresholdBatchNorm)}
    assert set(bns) == {"bn1", "bn2"} and not any(isinstance(m, nn.BatchNorm2d) for m in rule.model.modules())
    bn = bns["bn2"]  # after conv2, whose input spikes change over time
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    seen = {}
    bn.register_forward_hook(lambda m, i, o: seen.update(inp=i[0].detach(), out=o.detach()))
    T, B = 4, 6
    rule.train(True)
    rule.model(torch.randn(B, 1, 8, 8) * 2, T)
    inp = seen["inp"].double().reshape(T, B, *seen["inp"].shape[1:])   # [T, B, C, H, W]
    mean = inp.mean(dim=(0, 1, 3, 4), keepdim=True)
    var = ((inp - mean) ** 2).mean(dim=(0, 1, 3, 4), keepdim=True)      # biased, as BN normalises
    w, b = bn.weight.detach().double().reshape(1, 1, -1, 1, 1), bn.bias.detach().double().reshape(1, 1, -1, 1, 1)
    expected = 0.5 * (inp - mean) / torch.sqrt(var + bn.eps) * w + b    # lambda * (alpha V_th x_hat) + beta
    torch.testing.assert_close(seen["out"].double().reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)
    per_step = inp.mean(dim=(1, 3, 4), keepdim=True)                     # the statistic tdBN does NOT use
    assert (per_step - mean).abs().max() > 1e-3
    torch.testing.assert_close(bn.running_mean.double(), 0.1 * mean.flatten(), rtol=1e-4, atol=1e-6)


def test_without_tdbn_batchnorm_is_folded_away():
    rule = stbp()
    assert not any(isinstance(m, (nn.BatchNorm2d, ThresholdBatchNorm)) for m in rule.model.modules())


def test_voting_layer_averages_the_rates_of_each_class_population():
    rule = stbp(voting=3, threshold=0.5, neuron="lif", leak=0.8)
    x = torch.randn(5, 1, 8, 8) * 3
    rule.train(False)
    with torch.no_grad():
        out, _ = rule.run(x, 4)
        assert out.shape == (4, 5, 30)
        u, s, count = torch.zeros(5, 30), torch.zeros(5, 30), torch.zeros(5, 30)
        for t in range(4):  # LIF, reset by subtraction, by hand
            u = 0.8 * u + out[t] - 0.5 * s
            s = (u >= 0.5).float()
            count += s
        expected = (count / 4).reshape(5, 10, 3).mean(2)
        torch.testing.assert_close(rule.predict(x, 4), expected)


def test_negative_voting_is_a_clear_error():
    with pytest.raises(SpiketandemError, match="voting"):
        stbp(voting=-1)


def test_stbp_learns_digits(direct_run):
    assert direct_run("stbp")["student_acc"] > 0.8  # chance is 0.10


def test_stbp_with_neunorm_and_tdbn_learns_digits(direct_run):
    assert direct_run("stbp", neunorm=True, tdbn=True)["student_acc"] > 0.8
