"""The command line end to end on digits: run-folder contract, eval, resume, clear errors."""
import json
import subprocess
import sys

import pytest

from spiketandem.cli import main

CONTRACT_KEYS = {"rule", "dataset", "arch", "neuron", "T", "epochs", "teacher_acc", "student_acc", "acc_by_T",
                 "synops_ratio", "train_seconds", "peak_memory_bytes", "device"}


def _command_paths(parser, prefix=()):
    """Every (sub)command path of the real parser, e.g. ("bench", "neuron")."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _command_paths(sub, prefix + (name,))


def test_the_help_test_covers_every_subcommand():
    from spiketandem.cli import build_parser
    paths = list(_command_paths(build_parser()))
    top = {p[0] for p in paths}
    assert {"demo", "teacher", "train", "eval", "bench", "report", "reproduce", "compare", "export", "noise"} <= top
    assert len(paths) >= 14


@pytest.mark.parametrize("path", [" ".join(p) for p in _command_paths(__import__("spiketandem.cli").cli.build_parser())])
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(path.split() + ["--help"])
    assert stop.value.code == 0
    assert f"usage: spiketandem {path}" in " ".join(capsys.readouterr().out.split())


def test_the_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "spiketandem", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: spiketandem train" in out.stdout


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


def test_a_killed_run_resumes_bit_identically(tmp_path, digits_teacher):
    """kill -9 a real training process after its first checkpoint, `--resume`: the same weights, bit for bit,
    as the run that was never interrupted, and every epoch once in metrics.jsonl."""
    import os
    import signal
    import time

    import torch
    args = ["train", "--teacher", digits_teacher, "--arch", "digits-cnn", "--T", "4", "--eval-T", "4",
            "--epochs", "3", "--n-train", "600", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([sys.executable, "-m", "spiketandem", *args, "--out", str(whole)], check=True, env=env,
                   capture_output=True)
    process = subprocess.Popen([sys.executable, "-m", "spiketandem", *args, "--out", str(cut)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = cut / "checkpoint.pt"
    while process.poll() is None and not checkpoint.is_file():  # the first epoch's checkpoint
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.is_file(), "the run ended before its first checkpoint"
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert done < 3, "the run finished before it was killed; nothing was tested"
    subprocess.run([sys.executable, "-m", "spiketandem", *args, "--out", str(cut), "--resume"], check=True, env=env,
                   capture_output=True)
    a = torch.load(whole / "student.pt", weights_only=True)["state"]["model"]
    b = torch.load(cut / "student.pt", weights_only=True)["state"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


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
