"""Quantized ANN (QAT): T + 1 activation levels, a straight-through gradient inside the clip range,
the forward equal to the digits CNN written out with the quantizer, and learning digits."""
import pytest
import torch

from spiketandem.models.quantized import quantize_activation


@pytest.mark.parametrize("levels", [1, 4, 8])
def test_quantizer_has_exactly_levels_plus_one_values(levels):
    s = 1.7
    z = torch.linspace(-2, 3 * s, 20001, dtype=torch.float64)
    values = torch.unique(quantize_activation(z, torch.tensor(s, dtype=torch.float64), levels))
    torch.testing.assert_close(values, torch.arange(levels + 1, dtype=torch.float64) * s / levels)


def test_straight_through_gradient_is_one_inside_the_clip_range_and_zero_outside():
    s = torch.tensor(1.5, dtype=torch.float64)
    z = torch.tensor([-0.7, -0.01, 0.01, 0.4, 0.76, 1.2, 1.49, 1.51, 4.0], dtype=torch.float64, requires_grad=True)
    quantize_activation(z, s, 4).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([0, 0, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float64))


def test_forward_is_the_folded_cnn_with_quantized_activations(digits_rule, digits_batch):
    rule, _ = digits_rule("qat", T=4)
    net, s = rule.model.graph_module, {n: m.amplitude for n, m in rule.model.neurons.items()}
    x, _ = digits_batch

    def q(z, name):  # clip to [0, s], round half up to 4 levels, written out
        return torch.floor(torch.minimum(z.clamp(min=0), s[name]) * 4 / s[name] + 0.5) * s[name] / 4
    with torch.no_grad():
        a1 = q(net.conv1(x), "relu")
        a2 = q(net.conv2(a1), "relu_1")
        expected = net.fc2(q(net.fc1(net.pool(a2).flatten(1)), "relu_2"))
    torch.testing.assert_close(rule.predict(x), expected)
    assert not rule.spiking


def test_qat_learns_digits_from_scratch(digits_rule, fit_and_score):
    rule, cfg = digits_rule("qat", init="random", T=4, eval_T=[4], epochs=3, lr=1e-3)
    before, after = fit_and_score(rule, cfg, before=True)
    assert before[4] < 0.3 and after[4] > 0.8  # measured: 0.91 after 3 epochs (4 levels)
