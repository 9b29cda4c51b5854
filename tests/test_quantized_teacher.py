"""QCFS-quantized teachers (``--act-levels L``): the zoo builds them, the student matches them at T = L,
LTL targets them as whole spike counts, and `spiketandem teacher --teacher FP --act-levels L` makes one."""
import json
import math

import pytest
import torch
from torch import nn

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.models import QCFS, build_model
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.rules import LTLOffline, configure
from spiketandem.rules.base import DataInfo
from spiketandem.rules.hybrid import membrane_start
from spiketandem.student import TeacherTaps, build_student


def hand_qcfs(z: torch.Tensor, s: float, L: int, phi: float = 0.5) -> torch.Tensor:
    """h(z) = s * clamp(floor(z L / s + phi) / L, 0, 1), written out (Bu et al. 2022, Eq. of QCFS)."""
    return s * torch.clamp(torch.floor(z * L / s + phi) / L, 0, 1)


def test_build_model_quantizes_every_activation_of_module_and_functional_relus():
    for arch, n in [("vgg11", 8 + 2), ("digits-cnn", 3)]:
        size, channels = (32, 3) if arch == "vgg11" else (8, 1)
        model = build_model(arch, 10, channels, size, 0.25, act_clip=2.0, act_levels=4)
        quantized = [m for m in model.modules() if isinstance(m, QCFS)]
        assert len(quantized) == n and all(m.levels == 4 and float(m.clip.detach()) == 2.0 for m in quantized)
        assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    # --act-clip on digits-cnn (functional ReLUs) now binds: activations above 1 are cut
    clipped = build_model("digits-cnn", 10, 1, 8, act_clip=1.0).eval()
    _, acts = TeacherTaps(clipped, torch.randn(4, 1, 8, 8))(torch.randn(64, 1, 8, 8) * 5)
    assert max(float(a.detach().max()) for a in acts.values()) <= 1.0
    with pytest.raises(SpiketandemError, match="--act-clip"):
        build_model("vgg11", act_levels=4)
    with pytest.raises(SpiketandemError, match="positive integer"):
        build_model("vgg11", act_clip=2.0, act_levels=0)


def test_an_if_layer_at_T_equal_L_emits_exactly_the_qcfs_levels():
    """Constant current z, threshold = amplitude = s, U[0] = s/2: the spike count over L steps is
    clamp(floor(z L / s + 1/2), 0, L), so rate * s = h(z) of the teacher (the docstring's claim)."""
    torch.manual_seed(0)
    s, L = 1.5, 4
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 64), QCFS(L, s), nn.Linear(64, 3)).eval()
    x = torch.randn(128, 1, 2, 2)
    student = build_student(teacher, NeuronConfig(kind="if"), x[:1])
    layer = student.layers[0]
    assert (layer.ceiling, layer.levels, layer.shift) == (s, L, 0.5)
    assert float(student.neurons[layer.name].threshold) == s  # the clip, not a percentile
    ctx = RunContext(T=L, batch=len(x), records={}, record_names={layer.name}, state_in=membrane_start(student, 0.5))
    student.run(x, ctx)
    rate = ctx.records[layer.name].sum(0) / L
    z = teacher[1](teacher[0](x))
    torch.testing.assert_close(rate * s, hand_qcfs(z, s, L))
    assert 0 < float((rate > 0).float().mean()) < 1  # the check covers firing and silent neurons


def test_ltl_targets_of_a_quantized_layer_are_its_levels_whatever_the_ynorm_mode():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(4, 16), QCFS(4, 0.8), nn.Linear(16, 3))
    images = torch.randn(64, 1, 2, 2)
    for mode in ("batch", "running", "fixed"):
        rule = LTLOffline(configure(make_config({"T": 4, "options": {"ynorm": mode}})), DataInfo(3, 1, 2), teacher,
                          images)
        rule.setup(images, "cpu")
        _, acts = rule.taps(images)
        (name, activation), = acts.items()
        target = rule.target(name, activation, T=4)
        torch.testing.assert_close(target, hand_qcfs(teacher[1](teacher[0](images)), 0.8, 4) / 0.8)
        assert set(torch.unique(target * 4).tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_the_teacher_command_quantizes_a_trained_teacher_and_ltl_trains_against_it(tmp_path, digits_teacher, capsys):
    quantized = tmp_path / "q2"
    assert main(["teacher", "--dataset", "digits", "--teacher", digits_teacher, "--act-clip", "2", "--act-levels", "2",
                 "--epochs", "3", "--lr", "0.01", "--quiet", "--device", "cpu", "--out", str(quantized)]) == 0
    saved = torch.load(quantized / "teacher.pt", weights_only=True)
    assert saved["act_levels"] == 2 and saved["accuracy"] > 0.9
    clips = [v for k, v in saved["state_dict"].items() if k.endswith(".clip")]
    assert len(clips) == 3 and all(0 < float(c) < 2.5 and math.isfinite(float(c)) for c in clips)
    out = tmp_path / "ltl"
    assert main(["train", "--teacher", str(quantized), "--T", "2", "--eval-T", "2", "--epochs", "2", "--recipe",
                 "low-latency", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["student_acc"] > 0.9
    capsys.readouterr()
    assert main(["train", "--teacher", str(quantized), "--act-levels", "4", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "--act-levels 4" in err and "act_levels=2" in err and "Traceback" not in err
    assert not (tmp_path / "bad" / "summary.json").exists()
