"""Tandem learning (Wu et al. 2021): the forward pass is the SNN, the backward pass is the ANN's
gradient evaluated on the SNN's spike counts (checked against the digits CNN written out by hand),
and it learns digits from scratch."""
import torch
import torch.nn.functional as F

from spiketandem.config import make_config
from spiketandem.neuron import RunContext
from spiketandem.rules.base import DataInfo
from spiketandem.rules.tandem import Tandem


def value_of_gradient_of(value, ann):
    """A tensor with the value of ``value`` whose gradient is that of ``ann`` (the tandem coupling)."""
    return ann + (value - ann).detach()


def test_forward_is_the_snn_and_backward_the_ann_gradient_on_spike_counts(digits_rule, digits_batch):
    T = 6
    rule, _ = digits_rule("tandem", neuron="if", T=T)
    student = rule.model
    for scale, neuron in zip((0.6, 0.4, 0.2), student.neurons.values()):  # amplitudes other than 1 must cancel
        neuron.threshold.fill_(scale)
        neuron.amplitude.fill_(scale)
    x, y = digits_batch
    loss, logits, _ = rule.loss(x, y, 0)
    loss.backward()
    tandem_grads = {name: p.grad.clone() for name, p in student.named_parameters()}
    student.zero_grad(set_to_none=True)

    # the plain SNN (no tandem hooks): its logits and every layer's rate-coded output r = amplitude * C / T
    ctx = RunContext(T=T, batch=x.shape[0], records={})
    with torch.no_grad():
        snn_logits = student.run(x, ctx).mean(0)
    torch.testing.assert_close(logits, snn_logits)
    rate = {name: neuron.amplitude * ctx.records[name].mean(0) for name, neuron in student.neurons.items()}

    # the BN-folded digits CNN written out: each ReLU's value is the SNN rate, its gradient the ReLU's;
    # the loss is on the readout current summed over the window (the paper's count-based output)
    net = student.graph_module
    a1 = value_of_gradient_of(rate["relu"], F.relu(net.conv1(x)))
    a2 = value_of_gradient_of(rate["relu_1"], F.relu(net.conv2(a1)))
    a3 = value_of_gradient_of(rate["relu_2"], F.relu(net.fc1(net.pool(a2).flatten(1))))
    F.cross_entropy(T * net.fc2(a3), y).backward()
    for name, p in student.named_parameters():
        torch.testing.assert_close(tandem_grads[name], p.grad, msg=name)
    assert all(g.abs().sum() > 0 for g in tandem_grads.values())


def test_tandem_learns_digits_from_scratch(digits_rule, fit_and_score):
    rule, cfg = digits_rule("tandem", neuron="if", T=4, eval_T=[4], epochs=2)
    before, after = fit_and_score(rule, cfg, before=True)
    assert before[4] < 0.3 and after[4] > 0.8  # chance is 0.10; measured 0.88 (0.95 with T=8 and 3 epochs)


def test_tandem_on_a_resnet_forwards_the_snn_and_reaches_every_weight():
    """Reused ReLU modules and residual additions: the value is still the SNN's, and every parameter
    (both branches of each block) gets a tandem gradient."""
    cfg = make_config({"dataset": "cifar10", "arch": "resnet20", "width": 0.125, "rule": "tandem", "neuron": "if",
                       "T": 3, "device": "cpu"})
    torch.manual_seed(0)
    rule = Tandem(cfg, DataInfo(10, 3, 32), None, torch.randn(8, 3, 32, 32))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss, logits, _ = rule.loss(x, y, 0)
    loss.backward()
    with torch.no_grad():
        torch.testing.assert_close(logits, rule.model(x, 3).mean(0))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in rule.model.parameters())
