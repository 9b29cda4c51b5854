"""The teacher check before any training (``check_teacher``, `spiketandem check-teacher`): every operation the builder
refuses at once, each with its own fix; what NIR export refuses; short-window advice; functional and module forms
alike; and the check and the builder agree."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import REFUSED, TeacherRefused, build_student
from spiketandem.teacher_check import NIR, SHORT, check_teacher

X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


class Everything(nn.Module):
    """GELU, a depthwise convolution, max pooling and x.mean: two refusals of the builder, two of NIR export."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.GELU()
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.depthwise(self.act(self.conv(x)))))
        return self.fc(x.mean((2, 3)))


def test_every_problem_is_listed_at_once_each_with_its_own_fix():
    check = check_teacher(Everything(), X)
    found = {(f.kind, f.op, f.where): f for f in check.findings}
    assert sorted(found) == sorted([(REFUSED, "GELU", "module 'act'"), (REFUSED, "Tensor.mean", "node 'mean'"),
                                    (NIR, "Conv2d", "module 'depthwise'"), (NIR, "MaxPool2d", "module 'pool'")])
    fixes = {op: f.fix for (_, op, _), f in found.items()}
    assert "nn.ReLU()" in fixes["GELU"] and "F.adaptive_avg_pool2d(x, 1).flatten(1)" in fixes["Tensor.mean"]
    assert "groups=1" in fixes["Conv2d"] and "average pooling" in fixes["MaxPool2d"]
    assert "depthwise" in found[(NIR, "Conv2d", "module 'depthwise'")].problem
    assert len(set(fixes.values())) == 4  # each its own fix
    assert not check.ok
    lines = check.render().splitlines()
    assert len(lines) == 6 and all(f.line() in check.render() for f in check.findings)  # 2 headings + 4 findings


def test_the_builder_refuses_with_the_same_complete_list():
    with pytest.raises(TeacherRefused) as refused:
        build_student(Everything(), NeuronConfig(), X)
    check = check_teacher(Everything(), X)
    assert refused.value.findings == check.of_kind(REFUSED)
    message = str(refused.value)
    assert message.splitlines()[0].endswith("(2 problems, each with its fix):")
    assert [line.strip() for line in message.splitlines()[1:]] == [f.line() for f in check.of_kind(REFUSED)]
    assert message in check.render()


# ---- functional and module forms alike ----------------------------------------------------------------------

class Slot(nn.Module):
    """conv -> ReLU -> ``op`` -> ... -> linear, with ``op`` (a module or a function) in one of three places:
    "body" (on the feature map), "flatten" (turning it into a vector), "head" (on the logits)."""

    def __init__(self, op, place: str):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.op = op
        self.place = place
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.conv(x))
        if self.place == "body":
            x = self.pool(self.op(x)).flatten(1)
        else:
            x = self.pool(x)
            x = self.op(x) if self.place == "flatten" else x.flatten(1)
        x = self.fc(x)
        return self.op(x) if self.place == "head" else x


# name: (the forms, where they go, builder accepts, NIR refuses, the ceiling of the layer the form makes: None when
# it makes no neuron layer)
FORMS = {
    "ReLU": ([nn.ReLU(), F.relu, torch.relu, lambda x: x.relu()], "body", True, False, math.inf),
    "ReLU6": ([nn.ReLU6(), F.relu6], "body", True, False, 6.0),
    "clipped ReLU": ([nn.Hardtanh(0, 2), lambda x: F.hardtanh(x, 0, 2), lambda x: F.hardtanh(x, min_val=0.0, max_val=2.0),
                      lambda x: torch.clamp(x, 0, 2), lambda x: x.clamp(min=0, max=2)], "body", True, False, 2.0),
    "Hardtanh(-1, 1)": ([nn.Hardtanh(), F.hardtanh, lambda x: x.clamp(-1, 1)], "body", False, False, None),
    "average pooling": ([nn.AvgPool2d(2), lambda x: F.avg_pool2d(x, 2)], "body", True, False, None),
    "max pooling": ([nn.MaxPool2d(2), lambda x: F.max_pool2d(x, 2)], "body", True, True, None),
    "dropout": ([nn.Dropout(0.5), F.dropout, nn.Dropout2d(0.5), F.dropout2d], "body", True, False, None),
    "GELU": ([nn.GELU(), F.gelu], "body", False, False, None),
    "sigmoid": ([nn.Sigmoid(), torch.sigmoid, F.sigmoid, lambda x: x.sigmoid()], "body", False, False, None),
    "flatten": ([nn.Flatten(), lambda x: torch.flatten(x, 1), lambda x: x.flatten(1),
                 lambda x: x.reshape(x.shape[0], -1)], "flatten", True, False, None),
    "softmax": ([nn.Softmax(1), lambda x: F.softmax(x, 1), lambda x: torch.softmax(x, 1), lambda x: x.softmax(1)],
                "head", False, False, None),
}


def _summary(check):
    """What the check says, without where (the forms sit at different nodes)."""
    return [(f.kind, f.problem, f.fix) for f in check.findings if f.kind != SHORT]


@pytest.mark.parametrize("name", list(FORMS))
def test_functional_and_module_forms_are_treated_alike(name):
    forms, place, accepted, nir_refuses, ceiling = FORMS[name]
    checks = [check_teacher(Slot(op, place), X) for op in forms]
    assert [c.ok for c in checks] == [accepted] * len(forms)
    assert [bool(c.of_kind(NIR)) for c in checks] == [nir_refuses] * len(forms)
    assert all(_summary(c) == _summary(checks[0]) for c in checks)
    for op in forms:
        if not accepted:
            with pytest.raises(SpiketandemError):
                build_student(Slot(op, place), NeuronConfig(), X)
            continue
        student = build_student(Slot(op, place), NeuronConfig(), X)
        expected = [math.inf] if ceiling is None else [math.inf, ceiling]
        assert [layer.ceiling for layer in student.layers] == expected, op


def test_a_clipped_relu_function_keeps_its_clip_as_the_teacher_computes_it():
    teacher = Slot(lambda x: F.hardtanh(x, 0.0, 0.25), "body").eval()
    student = build_student(teacher, NeuronConfig("if"), X)
    with torch.no_grad():
        relu_out = F.relu(teacher.conv(X))
        ann = [layer.ann_activation(relu_out) for layer in student.layers]
    assert float(ann[1].max()) == 0.25 and float(ann[0].max()) > 0.25


# ---- the zoo, short windows -----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, width, shape", [("digits-cnn", 1.0, (1, 8)), ("vgg11", 0.125, (3, 32)),
                                                 ("resnet20", 0.25, (3, 32))])
def test_zoo_teachers_check_ok(arch, width, shape):
    model = build_model(arch, 10, shape[0], shape[1], width)
    example = torch.randn(2, shape[0], shape[1], shape[1])
    check = check_teacher(model, example)
    assert check.ok and not check.of_kind(NIR)
    short = check.of_kind(SHORT)  # an unclipped teacher with membranes from 0, at T = 4
    assert len(short) == 1 and "--act-clip 2" in short[0].problem and "--recipe low-latency" in short[0].problem
    clipped = build_model(arch, 10, shape[0], shape[1], width, act_clip=2.0)
    assert check_teacher(clipped, example, membrane_init=0.5).findings == []
    assert check_teacher(model, example, T=8).findings == []


def test_bad_input_is_one_clear_error_before_any_work():
    with pytest.raises(SpiketandemError, match=r"example input of shape \[2, 1, 8, 8\] does not fit the teacher"):
        check_teacher(Everything(), torch.zeros(2, 1, 8, 8))
    with pytest.raises(SpiketandemError, match="takes the teacher as an nn.Module"):
        check_teacher(lambda x: x, X)
    with pytest.raises(SpiketandemError, match="whole number >= 1; got 0"):
        check_teacher(Everything(), X, T=0)
    with pytest.raises(SpiketandemError, match=r"in \[0, 1\) .*; got -0.5"):
        check_teacher(Everything(), X, membrane_init=-0.5)


# ---- the check and the builder agree --------------------------------------------------------------------------

class NoRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(F.relu(x).flatten(1)) if x.sum() > 0 else self.fc(x.flatten(1))


class BatchRead(nn.Module):
    """A value read from the input's batch size (x.size(0)) meets the time-folded batch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).view(x.size(0), -1))


TEACHERS = {"everything": Everything, "no ReLU": NoRelu, "branching": Branching, "batch read": BatchRead,
            **{f"{name} {i}": (lambda op=op, place=FORMS[name][1]: Slot(op, place))
               for name in FORMS for i, op in enumerate(FORMS[name][0])}}


@pytest.mark.parametrize("name", list(TEACHERS))
def test_the_check_and_the_builder_agree(name):
    check = check_teacher(TEACHERS[name](), X)
    try:
        build_student(TEACHERS[name](), NeuronConfig(), X)
        built = True
    except SpiketandemError as e:
        built = False
        refusal = e
    assert check.ok == built
    if not built:
        refused = check.of_kind(REFUSED)
        assert refused and (refusal.findings == refused if isinstance(refusal, TeacherRefused)
                            else [f.problem for f in refused] == [str(refusal)])


# ---- the command ------------------------------------------------------------------------------------------------

def test_the_command_prints_one_line_and_exits_0_for_a_teacher_it_accepts(capsys):
    assert main(["check-teacher", "--arch", "digits-cnn", "--act-clip", "2", "--membrane-init", "0.5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["digits-cnn on digits: OK: the student builder accepts it, NIR export writes it, and "
                                "nothing is known to cost accuracy at T = 4"]


def test_the_command_gives_short_window_advice_for_an_unclipped_teacher(capsys):
    assert main(["check-teacher", "--dataset", "digits", "--T", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "digits-cnn on digits: OK: the student builder accepts it"
    assert lines[1] == "at short windows (T = 2):" and "--act-clip 2" in lines[2] and len(lines) == 3


USER_MODULE = """
import torch.nn.functional as F
from torch import nn


class GeluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.act = nn.GELU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.act(self.conv(x))))
        return self.fc(x.mean((2, 3)))
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """The current folder holds the user's module check_teacher_nets.py (GELU, x.mean, max pooling) and its weights."""
    (tmp_path / "check_teacher_nets.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import check_teacher_nets
    torch.save(check_teacher_nets.GeluNet().state_dict(), tmp_path / "gelu.pt")
    return tmp_path


def test_the_command_exits_1_with_every_refusal_of_a_users_module(user_module, capsys):
    assert main(["check-teacher", "--teacher-class", "check_teacher_nets:GeluNet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("check_teacher_nets:GeluNet: cannot build a spiking student from this teacher (2 problems, "
                        "each with its fix):")
    assert [line.split(":")[0].strip() for line in lines if line.startswith("  ")] == [
        "GELU at module 'act'", "Tensor.mean at node 'mean'", "MaxPool2d at module 'pool'"]
    assert main(["check-teacher", "--teacher-class", "check_teacher_nets:GeluNet", "--teacher", "gelu.pt",
                 "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and [f["kind"] for f in report["findings"]] == [REFUSED, REFUSED, NIR]


def test_train_refuses_a_users_module_with_the_whole_list_before_any_work(user_module, capsys):
    assert main(["train", "--teacher-class", "check_teacher_nets:GeluNet", "--teacher", "gelu.pt", "--epochs", "1",
                 "--n-train", "64", "--n-test", "32", "--out", "runs/refused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spiketandem: error: cannot build a spiking student from this teacher (2 problems")
    assert "GELU at module 'act'" in err and "Tensor.mean at node 'mean'" in err
    assert not (user_module / "runs" / "refused").exists()


def test_the_command_checks_a_zoo_architectures_state_dict(tmp_path, capsys):
    torch.save(build_model("digits-cnn", 10, 1, 8).state_dict(), tmp_path / "zoo.pt")
    assert main(["check-teacher", "--teacher", str(tmp_path / "zoo.pt"), "--arch", "digits-cnn", "--T", "8"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"teacher {tmp_path / 'zoo.pt'} (digits-cnn): OK: the student builder accepts it, NIR export writes it, and "
        "nothing is known to cost accuracy at T = 8"]


@pytest.mark.parametrize("argv, named", [(["--teacher", "no-such-teacher.pt"], "no-such-teacher.pt"),
                                         (["--T", "0"], "got 0"), (["--membrane-init", "1"], "got 1.0")])
def test_the_command_refuses_bad_input_in_one_line(argv, named, capsys):
    assert main(["check-teacher", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spiketandem: error: ") and named in err
