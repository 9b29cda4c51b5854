"""A teacher trained outside spiketandem enters the CLI: a zoo architecture's plain state_dict with --arch, a
user's own module with --teacher-class MODULE:NAME; the student's run reloads (``eval``, ``load_student``) and
agrees with the training loop's number; every bad spec is one line before any work.  A rule that trains from
scratch takes its architecture from a teacher run folder."""
import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import spiketandem
from spiketandem import api
from spiketandem.cli import main
from spiketandem.data import load_dataset
from spiketandem.teachers import load_teacher

RUN = ["--dataset", "digits", "--T", "4", "--eval-T", "4", "--epochs", "1", "--device", "cpu", "--quiet"]
MODULE = "own_teacher_nets"  # imported from the test's folder, by this name only
NETS = '''
import torch
from torch import nn
import torch.nn.functional as F


class SmallNet(nn.Module):
    """A digits CNN of the user's own: a functional ReLU, average pooling, a linear readout."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.avg_pool2d(F.relu(self.conv(x)), 2), 1))


class NeedsWidth(nn.Module):
    def __init__(self, width):
        super().__init__()


def five_classes():
    return SmallNet(classes=5)


def not_a_module():
    return 3
'''


def _run(args, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    return code, capsys.readouterr().err.strip()


def _summary(run) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture
def own_module(tmp_path, monkeypatch):
    """The user's folder: their module file and its trained weights (a few steps of SGD on digits)."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(NETS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    sys.path.insert(0, str(tmp_path))
    try:
        nets = importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(tmp_path))
    torch.manual_seed(0)
    model = nets.SmallNet()
    data = load_dataset("digits")
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    x = (data.train_x.float() / 255 - mean) / std
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), data.train_y).backward()
        opt.step()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    yield nets
    sys.modules.pop(MODULE, None)


def test_a_zoo_state_dict_with_arch_trains_reloads_and_evaluates_the_same(tmp_path, digits_teacher, capsys):
    teacher, record = load_teacher(digits_teacher)
    torch.save(teacher.state_dict(), tmp_path / "mine.pt")
    run = tmp_path / "run"
    code, err = _run(["train", *RUN, "--teacher", str(tmp_path / "mine.pt"), "--arch", "digits-cnn",
                      "--out", str(run)], capsys)
    assert code == 0, err
    trained = _summary(run)
    assert trained["arch"] == "digits-cnn"
    assert trained["teacher_acc"] == pytest.approx(record["accuracy"])  # the teacher evaluated as a run's is
    assert load_teacher(run)[1]["arch"] == "digits-cnn"  # the run's teacher.pt is a record every command takes
    code, err = _run(["eval", str(run), "--eval-T", "4", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err
    assert _summary(run)["student_acc"] == trained["student_acc"]
    student = spiketandem.load_student(run)
    assert api.accuracy(student, load_dataset("digits"), T=4) == trained["student_acc"]


def test_a_zoo_state_dict_that_does_not_fit_its_arch_is_one_line_naming_the_fix(tmp_path, digits_teacher, capsys):
    torch.save(load_teacher(digits_teacher)[0].state_dict(), tmp_path / "mine.pt")
    code, err = _run(["train", *RUN, "--teacher", str(tmp_path / "mine.pt"), "--arch", "digits-cnn", "--width", "0.5",
                      "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "\n" not in err and "do not fit" in err and "--width" in err, err
    assert not (tmp_path / "run").exists()


def test_a_users_module_trains_and_reloads_with_its_class(own_module, tmp_path, capsys):
    run = tmp_path / "run"
    code, err = _run(["train", *RUN, "--teacher", "weights.pt", "--teacher-class", f"{MODULE}:SmallNet",
                      "--out", str(run)], capsys)
    assert code == 0, err
    trained = _summary(run)
    assert trained["teacher_acc"] > 0.5
    # the class is imported only where the caller names it: eval and export refuse in one line, naming it
    for command in (["eval", str(run), "--device", "cpu", "--quiet"], ["export", str(run), str(tmp_path / "s.nir")]):
        code, err = _run(command, capsys)
        assert code == 2 and "\n" not in err and "--teacher-class" in err and "SmallNet()" in err, err
    with pytest.raises(spiketandem.SpiketandemError, match="SmallNet"):
        spiketandem.load_student(run)
    student = spiketandem.load_student(run, teacher=own_module.SmallNet())
    assert api.accuracy(student, load_dataset("digits"), T=4) == trained["student_acc"]
    # the run folder is a teacher again, with its class named
    code, err = _run(["train", *RUN, "--teacher", str(run), "--out", str(tmp_path / "again")], capsys)
    assert code == 2 and f"--teacher-class {MODULE}:SmallNet" in err, err
    code, err = _run(["train", *RUN, "--teacher", str(run), "--teacher-class", f"{MODULE}:SmallNet",
                      "--out", str(tmp_path / "again")], capsys)
    assert code == 0, err


@pytest.mark.parametrize("args,words", [
    (["--teacher-class", MODULE], ["is not MODULE:NAME"]),
    (["--teacher-class", "no_such_module_here:Net"], ["no module 'no_such_module_here'", "current folder"]),
    (["--teacher-class", f"{MODULE}:Missing"], ["has no 'Missing'", "SmallNet"]),
    (["--teacher-class", f"{MODULE}:not_a_module"], ["not a torch.nn.Module"]),
    (["--teacher-class", f"{MODULE}:NeedsWidth"], ["no arguments", "def make_teacher"]),
    (["--teacher-class", f"{MODULE}:five_classes"], ["do not fit"]),
    (["--teacher-class", f"{MODULE}:SmallNet", "--arch", "digits-cnn"], ["drop --arch"]),
    (["--arch", "digits-cnn"], ["do not fit", "--arch"]),
    ([], ["plain weights", "--arch NAME", "--teacher-class"]),
    (["--teacher-class", f"{MODULE}:SmallNet", "--rule", "tandem"], ["drop --teacher-class"]),
], ids=["no-colon", "no-module", "no-attribute", "not-a-module", "needs-arguments", "weights-misfit",
        "arch-and-class", "zoo-misfit", "no-network", "rule-without-teacher"])
def test_a_bad_own_teacher_is_one_line_before_any_work(own_module, tmp_path, capsys, args, words):
    code, err = _run(["train", *RUN, "--teacher", "weights.pt", *args, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "\n" not in err and err.startswith("spiketandem: error:"), err
    assert all(w in err for w in words), err
    assert not (tmp_path / "run").exists()


def test_a_module_whose_output_does_not_fit_the_data_is_one_line(own_module, tmp_path, capsys):
    torch.save(own_module.five_classes().state_dict(), "five.pt")
    code, err = _run(["train", *RUN, "--teacher", "five.pt", "--teacher-class", f"{MODULE}:five_classes",
                      "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "\n" not in err and "[2, 5]" in err and "10 classes" in err, err
    assert not (tmp_path / "run").exists()


def test_a_pickled_module_is_refused_without_running_it(own_module, tmp_path, capsys):
    torch.save(own_module.SmallNet(), "whole.pt")
    code, err = _run(["train", *RUN, "--teacher", "whole.pt", "--teacher-class", f"{MODULE}:SmallNet",
                      "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "would run code" in err and "state_dict()" in err, err


def test_a_class_without_weights_names_the_missing_file(own_module, tmp_path, capsys):
    code, err = _run(["train", *RUN, "--teacher-class", f"{MODULE}:SmallNet", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "needs its weights" in err and "--teacher" in err, err


@pytest.mark.parametrize("rule", ["tandem", "shortcut"])
def test_a_rule_from_scratch_takes_the_teacher_runs_architecture(tmp_path, digits_teacher, capsys, rule):
    run = tmp_path / "run"
    code, err = _run(["train", *RUN, "--rule", rule, "--teacher", str(Path(digits_teacher).parent),
                      "--out", str(run)], capsys)
    assert code == 0, err
    assert _summary(run)["arch"] == "digits-cnn"
    code, err = _run(["eval", str(run), "--eval-T", "4", "--device", "cpu", "--quiet"], capsys)
    assert code == 0, err


def test_compare_takes_a_zoo_state_dict_and_records_its_accuracy(tmp_path, digits_teacher, capsys):
    """`compare --teacher STATE_DICT --arch NAME`: the plain weights become the comparison's teacher record (its test
    accuracy measured, as `train` measures it), and every rule learns from it."""
    teacher, record = load_teacher(digits_teacher)
    torch.save(teacher.state_dict(), tmp_path / "mine.pt")
    out = tmp_path / "cmp"
    code, err = _run(["compare", *RUN, "--arch", "digits-cnn", "--teacher", str(tmp_path / "mine.pt"),
                      "--rules", "ltl-offline", "--sweep", "none", "--out", str(out)], capsys)
    assert code == 0, err
    assert load_teacher(out / "teacher")[1]["accuracy"] == pytest.approx(record["accuracy"])
    runs = [p for p in out.iterdir() if (p / "summary.json").is_file()]
    assert runs and all(_summary(p)["teacher_acc"] == pytest.approx(record["accuracy"]) for p in runs)
