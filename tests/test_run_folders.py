"""A run owns its folder and records what ran: no run writes into another run's or a user's folder,
a lock keeps a second process out, metrics never hold an epoch twice, config.yaml holds the resolved
values and their provenance, a resume must agree with its run, and divergence stops a run cleanly."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.ownership import LOCK, claim
from spiketandem.rules.ann import ANNRule
from spiketandem.train import diverged, fit

FAST = ["--dataset", "digits", "--arch", "digits-mlp", "--T", "2", "--eval-T", "2", "--epochs", "1",
        "--n-train", "200", "--n-test", "100", "--quiet", "--device", "cpu"]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tmp_path, digits_teacher):
    run = tmp_path / "run"
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(run)]) == 0
    return run


def test_default_run_names_are_unique_per_run(tmp_path, monkeypatch, digits_teacher, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--json"]) == 0
    folders = [json.loads(line)["run_dir"] for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert folders == ["runs/digits-digits-cnn-ltl-offline", "runs/digits-digits-cnn-ltl-offline-2"]
    for folder in folders:
        rows = (tmp_path / folder / "metrics.jsonl").read_text().splitlines()
        assert len(rows) == 1


def test_a_second_run_into_a_run_folder_is_refused_and_changes_nothing(finished, digits_teacher, capsys):
    before = snapshot(finished)
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--T", "4",
                 "--out", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "holds a run already" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(finished) == before


def test_overwrite_removes_only_the_runs_files_and_starts_again(finished, digits_teacher):
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--T", "4",
                 "--out", str(finished), "--overwrite"]) == 0
    rows = [json.loads(line) for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert yaml.safe_load((finished / "config.yaml").read_text())["T"] == 4


def test_user_files_are_never_mixed_with_a_run(tmp_path, digits_teacher, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    for extra in ([], ["--overwrite"]):
        assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(mine),
                     *extra]) == 2
        assert "notes.txt" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--out", str(file_out)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_the_teacher_run_folder_is_not_a_student_folder(tmp_path, digits_teacher, capsys):
    teacher_run = os.path.dirname(digits_teacher)
    before = snapshot(__import__("pathlib").Path(teacher_run))
    assert main(["train", "--teacher", teacher_run, *FAST[2:], "--arch", "digits-cnn", "--out", teacher_run]) == 2
    assert "holds a run already" in capsys.readouterr().err
    assert snapshot(__import__("pathlib").Path(teacher_run)) == before


def test_a_second_process_is_locked_out_and_a_stale_lock_is_replaced(tmp_path):
    folder = tmp_path / "run"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        folder.mkdir()
        (folder / LOCK).write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename}))
        with pytest.raises(SpiketandemError, match=f"in use by process {sleeper.pid}"):
            with claim(folder, "overwrite"):
                pass
    finally:
        sleeper.kill()
        sleeper.wait()
    with claim(folder, "overwrite"):  # its process is gone: the lock is stale
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK).exists()


def test_a_run_killed_before_its_first_checkpoint_resumes_without_duplicate_epochs(finished, digits_teacher):
    (finished / "checkpoint.pt").unlink()  # as if killed after writing a metrics row but before the checkpoint
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(finished),
                 "--resume"]) == 0
    rows = [json.loads(line) for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]


def test_config_records_the_resolved_values_that_ran_and_their_provenance(finished):
    cfg = yaml.safe_load((finished / "config.yaml").read_text())
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"]) == ("adam", 1e-3, 0.0)  # ltl-offline's defaults
    assert cfg["arch"] == "digits-cnn" and cfg["width"] == 1.0
    prov = cfg["provenance"]
    assert prov["torch"] == torch.__version__ and prov["seed"] == 0 and prov["device"] == "cpu"
    assert prov["spiketandem"] and prov["started"] and isinstance(prov["command"], list)
    assert "git_commit" in prov


def test_arch_is_that_of_the_given_teacher(tmp_path, digits_teacher, capsys):
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "resnet20", "--out", str(tmp_path / "r")]) == 2
    assert "contradicts the teacher" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_settings_that_contradict_the_run(finished, digits_teacher, capsys):
    before = snapshot(finished)
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(finished),
                 "--resume", "--T", "4", "--lr", "0.5", "--epochs", "3", "--tet-lambda", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--tet-lambda" in err  # an option of another rule is refused first
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(finished),
                 "--resume", "--T", "4", "--lr", "0.5", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert "--T 4 (the run has 2)" in err and "--lr 0.5" in err and "epochs" not in err.split(".")[0]
    assert snapshot(finished) == before


def test_the_default_teacher_uses_the_teacher_recipe_not_the_students_settings(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *FAST, "--teacher-epochs", "1", "--lr", "0.123", "--optimizer", "adamw",
                 "--weight-decay", "0.01", "--out", str(run)]) == 0
    teacher = yaml.safe_load((run / "teacher" / "config.yaml").read_text())
    assert (teacher["optimizer"], teacher["lr"], teacher["weight_decay"]) == (
        ANNRule.default_optimizer, ANNRule.default_lr, ANNRule.default_weight_decay)
    student = yaml.safe_load((run / "config.yaml").read_text())
    assert (student["optimizer"], student["lr"], student["weight_decay"]) == ("adamw", 0.123, 0.01)


class _Diverging(ANNRule):
    """The ANN rule, whose weights become infinite during its second epoch."""

    def train_step(self, x, y, optimizer, epoch):
        logs = super().train_step(x, y, optimizer, epoch)
        if epoch == 1:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("inf"))
        return logs


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    from spiketandem.workflow import prepare
    from spiketandem.runs import RunFolder
    cfg = make_config({"dataset": "digits", "arch": "digits-mlp", "rule": "ann", "epochs": 3, "n_train": 200,
                       "n_test": 100, "progress": False, "device": "cpu"})
    cfg, data, info, device = prepare(cfg)
    rule = _Diverging(cfg, info)
    run = RunFolder(tmp_path / "run")
    with pytest.raises(SpiketandemError, match="diverged in epoch 2: .*lower --lr.*epoch 1 is kept"):
        fit(rule, cfg, data, device, run, log=lambda *a, **k: None)
    assert torch.load(run.file("checkpoint.pt"), weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in run.read_metrics()] == [1]


def test_collapse_to_chance_counts_as_divergence():
    rule = ANNRule(make_config({"arch": "digits-mlp", "rule": "ann"}), __import__("spiketandem.rules.base",
                   fromlist=["DataInfo"]).DataInfo(10, 1, 8))
    good = {"train_acc": 0.9, "train_loss": 0.3}
    assert diverged(rule, [good], {"train_acc": 0.5, "train_loss": 1.0}) is None
    assert "fell to chance" in diverged(rule, [good], {"train_acc": 0.1, "train_loss": 2e9})
    assert diverged(rule, [], {"train_acc": 0.1, "train_loss": 2e9}) is None  # never above chance: not a collapse
    with torch.no_grad():
        rule.model.net[1].bias[0] = float("nan")
    assert diverged(rule, [good], good) == "model.net.1.bias is no longer finite"


def test_a_teacher_with_non_finite_values_is_refused(tmp_path, digits_teacher, capsys):
    obj = torch.load(digits_teacher, weights_only=True)
    key = next(k for k in obj["state_dict"] if k.endswith("running_var"))
    obj["state_dict"][key] = torch.full_like(obj["state_dict"][key], float("inf"))
    bad = tmp_path / "teacher.pt"
    torch.save(obj, bad)
    assert main(["train", "--teacher", str(bad), *FAST[2:], "--out", str(tmp_path / "r")]) == 2
    assert "non-finite" in capsys.readouterr().err


def test_a_longer_resume_follows_the_longer_runs_schedule(finished, digits_teacher):
    """--epochs 3 on a finished 1-epoch run: epochs 2 and 3 run at the learning rates of a 3-epoch cosine
    schedule (lr0 (1 + cos(pi e / 3)) / 2), not the old schedule's 0 and beyond."""
    import math
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(finished),
                 "--resume", "--epochs", "3"]) == 0
    rows = [json.loads(line) for line in (finished / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    lr0 = rows[0]["lr"]
    for e in (1, 2):
        assert rows[e]["lr"] == pytest.approx(lr0 * (1 + math.cos(math.pi * e / 3)) / 2)
    assert yaml.safe_load((finished / "config.yaml").read_text())["epochs"] == 3
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(finished),
                 "--resume", "--epochs", "2"]) == 2  # fewer than it has trained


def test_overwrite_also_removes_what_commands_wrote_next_to_the_run(finished, digits_teacher):
    (finished / "noise-mismatch.json").write_text("{}")  # `spiketandem noise RUN` writes here by default
    assert main(["train", "--teacher", digits_teacher, *FAST[2:], "--arch", "digits-cnn", "--out", str(finished),
                 "--overwrite"]) == 0
    assert not (finished / "noise-mismatch.json").exists()
