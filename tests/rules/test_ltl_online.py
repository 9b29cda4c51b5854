"""Online LTL (Eq. 9-11): the per-step weight gradients against a hand-written forward and the paper's
gradient formula; the batch mode sums them; the gated on-chip form and its update counts; the rule
learns on digits through the CLI."""
import json

import pytest
import torch
from torch import nn

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.rules.base import DataInfo
from spiketandem.rules.ltl_online import LTLOnline, synaptic_updates, warmup_steps

P = 1.0      # boxcar width (in units of the threshold)
LEAK = 0.9


class RecordingOptimizer:
    """Stands in for the optimizer: keeps a copy of every gradient at each step() and never changes a weight,
    so the hand-written forward below sees the same weights at every step."""

    def __init__(self, params):
        self.params = list(params)
        self.steps = []

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.steps.append([None if p.grad is None else p.grad.clone() for p in self.params])


def make_rule(T=6, **options):
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    cfg = make_config({"rule": "ltl-online", "T": T, "leak": LEAK, "ynorm": "fixed", "percentile": 90.0,
                       "surrogate_param": P, "options": options})
    images = torch.randn(64, 1, 2, 2)
    rule = LTLOnline(cfg, DataInfo(3, 1, 2), teacher, images)
    rule.setup(images, "cpu")  # --ynorm fixed: y_norm measured once, on these images
    return rule, teacher


def hand_steps(rule, teacher, x, y, gated=False):
    """Per-step gradients by the paper's formulas, computed without autograd.

    Forward (Eq. 1-3, reset by subtraction): U_l[t] = a U_l[t-1] + I_l[t] - theta_l S_l[t-1],
    S_l = H(U_l - theta_l), I_1 = W_1 x + b_1, I_2 = W_2 (amp_1 S_1[t]) + b_2, O[t] = W_3 (amp_2 S_2[t]) + b_3.
    Step t > warm-up (Eq. 10-11 with the mean over the N_l elements of a layer):
      zeta_l = -(2 / (t N_l)) (target_l - C_l[t] / t)  (gated: sign(C_l[t]/t - target_l) / N_l),
      e_l = zeta_l * boxcar(U_l),  dW_l = e_l^T input_l,  db_l = sum_b e_l;
    readout: g = (softmax(m[t]) - onehot(y)) / (B t) with m[t] = mean_{k<=t} O[k];  dW_3 = g^T h_2.
    Also the gated update counts: made = sum_{b,i} gate_bi nnz(input_b), dense = B * out * in."""
    lin1, lin2, lin3 = teacher[1], teacher[3], teacher[5]
    W = [lin1.weight.detach(), lin2.weight.detach(), lin3.weight.detach()]
    b = [lin1.bias.detach(), lin2.bias.detach(), lin3.bias.detach()]
    neurons = list(rule.model.neurons.values())
    theta = [float(n.threshold) for n in neurons]
    amp = [float(n.amplitude) for n in neurons]
    xf = x.flatten(1)
    a1 = torch.relu(xf @ W[0].T + b[0])
    a2 = torch.relu(a1 @ W[1].T + b[1])
    target = [(a1 / amp[0]).clamp(0, 1), (a2 / amp[1]).clamp(0, 1)]
    B = x.shape[0]
    u = [torch.zeros(B, 7), torch.zeros(B, 5)]
    s = [torch.zeros(B, 7), torch.zeros(B, 5)]
    C = [torch.zeros(B, 7), torch.zeros(B, 5)]
    out_sum = torch.zeros(B, 3)
    onehot = torch.nn.functional.one_hot(y, 3).float()
    steps, made, dense = [], 0, 0
    for t in range(1, rule.cfg.T + 1):
        inputs = [xf, None]
        for l in range(2):
            current = inputs[l] @ W[l].T + b[l]
            u[l] = LEAK * u[l] + current - theta[l] * s[l]
            s[l] = (u[l] >= theta[l]).float()
            C[l] = C[l] + s[l]
            if l == 0:
                inputs[1] = s[0] * amp[0]
        h2 = s[1] * amp[1]
        O = h2 @ W[2].T + b[2]
        out_sum = out_sum + O
        if t <= rule.warmup:
            continue
        grads = []
        for l in range(2):
            n_l = target[l].numel()
            width = P * theta[l]
            box = ((u[l] - theta[l]).abs() < width / 2).float()
            if gated:
                err = torch.sign(C[l] / t - target[l])
                zeta = err / n_l
                gate = (err != 0).float() * box
                made += int((gate.sum(1) * (inputs[l] != 0).sum(1)).sum())
                dense += B * W[l].shape[0] * W[l].shape[1]
            else:
                zeta = -(2 / (t * n_l)) * (target[l] - C[l] / t)
            e = zeta * box / width
            grads += [e.T @ inputs[l], e.sum(0)]
        g = (torch.softmax(out_sum / t, 1) - onehot) / (B * t)
        grads += [g.T @ h2, g.sum(0)]
        steps.append(grads)
    return steps, made, dense


def rule_params(rule):
    names = [layer.name for layer in rule.model.layers]
    return [p for n in names for p in rule.model.layer_parameters(n)] + rule.model.readout_parameters()


@pytest.mark.parametrize("warmup_steps_", [0, 3])
def test_step_gradients_match_eq_10_11(warmup_steps_):
    rule, teacher = make_rule(T=6, online_update="step", online_warmup_steps=warmup_steps_)
    x, y = torch.randn(16, 1, 2, 2) * 1.5, torch.randint(0, 3, (16,))
    opt = RecordingOptimizer(rule_params(rule))
    rule.train_step(x, y, opt, 0)
    expected, _, _ = hand_steps(rule, teacher, x, y)
    assert len(opt.steps) == len(expected) == 6 - warmup_steps_
    assert any(g.abs().sum() > 0 for step in expected for g in step[:4])  # the boxcar let some gradient through
    for got, want in zip(opt.steps, expected):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)


def test_batch_mode_sums_the_step_gradients_including_the_static_first_layer():
    rule, teacher = make_rule(T=8, online_update="batch")   # default warm-up: 6 of 8 steps
    assert rule.warmup == 6
    x, y = torch.randn(16, 1, 2, 2) * 1.5, torch.randint(0, 3, (16,))
    opt = RecordingOptimizer(rule_params(rule))
    rule.train_step(x, y, opt, 0)
    expected, _, _ = hand_steps(rule, teacher, x, y)
    assert len(opt.steps) == 1
    for k, g in enumerate(opt.steps[0]):
        torch.testing.assert_close(g, sum(step[k] for step in expected), rtol=1e-4, atol=1e-7)


def test_gated_onchip_update_and_its_counts():
    rule, teacher = make_rule(T=6, online_update="step", online_warmup_steps=2, onchip_gate=True)
    x, y = torch.randn(16, 1, 2, 2) * 1.5, torch.randint(0, 3, (16,))
    x[:4, 0, 0, 0] = 0.0  # some inactive inputs: they must not be counted as updates
    opt = RecordingOptimizer(rule_params(rule))
    logs = rule.train_step(x, y, opt, 0)
    expected, made, dense = hand_steps(rule, teacher, x, y, gated=True)
    for got, want in zip(opt.steps, expected):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)
    assert 0 < made < dense
    assert rule.update_counts == {"made": made, "dense": dense}
    assert logs["onchip_updates_skipped"] == pytest.approx(1 - made / dense)
    assert rule.summary_extras()["onchip_updates_skipped"] == pytest.approx(1 - made / dense)


def test_conv_update_count_against_a_loop():
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = (torch.rand(2, 2, 5, 5) < 0.3).float()
    gate = torch.rand(2, 3, 3, 3) < 0.5
    made = dense = 0
    xp = nn.functional.pad(x, (1, 1, 1, 1))
    inside = nn.functional.pad(torch.ones_like(x), (1, 1, 1, 1))
    for bi in range(2):
        for o in range(3):
            for i in range(3):
                for j in range(3):
                    patch = xp[bi, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                    real = inside[bi, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                    dense += int(real.sum())
                    made += int(gate[bi, o, i, j]) * int((patch != 0).sum())
    assert synaptic_updates(conv, x, gate) == (made, dense)


def test_warmup_scales_with_T_and_bad_values_are_clear():
    assert [warmup_steps(T, 0.75) for T in (1, 2, 4, 8, 16, 32)] == [0, 1, 3, 6, 12, 24]
    assert warmup_steps(16, 0.75, steps=4) == 4
    with pytest.raises(SpiketandemError, match="no step to learn"):
        warmup_steps(4, 0.75, steps=4)
    with pytest.raises(SpiketandemError, match=r"\[0, 1\)"):
        warmup_steps(8, 1.0)
    with pytest.raises(SpiketandemError, match="surrogate boxcar"):
        rule_cfg = make_config({"rule": "ltl-online", "surrogate": "sigmoid", "options": {"onchip_gate": True}})
        LTLOnline(rule_cfg, DataInfo(3, 1, 2), make_rule()[1], torch.randn(8, 1, 2, 2))


def test_online_ltl_learns_digits_through_the_cli(tmp_path, digits_teacher, capsys):
    out = tmp_path / "run"
    code = main(["train", "--rule", "ltl-online", "--dataset", "digits", "--arch", "digits-cnn", "--teacher",
                 digits_teacher, "--init", "random", "--T", "4", "--eval-T", "4", "--epochs", "3", "--lr", "3e-3",
                 "--online-warmup-steps", "1", "--onchip-gate", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rule"] == "ltl-online"
    assert summary["student_acc"] > 0.8  # chance is 0.10; random init, so nothing comes from conversion
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(0 < r["onchip_updates_skipped"] < 1 for r in rows)
    # the run-level on-chip counts reach summary.json (the rule's summary_extras hook)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["onchip_updates_made"] > 0 and saved["onchip_updates_dense"] > saved["onchip_updates_made"]
    assert saved["onchip_updates_skipped"] == pytest.approx(
        1 - saved["onchip_updates_made"] / saved["onchip_updates_dense"])
