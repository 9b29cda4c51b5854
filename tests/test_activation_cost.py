"""Energy-aware teachers: the share of a teacher's MACs its rate-coded student spends per step
(models/activation_cost.py), checked by hand, and ``--act-penalty`` on digits."""
import json

import pytest
import torch
from torch import nn

from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.metrics.synops import conv_macs
from spiketandem.models import build_model
from spiketandem.models.activation_cost import ActivationCost
from spiketandem.models.quantized import QCFS
from spiketandem.rules import configure
from spiketandem.config import make_config


def test_the_cost_of_a_small_net_by_hand():
    torch.manual_seed(0)
    conv1 = nn.Conv2d(1, 2, 3, padding=1)                # 4x4 -> 2x4x4: 32 outputs x 9 inputs each = 288 MACs
    conv2 = nn.Conv2d(2, 4, 3, stride=2, padding=1)      # 2x4x4 -> 4x2x2: 16 outputs x 18 = 288 MACs
    linear = nn.Linear(16, 3)                            # 3 x 16 = 48 MACs
    model = nn.Sequential(conv1, nn.Hardtanh(0, 2), conv2, nn.Hardtanh(0, 2), nn.Flatten(), linear)
    x = torch.randn(5, 1, 4, 4)
    with ActivationCost(model, clip=2.0) as cost:
        model(x)
    a1 = conv1(x).clamp(0, 2)
    a2 = conv2(a1).clamp(0, 2)
    # the image into conv1 is not counted; each later layer: MACs x mean(input / clip), over all MACs
    expected = (288 * (a1 / 2).mean() + 48 * (a2 / 2).mean()) / (288 + 288 + 48)
    torch.testing.assert_close(cost.value, expected)
    # hooks are gone after the context: nothing is recorded any more
    assert not any(m._forward_hooks for m in model.modules())


def test_a_quantized_teacher_is_measured_against_each_layer_s_learned_clip():
    """A QCFS layer's student fires at h / s (threshold s): the cost divides by each layer's own clip,
    and its gradient widens the clips (a wider s lets fewer inputs reach a level) instead of narrowing them."""
    torch.manual_seed(0)
    conv1, conv2, linear = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Linear(16, 3)
    q1, q2 = QCFS(levels=4, clip=0.5), QCFS(levels=4, clip=1.5)
    model = nn.Sequential(conv1, q1, conv2, q2, nn.Flatten(), linear)
    x = torch.randn(5, 1, 4, 4)
    with ActivationCost(model, clip=2.0) as cost:  # 2.0 is the initial clip; the layers' own are 0.5 and 1.5
        model(x)
    with torch.no_grad():
        h1 = 0.5 * torch.floor((conv1(x) / 0.5).clamp(0, 1) * 4 + 0.5) / 4
        h2 = 1.5 * torch.floor((conv2(h1) / 1.5).clamp(0, 1) * 4 + 0.5) / 4
    expected = (288 * (h1 / 0.5).mean() + 48 * (h2 / 1.5).mean()) / (288 + 288 + 48)
    torch.testing.assert_close(cost.value.detach(), expected)
    cost.value.backward()
    assert q1.clip.grad < 0 and q2.clip.grad < 0


def test_resnet_layers_are_measured_against_the_activation_that_produced_their_input():
    """ResNet-20 reuses one activation per block and runs its shortcut convolution before the block's first
    activation: every convolution's input is still the output of the last activation run before it."""
    torch.manual_seed(0)
    model = build_model("resnet20", width=0.5, act_clip=2.0, act_levels=4).eval()
    quantizers = [m for m in model.modules() if isinstance(m, QCFS)]
    for i, q in enumerate(quantizers):
        q.clip.data.fill_(0.5 + 0.1 * i)  # a distinct clip per activation module
    produced, consumed = {}, []  # id of each activation output -> its clip; (MACs, input) of each weight layer
    hooks = [q.register_forward_hook(lambda m, i, o: produced.__setitem__(id(o), m.clip.item())) for q in quantizers]
    hooks += [m.register_forward_hook(lambda m, i, o: consumed.append((conv_macs(i[0], m.weight, o), i[0])))
              for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad(), ActivationCost(model, clip=2.0) as cost:
        model(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    spent = 0.0
    for macs, inputs in consumed[1:-1]:  # every convolution after the image's: its input is an activation output
        spent += macs * float((inputs / produced[id(inputs)]).mean())
    fc_macs, fc_input = consumed[-1]  # after global average pooling of the last block's activation
    spent += fc_macs * float((fc_input / quantizers[-1].clip.item()).mean())
    expected = spent / sum(macs for macs, _ in consumed)
    assert abs(float(cost.value) - expected) < 1e-6 * max(expected, 1.0)


def test_the_cost_carries_the_gradient_of_the_activations():
    conv, linear = nn.Conv2d(1, 2, 3, padding=1), nn.Linear(32, 3)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), linear)
    with ActivationCost(model, clip=1.0) as cost:
        model(torch.randn(4, 1, 4, 4))
    cost.value.backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert linear.weight.grad is None  # the readout's output costs no student operation


def test_a_penalty_needs_a_clipped_activation():
    with pytest.raises(SpiketandemError, match="--act-clip 2"):
        configure(make_config({"rule": "ann", "arch": "digits-cnn", "act_penalty": 0.5}))
    configure(make_config({"rule": "ann", "arch": "vgg11-strided", "act_penalty": 0.5}))  # clipped at 2 by default


def _teacher(tmp_path, penalty):
    out = tmp_path / f"teacher-{penalty}"
    assert main(["teacher", "--arch", "digits-cnn", "--act-clip", "2", "--epochs", "10", "--act-penalty", str(penalty),
                 "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["act_cost"] == rows[-1]["act_cost"]  # the last epoch's, recorded with the teacher
    return out, summary, rows[-1]["act_cost"]


def _student(tmp_path, teacher):
    out = tmp_path / f"student-{teacher.name}"
    assert main(["train", "--teacher", str(teacher), "--T", "8", "--eval-T", "8", "--epochs", "1", "--quiet",
                 "--device", "cpu", "--synops-convention", "standard", "--out", str(out)]) == 0
    return json.loads((out / "summary.json").read_text())


def test_a_penalised_teacher_makes_a_student_with_fewer_operations_on_digits(tmp_path):
    """Measured (10 teacher epochs, 1 LTL epoch at T = 8): act_cost 0.18 -> 0.04 at penalty 1, the student's
    standard SynOps ratio about halved, both students within a point of their teachers."""
    plain_dir, plain_teacher, plain_cost = _teacher(tmp_path, 0)
    sparse_dir, sparse_teacher, sparse_cost = _teacher(tmp_path, 1)
    assert sparse_cost < 0.5 * plain_cost
    assert plain_teacher["student_acc"] > 0.95 and sparse_teacher["student_acc"] > 0.95
    plain, sparse = _student(tmp_path, plain_dir), _student(tmp_path, sparse_dir)
    assert sparse["student_acc"] > 0.9 and plain["student_acc"] > 0.9
    assert sparse["synops_ratio"] < 0.7 * plain["synops_ratio"]
