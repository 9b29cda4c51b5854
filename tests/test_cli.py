"""The command line end to end on digits: run-folder contract, eval, resume, clear errors."""
import json
import subprocess
import sys

import pytest

from spiketandem.cli import main

CONTRACT_KEYS = {"rule", "dataset", "arch", "neuron", "T", "epochs", "teacher_acc", "student_acc", "acc_by_T",
                 "synops_ratio", "train_seconds", "peak_memory_bytes", "device"}


@pytest.mark.parametrize("command", ["demo", "teacher", "train", "eval"])
def test_every_subcommand_has_help(command):
    out = subprocess.run([sys.executable, "-m", "spiketandem", command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: spiketandem" in out.stdout


def test_demo_writes_the_run_folder_contract(tmp_path, capsys):
    run = tmp_path / "demo"
    assert main(["demo", "--out", str(run), "--quiet", "--epochs", "2", "--teacher-epochs", "12", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "student.pt", "teacher.pt", "learning_curve.png",
                 "report/report.md", "report/report.html"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert CONTRACT_KEYS <= set(summary) and printed["student_acc"] == summary["student_acc"]
    assert summary["rule"] == "ltl-offline" and summary["dataset"] == "digits" and summary["T"] == 8
    assert set(summary["acc_by_T"]) == {"2", "4", "8", "16", "32"}
    assert all(0 <= a <= 1 for a in summary["acc_by_T"].values())
    assert summary["teacher_acc"] > 0.9 and summary["student_acc"] > 0.9
    assert 0 < summary["synops_ratio"] < 10
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "train_acc", "test_acc", "lr", "ce", "local"} <= set(rows[0])

    assert main(["eval", str(run), "--eval-T", "4", "8", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert set(evaluated["acc_by_T"]) == {"4", "8"}
    assert evaluated["acc_by_T"]["8"] == pytest.approx(summary["acc_by_T"]["8"])


def test_train_resumes_from_the_last_checkpoint(tmp_path, digits_teacher, capsys):
    run = tmp_path / "run"
    args = ["train", "--teacher", digits_teacher, "--arch", "digits-cnn", "--T", "4", "--eval-T", "4",
            "--out", str(run), "--quiet"]
    assert main(args + ["--epochs", "1"]) == 0
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert main(args + ["--epochs", "3", "--resume"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0] == first
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3


def test_bad_input_gets_one_clear_error(tmp_path, digits_teacher, capsys):
    assert main(["train", "--dataset", "imagenet-9000", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "imagenet-9000" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing-here")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "epochz" in capsys.readouterr().err
    assert main(["train", "--teacher", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "z"), "--quiet"]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_act_clip_that_contradicts_the_given_teacher_is_refused(tmp_path, digits_teacher, capsys):
    assert main(["train", "--teacher", digits_teacher, "--act-clip", "2", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "act_clip=None" in err and "drop --act-clip" in err


def test_corrupt_model_file_is_reported(tmp_path, digits_teacher, capsys):
    run = tmp_path / "run"
    assert main(["train", "--teacher", digits_teacher, "--arch", "digits-cnn", "--T", "2", "--eval-T", "2",
                 "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    (run / "student.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", str(run)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_clipped_teacher_is_trained_saved_and_loaded_with_its_clip(tmp_path, capsys):
    from torch import nn
    from spiketandem.pipeline import load_teacher
    out = tmp_path / "t"
    assert main(["teacher", "--dataset", "digits", "--arch", "digits-mlp", "--epochs", "3", "--act-clip", "1.5",
                 "--out", str(out), "--quiet", "--json"]) == 0
    teacher, saved = load_teacher(out)
    clips = [m for m in teacher.modules() if isinstance(m, nn.Hardtanh)]
    assert saved["act_clip"] == 1.5 and clips and all((m.min_val, m.max_val) == (0.0, 1.5) for m in clips)
    assert not any(isinstance(m, nn.ReLU) for m in teacher.modules())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_acc"] > 0.8
