"""Bad input: every invalid value (flags, YAML, the Python API), every damaged or wrong-kind run file and
every unwritable output gives ONE clear line (``spiketandem: error: ...``, exit 2; in the API a
``SpiketandemError``), before any work, and changes nothing in the run folder.

The cases are those of ``benchmarks/fuzz_inputs.py`` (which also writes the before/after table); each
runs in-process in a fresh folder whose bytes are compared before and after.  Read-only and full
folders are simulated by patched writes here (no mount), as an ``OSError(EACCES/ENOSPC)`` from the
write."""
from __future__ import annotations

import errno
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from spiketandem import cli
from spiketandem.config import load_yaml, make_config
from spiketandem.errors import SpiketandemError, describe_os_error
from spiketandem.runs import RunFolder

_spec = importlib.util.spec_from_file_location("fuzz_inputs", Path(__file__).parents[1] / "benchmarks" / "fuzz_inputs.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fuzz_inputs", fuzz)
_spec.loader.exec_module(fuzz)

CASES = fuzz.all_cases()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """One trained digits run (offline LTL with its teacher), a teacher model and a data subset."""
    return fuzz.make_fixtures(tmp_path_factory.mktemp("fuzz"))


def test_the_fuzz_covers_what_the_issue_asks():
    groups = {g: [c for c in CASES if c.group == g] for g in ("values", "files", "outputs")}
    assert len(groups["values"]) >= 100 and len(groups["files"]) >= 30
    assert {c.source for c in groups["values"]} >= {"flag", "yaml", "api", "eval"}
    assert {c.env for c in groups["outputs"]} >= {"readonly", "fulldisk"}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_clear_line_and_nothing_changed(case, fixtures, tmp_path):
    row = fuzz.run_case(case, tmp_path, fixtures, mount=False)
    if row["kind"] == "skipped":
        pytest.skip(row["message"])
    assert row["kind"] == "clear", row
    assert not row["changed"], row


# ---- a full disk in the middle of a write -----------------------------------------------------------

def _torch_full_disk(*args, **kwargs):
    """torch.save on a full disk: the file object's write raises ENOSPC, torch reports a RuntimeError."""
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None


def test_a_full_disk_during_training_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch, "save", _torch_full_disk)
    rc = cli.main(["train", *fuzz.CHEAP_TRAIN, "--out", "run"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("spiketandem: error: cannot write "), err
    assert "checkpoint.pt" in lines[0] and "No space left on device" in lines[0]
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no half-written file is left behind


def test_a_full_disk_while_eval_writes_changes_no_file(fixtures, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    fuzz.shutil.copytree(fixtures["base_run"], run)
    before = fuzz.snapshot(tmp_path)
    real_write = RunFolder.write_json

    def full(self, name, obj):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.file(name)))
    monkeypatch.setattr(RunFolder, "write_json", full)
    rc = cli.main(["eval", str(run), "--eval-T", "2", "--quiet"])
    monkeypatch.setattr(RunFolder, "write_json", real_write)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "No space left on device" in err, err
    assert fuzz.snapshot(tmp_path) == before


def test_describe_os_error_names_the_real_file_not_the_temporary_one():
    e = OSError(errno.EROFS, "Read-only file system", "/runs/x/.summary.json.ab12cd34.tmp")
    assert describe_os_error(e) == ("cannot write /runs/x/summary.json: Read-only file system; choose a folder you "
                                    "can write to")


# ---- valid values stay valid ------------------------------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"leak": 1.0}, {"percentile": 100}, {"epochs": 0, "rule": "convert"}, {"seed": 0}, {"seed": 2 ** 32 - 1},
    {"weight_decay": 0.0}, {"milestones": []}, {"eval_T": 4}, {"eval_T": (2, 4)}, {"n_train": 1},
    {"lr": 1}, {"act_clip": None}, {"surrogate_param": None}, {"name": "group/run-1"}, {"out": Path("x")},
])
def test_boundary_values_are_accepted(fields):
    make_config(fields)


def test_numbers_are_normalised_to_plain_python_types():
    np = pytest.importorskip("numpy")
    cfg = make_config({"T": np.int64(4), "lr": np.float32(0.5), "eval_T": (np.int64(2), 4), "width": 1})
    assert type(cfg.T) is int and type(cfg.lr) is float and cfg.eval_T == [2, 4] and type(cfg.width) is float
    assert isinstance(cfg.eval_T, list)


def test_yaml_reads_1e_minus_3_as_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nweight_decay: 5.0e-4\nT: 8\nname: 1e3x\n")
    fields = load_yaml(path)
    assert fields["lr"] == pytest.approx(1e-3) and fields["weight_decay"] == pytest.approx(5e-4)
    assert fields["T"] == 8 and fields["name"] == "1e3x"


def test_an_empty_yaml_file_is_an_empty_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing yet\n")
    assert load_yaml(path) == {}


def test_api_errors_are_spiketandem_errors_before_any_file(fixtures, tmp_path):
    from spiketandem import api
    with pytest.raises(SpiketandemError, match=r"'lr'.*got nan"):
        api.train("ltl-offline", fixtures["data"], teacher=fixtures["teacher_model"], T=2, epochs=1,
                  lr=float("nan"), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_read_functions_name_the_file_and_the_line(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2,\n')
    with pytest.raises(SpiketandemError, match=r"metrics.jsonl is damaged at line 2"):
        run.read_metrics()
    (tmp_path / "summary.json").write_text(json.dumps([1]))
    with pytest.raises(SpiketandemError, match=r"summary.json is damaged: it holds a JSON list"):
        run.read_json("summary.json")
    (tmp_path / "config.yaml").write_text("")
    with pytest.raises(SpiketandemError, match=r"config.yaml is empty"):
        run.read_config()


def test_a_teacher_of_another_dataset_names_its_dataset(tmp_path):
    """`spiketandem teacher --teacher FILE` (or train) without --dataset means digits: the error says which
    dataset the teacher was trained on and the flag to pass."""
    from spiketandem.config import make_config
    from spiketandem.models import build_model
    from spiketandem.teachers import load_teacher, save_teacher
    from spiketandem.rules.base import DataInfo
    cfg = make_config({"dataset": "cifar10", "arch": "digits-mlp", "width": 0.25})
    save_teacher(build_model("digits-mlp", 10, 3, 32, 0.25), cfg, DataInfo(10, 3, 32), 0.5, tmp_path / "teacher.pt")
    with pytest.raises(SpiketandemError, match="cifar10: pass --dataset cifar10"):
        load_teacher(tmp_path / "teacher.pt", DataInfo(10, 1, 8))


def test_widths_that_build_no_network_and_teachers_of_no_epochs_are_refused(tmp_path, capsys):
    """A width below 1/64 leaves VGG's narrowest layer no channel (it was clamped silently); a teacher of
    0 epochs trains nothing. Each is one line naming the allowed values, before any work."""
    from spiketandem.cli import main
    for command in ("train", "teacher"):
        assert main([command, "--width", "1e-9", "--out", str(tmp_path / command)]) == 2
        assert "'width' must be a number in [0.015625, 16]" in capsys.readouterr().err
    assert main(["teacher", "--epochs", "0", "--out", str(tmp_path / "t0")]) == 2
    assert "--epochs 0 trains no teacher" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("rule", ["ltl-offline", "ltl-online", "convert", "qcfs", "ptl", "qat", "convert-stbp"])
def test_every_rule_that_needs_a_teacher_says_so_in_one_line_at_every_door(rule):
    """Built without its teacher, through the Python API or directly: one refusal naming both fixes."""
    from spiketandem import api
    from spiketandem.rules import get_rule
    from spiketandem.rules.base import DataInfo
    assert get_rule(rule).needs_teacher
    with pytest.raises(SpiketandemError, match=rf"^rule {rule} .*pass --teacher .*teacher=<your trained nn.Module>"):
        api.train(rule, torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), num_classes=10)
    cfg = make_config({"rule": rule, "neuron": "if", "epochs": 0 if rule == "convert" else 1, "arch": "digits-cnn"})
    with pytest.raises(SpiketandemError, match=rf"^rule {rule} .*pass --teacher .*teacher=<your trained nn.Module>"):
        get_rule(rule)(cfg, DataInfo(10, 1, 8), None, None)
