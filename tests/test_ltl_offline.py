"""Offline LTL learns: from a random initialisation (so accuracy cannot come from conversion), and it
improves a converted student at a short time window; the sequential schedule trains one layer at a time."""
import pytest
import torch

from spiketandem.config import make_config
from spiketandem.teachers import load_teacher
from spiketandem.workflow import train_student
from spiketandem.rules.base import DataInfo
from spiketandem.rules.ltl_offline import LTLOffline
from spiketandem.runs import RunFolder

QUIET = dict(progress=False, dataset="digits", arch="digits-cnn")


def run(tmp_path, teacher, **fields):
    cfg = make_config({**QUIET, "teacher": teacher, "out": str(tmp_path), **fields})
    return train_student(cfg, RunFolder(tmp_path), log=lambda *a, **k: None)


def test_ltl_learns_from_random_init(tmp_path, digits_teacher):
    summary = run(tmp_path, digits_teacher, init="random", T=8, eval_T=[8], epochs=4, lr=3e-3)
    assert summary["student_acc"] > 0.85  # chance is 0.10


def test_ltl_improves_a_converted_student_at_short_T(tmp_path, digits_teacher):
    before = run(tmp_path / "a", digits_teacher, neuron="if", T=2, eval_T=[2], epochs=1, lr=1e-12)
    after = run(tmp_path / "b", digits_teacher, neuron="if", T=2, eval_T=[2], epochs=3)
    assert after["student_acc"] > before["student_acc"] + 0.05


def test_sequential_schedule_trains_one_layer_per_stage(digits_teacher):
    cfg = make_config({**QUIET, "schedule": "sequential", "epochs": 3, "T": 4})
    teacher, _ = load_teacher(digits_teacher)
    rule = LTLOffline(cfg, DataInfo(10, 1, 8), teacher, torch.randn(32, 1, 8, 8))
    names = [layer.name for layer in rule.model.layers]
    for epoch, active in enumerate(names):
        rule.on_epoch_start(epoch)
        assert rule.active == [active]
        for name in names:
            assert all(p.requires_grad == (name == active) for p in rule.model.layer_parameters(name))
        loss, _, logs = rule.loss(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)), epoch)
        loss.backward()
        for name in names:
            grads = [p.grad for p in rule.model.layer_parameters(name)]
            assert all((g is not None) == (name == active) for g in grads)
        rule.model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("mode", ["batch", "running", "fixed"])
def test_local_targets_are_normalised_and_clamped(mode):
    from spiketandem.rules.ltl_targets import LocalTargets
    act = torch.relu(torch.randn(4000)) * 3
    targets = LocalTargets(mode, 99.0, initial={"a": 2.0})
    t = targets.target("a", act)
    assert t.min() >= 0 and t.max() <= 1
    scale = 2.0 if mode == "fixed" else float(act.kthvalue(int(0.99 * 4000)).values)
    torch.testing.assert_close(t, (act / scale).clamp(0, 1))
