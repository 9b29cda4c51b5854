"""Shortcut back-propagation (Guo et al. 2024): the balance schedule against its formula, heads on the
right layers and computed as stated, no heads in the inference graph, learning on digits."""
import math

import pytest
import torch
import torch.nn.functional as F

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.workflow import load_run
from spiketandem.rules.base import DataInfo
from spiketandem.rules.direct import record_shapes
from spiketandem.rules.shortcut import Shortcut, balance_coefficient, stage_ends
from spiketandem.rules.stbp import STBP


def shortcut(**fields):
    cfg = make_config({"rule": "shortcut", "arch": "digits-cnn", "T": 4, "epochs": 5, **fields})
    return Shortcut(cfg, DataInfo(10, 1, 8), None, torch.randn(8, 1, 8, 8))


def test_balance_schedules_follow_their_formulas():
    # E = 5 epochs: progress e / 4
    assert [balance_coefficient(e, 5, "linear") for e in range(5)] == pytest.approx([1, 0.75, 0.5, 0.25, 0])
    cosine = [(1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]
    assert [balance_coefficient(e, 5, "cosine") for e in range(5)] == pytest.approx(cosine)
    assert cosine[1] == pytest.approx(0.853553, abs=1e-6)
    assert [balance_coefficient(e, 5, "constant", 0.3) for e in range(5)] == pytest.approx([0.3] * 5)
    assert balance_coefficient(0, 1, "linear", 0.7) == 0.7  # a single epoch keeps lambda0


def test_rule_applies_the_schedule_each_epoch():
    rule = shortcut(shortcut_schedule="linear", shortcut_lambda=2.0)
    seen = []
    for epoch in range(5):
        rule.on_epoch_start(epoch)
        seen.append(rule.balance)
    assert seen == pytest.approx([2.0, 1.5, 1.0, 0.5, 0.0])


def test_stage_ends_pick_the_last_conv_layer_of_each_resolution():
    assert stage_ends({"a": (8, 8, 8), "b": (16, 8, 8), "c": (128,)}) == ["b"]
    vgg = STBP(make_config({"rule": "stbp", "arch": "vgg11", "width": 0.125, "T": 1}), DataInfo(10, 3, 32), None,
               None)
    shapes = record_shapes(vgg.model, vgg.info, "cpu")
    # VGG-11: 32x32 | 16x16 | 8x8 8x8 | 4x4 4x4 | 2x2 2x2 | fc fc -> the conv layers before each pooling
    ends = stage_ends(shapes)
    names = list(shapes)
    assert ends == [names[i] for i in (0, 1, 3, 5, 7)]


def test_loss_is_main_plus_balance_times_head_losses_computed_as_stated():
    rule = shortcut(shortcut_layers="all")
    assert rule.head_names == ["relu", "relu_1"]
    rule.on_epoch_start(2)
    x, y = torch.randn(6, 1, 8, 8) * 2, torch.randint(0, 10, (6,))
    torch.manual_seed(0)
    loss, scores, logs = rule.loss(x, y, 2)
    out, ctx = rule.run(x, 4, records={})
    expected = F.cross_entropy(out.mean(0), y)
    for name in rule.head_names:
        head = rule.heads[name].linear
        pooled = ctx.records[name].mean(dim=(0, 3, 4))           # mean over time and space: [B, C]
        expected = expected + rule.balance * F.cross_entropy(pooled @ head.weight.T + head.bias, y)
    torch.testing.assert_close(loss, expected)
    assert rule.balance == pytest.approx(0.5)


def test_heads_send_gradient_to_shallow_layers_and_are_absent_from_inference(direct_run):
    rule = shortcut()
    x, y = torch.randn(6, 1, 8, 8) * 2, torch.randint(0, 10, (6,))
    first = rule.model.layer_parameters("relu")[0]
    grads = []
    for balance in (0.0, 1.0):
        rule.balance = balance
        first.grad = None
        rule.loss(x, y, 0)[0].backward()
        grads.append(first.grad.clone())
    assert (grads[0] - grads[1]).abs().max() > 0  # the heads reach the first layer
    head_params = {id(p) for p in rule.heads.parameters()}
    assert head_params and not head_params & {id(p) for p in rule.model.parameters()}
    assert not any("head" in k for k in rule.model.state_dict())
    # a trained run reloads with its heads, but inference is the plain student
    run = direct_run("shortcut")
    _, loaded, _, _ = load_run(run["run_dir"], "cpu")
    loaded.train(False)
    torch.testing.assert_close(loaded.predict(x, 4), loaded.model(x, 4).mean(0))
    assert len(loaded.heads) == 1 and loaded.heads["relu_1"].linear.weight.abs().sum() > 0


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(SpiketandemError, match="no spiking layer named nope"):
        shortcut(shortcut_layers="relu,nope")


def test_shortcut_learns_digits(direct_run):
    assert direct_run("shortcut")["student_acc"] > 0.8  # chance is 0.10
