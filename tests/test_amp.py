"""Mixed precision (bf16 autocast) and channels_last, on the CPU."""
import json

import pytest
import torch

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.neuron import RunContext
from spiketandem.precision import autocast_factory, keep_neurons_float32, prepare_rule
from spiketandem.rules import RULES
from spiketandem.rules.base import DataInfo

CPU = torch.device("cpu")


def _rule(amp="off", channels_last=False, seed=0):
    """An offline-LTL rule for a small random CNN teacher on 32x32 RGB images."""
    torch.manual_seed(seed)
    info = DataInfo(10, 3, 32)
    cfg = make_config({"rule": "ltl-offline", "arch": "vgg11", "width": 0.125, "T": 6, "amp": amp,
                       "channels_last": channels_last, "progress": False})
    teacher = RULES["ann"](cfg.replace(rule="ann"), info).model.eval()
    x = torch.randn(16, 3, 32, 32)
    rule = RULES["ltl-offline"](cfg, info, teacher, x)
    return rule, x, torch.randint(0, 10, (16,))


def _forward(rule, x, context):
    ctx = RunContext(T=rule.cfg.T, batch=x.shape[0], detach=True, records={})
    with torch.no_grad(), context():
        logits = rule.model.run(x, ctx)
    return logits, ctx


def test_bf16_keeps_neurons_and_losses_float32():
    rule, x, y = _rule("bf16")
    context = prepare_rule(rule, "bf16", False, CPU)
    logits, ctx = _forward(rule, x, context)
    assert logits.dtype == torch.bfloat16  # the readout is a Linear: it does run in bf16
    for name, spikes in ctx.records.items():
        assert spikes.dtype == torch.float32, name
        assert ctx.state_out[name].u.dtype == torch.float32, name
        assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    with context():
        loss, _, logs = rule.loss(x, y, 0)
    assert loss.dtype == torch.float32


def test_bf16_spikes_and_loss_stay_close_to_float32():
    """Same weights, same batch: fp32 vs bf16 autocast.  bf16 keeps 8 significant bits, so each
    conv output carries a relative error of about 2^-9 (~0.2%) per term before accumulation; a neuron
    whose membrane passes within that margin of the threshold may fire one step earlier or later, and
    the change propagates to later layers.  Measured over 3 seeds: 0.13-0.21% of all (neuron, step)
    entries differ, i.e. about 5% of the spikes fired, and the loss moves by < 0.03%.  We require
    fewer than 15% of the fired spikes to differ and the loss within 1%."""
    rule, x, y = _rule()
    fp32 = _forward(rule, x, autocast_factory("off", CPU))[1].records
    loss32 = rule.loss(x, y, 0)[0].item()
    keep_neurons_float32(rule.model)
    context = autocast_factory("bf16", CPU)
    bf16 = _forward(rule, x, context)[1].records
    with context():
        loss16 = rule.loss(x, y, 0)[0].item()
    differing = sum(int((fp32[n] != bf16[n]).sum()) for n in fp32)
    total = sum(fp32[n].numel() for n in fp32)
    fired = sum(int(fp32[n].sum()) for n in fp32)
    assert fired > 0.01 * total  # a silent network would make this test vacuous
    assert differing / fired < 0.15, differing / fired
    assert loss16 == pytest.approx(loss32, rel=0.01)


def test_bf16_training_step_runs_and_updates():
    rule, x, y = _rule("bf16")
    context = prepare_rule(rule, "bf16", False, CPU)
    optimizer = torch.optim.Adam(rule.model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in rule.model.parameters()]
    with context():
        logs = rule.train_step(x, y, optimizer, 0)
    assert torch.isfinite(torch.tensor(logs["loss"]))
    assert all(p.dtype == torch.float32 for p in rule.model.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, p) for a, p in zip(before, rule.model.parameters()))


def test_channels_last_gives_the_contiguous_results():
    """Same weights in NCHW and NHWC layouts: the same spikes, the same loss and gradients (up to
    the order of floating-point sums inside the convolution)."""
    results = []
    for channels_last in (False, True):
        rule, x, y = _rule(channels_last=channels_last)
        prepare_rule(rule, "off", channels_last, CPU)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
            conv = next(m for m in rule.model.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        records = _forward(rule, x, autocast_factory("off", CPU))[1].records
        loss = rule.loss(x, y, 0)[0]
        loss.backward()
        grads = [p.grad.clone() for p in rule.model.parameters() if p.grad is not None]
        results.append((records, loss.item(), grads))
    (r0, l0, g0), (r1, l1, g1) = results
    assert all(torch.equal(r0[n], r1[n]) for n in r0)
    assert l1 == pytest.approx(l0, rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(g0, g1))


def test_device_batches_can_yield_channels_last():
    from spiketandem.data import DeviceBatches
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    kw = dict(mean=(0.5,) * 3, std=(0.25,) * 3, shuffle=True, augment=True, seed=1)
    plain = list(DeviceBatches(x, torch.arange(6), 4, **kw))
    nhwc = list(DeviceBatches(x, torch.arange(6), 4, memory_format=torch.channels_last, **kw))
    for (a, ya), (b, yb) in zip(plain, nhwc):
        assert b.is_contiguous(memory_format=torch.channels_last)
        assert not a.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b) and torch.equal(ya, yb)


def test_amp_flags_on_the_command_line(tmp_path, digits_teacher):
    """`train --amp bf16 --channels-last` trains a digits student end to end, well above chance."""
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--arch", "digits-cnn", "--teacher", digits_teacher,
                 "--epochs", "1", "--T", "4", "--eval-T", "4", "--amp", "bf16", "--channels-last", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_acc"] > 0.5  # 10 classes: chance is 0.1
    assert "amp: bf16" in (out / "config.yaml").read_text()


def test_bad_amp_is_refused():
    with pytest.raises(Exception, match="amp"):
        make_config({"amp": "fp8"})
