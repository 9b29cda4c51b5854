"""Progressive tandem learning (Wu et al. 2021): layers are converted in order, each at the percentile
of its ANN activation in the network of that stage, and frozen when their stage ends; patience
restores the stage's best weights; validation never sees a training batch; the budget is respected;
and it turns a useless T=2 conversion into a working SNN."""
import pytest
import torch
import torch.nn.functional as F

from spiketandem.errors import SpiketandemError
from spiketandem.neuron import RunContext
from spiketandem.rules.hybrid import run_hybrid
from spiketandem.train import make_optimizer


def nearest_rank_percentile(values: torch.Tensor, q: float) -> float:
    ordered = values.flatten().sort().values
    return float(ordered[max(1, round(q / 100 * ordered.numel())) - 1])


def run_epoch(rule, optimizer, epoch, steps=3):
    """What the shared loop does in one epoch (``train.fit``), on a few constant batches."""
    rule.on_epoch_start(epoch)
    rule.train(True)
    for _ in range(steps):
        rule.train_step(torch.zeros(32, 1, 8, 8), torch.zeros(32, dtype=torch.long), optimizer, epoch)
    rule.on_epoch_end(epoch, {})


def test_layers_are_converted_in_order_at_their_percentile_and_frozen(digits_rule, digits_data):
    T = 4
    rule, cfg = digits_rule("ptl", neuron="if", T=T, epochs=3)  # 3 neuron layers: one epoch per stage
    net, neurons = rule.model.graph_module, rule.model.neurons
    rule.setup(digits_data[0], "cpu")
    optimizer = make_optimizer(rule, cfg)
    images = rule.calibration

    # stage 1: the whole network is still the ANN, so layer 1's scale is that of ReLU(conv1(x))
    assert rule.stage == 0
    expected = nearest_rank_percentile(F.relu(net.conv1(images)).detach(), 99.9)
    assert float(neurons["relu"].threshold) == pytest.approx(expected, rel=1e-5)
    assert float(neurons["relu"].amplitude) == pytest.approx(expected, rel=1e-5)

    run_epoch(rule, optimizer, 0)
    assert rule.stage == 1
    assert not any(p.requires_grad for p in rule.model.layer_parameters("relu"))
    assert all(p.requires_grad for p in rule.model.layer_parameters("relu_1") + rule.model.readout_parameters())
    # stage 2: layer 1 spikes; layer 2's ANN input is conv2 of layer 1's rate-coded output
    ctx = RunContext(T=T, batch=images.shape[0], records={})
    with torch.no_grad():
        rule.model.run(images, ctx)
        rate1 = neurons["relu"].amplitude * ctx.records["relu"].mean(0)
        expected = nearest_rank_percentile(F.relu(net.conv2(rate1)), 99.9)
    assert float(neurons["relu_1"].threshold) == pytest.approx(expected, rel=1e-4)

    frozen = net.conv1.weight.detach().clone()
    trained = net.fc1.weight.detach().clone()
    run_epoch(rule, optimizer, 1)
    assert torch.equal(net.conv1.weight, frozen)          # a converted layer no longer changes
    assert not torch.equal(net.fc1.weight, trained)       # later layers keep learning
    assert rule.stage == 2 and not rule.done
    run_epoch(rule, optimizer, 2)
    assert rule.done and not any(p.requires_grad for p in rule.model.parameters())
    # once done, every layer spikes: the stage network is the plain SNN
    x = images[:16]
    ptl_logits = rule.model.run(x, RunContext(T=T, batch=16)).mean(0)
    torch.testing.assert_close(run_hybrid(rule.model, x, T, rule.modes()), ptl_logits)


def test_patience_restores_the_best_weights_of_the_stage(digits_rule, digits_data, monkeypatch):
    rule, cfg = digits_rule("ptl", neuron="if", T=2, epochs=30, ptl_patience=2)  # stage cap 10: patience decides
    rule.setup(digits_data[0], "cpu")
    scores = iter([0.5, 0.9, 0.8, 0.7])
    monkeypatch.setattr(rule, "validation_accuracy", lambda: next(scores))
    optimizer = make_optimizer(rule, cfg)
    run_epoch(rule, optimizer, 0)
    run_epoch(rule, optimizer, 1)                          # the best epoch of stage 1
    best = {k: v.clone() for k, v in rule.model.state_dict().items()}
    run_epoch(rule, optimizer, 2)
    assert rule.stage == 0 and rule.stale == 1
    run_epoch(rule, optimizer, 3)                          # second epoch without gain: back to the best
    assert rule.stage == 1
    now = rule.model.state_dict()
    for key, value in best.items():
        if key.startswith("graph_module.neurons.relu_1."):  # the newly converted layer got its scale
            continue
        torch.testing.assert_close(now[key], value, msg=key)


def test_validation_is_held_out_from_training(digits_rule, digits_data):
    rule, _ = digits_rule("ptl", neuron="if", T=2, epochs=3, ptl_val_fraction=0.25)
    data = digits_data[0]
    fit = rule.setup(data, "cpu")  # the loop trains on what setup returns
    n = len(data.train_y)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    held_out = torch.cat([x for x, _ in rule.val_batches])
    held_out = ((held_out * std + mean) * 255).round().to(torch.uint8)  # back to the stored images
    assert len(held_out) == round(0.25 * n) and len(fit.train_x) + len(held_out) == n
    assert torch.equal(fit.test_x, data.test_x)  # the test set is untouched
    # training part + held-out part = the training set, image for image (as multisets)
    def rows(x):
        return sorted(bytes(img.numpy()) for img in x)
    assert rows(torch.cat([fit.train_x, held_out])) == rows(data.train_x)


def test_budget_and_setup_errors(digits_rule):
    with pytest.raises(SpiketandemError, match="--epochs >= 3"):
        digits_rule("ptl", neuron="if", epochs=2)
    with pytest.raises(SpiketandemError, match="--neuron if"):
        digits_rule("ptl", neuron="lif", epochs=3)


def test_ptl_turns_a_failed_short_window_conversion_into_a_working_snn(digits_rule, fit_and_score):
    rule, cfg = digits_rule("ptl", neuron="if", T=2, eval_T=[2], epochs=3)
    converted, trained = fit_and_score(rule, cfg, before=True)
    assert converted[2] < 0.3 and trained[2] > 0.6  # measured: 0.10 converted, 0.87 after PTL
