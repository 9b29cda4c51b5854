"""`spiketandem export`: --retarget zero-reset recovers a subtract-reset student by LTL
and records it in the file, --weight-bits writes k-bit weights, --verify reports per importer; the run
folder is only read; OUT is never overwritten unasked; parsing imports no torch."""
import hashlib
import json
import subprocess
import sys

import nir
import numpy as np
import pytest

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.export import neuron_node_names
from spiketandem.model_file import save_model, zoo_architecture
from spiketandem.models import build_model
from spiketandem.teachers import save_teacher
from spiketandem.rules import get_rule
from spiketandem.rules.base import DataInfo
from spiketandem.runs import RunFolder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A digits run of the default (reset by subtraction) student, untrained beyond its teacher's init."""
    import torch
    torch.manual_seed(0)
    run = RunFolder(tmp_path_factory.mktemp("runs") / "run")
    cfg = make_config({"dataset": "digits", "arch": "digits-mlp", "width": 0.25, "T": 4, "n_train": 300,
                       "n_test": 60, "batch_size": 64, "out": str(run.path), "progress": False})
    assert cfg.reset == "subtract"
    info = DataInfo(10, 1, 8)
    teacher = build_model("digits-mlp", 10, 1, 8, 0.25).eval()
    run.write_config(cfg)
    save_teacher(teacher, cfg, info, 0.0, run.file("teacher.pt"))
    rule = get_rule("ltl-offline")(cfg, info, teacher, torch.randn(64, 1, 8, 8))
    save_model(rule, run.file("student.pt"), zoo_architecture(cfg))
    return run.path


def _fingerprint(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_subtract_reset_refusal_points_to_retarget(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), str(tmp_path / "s.nir")]) == 2
    assert "--retarget zero-reset" in capsys.readouterr().err
    assert not (tmp_path / "s.nir").exists()


def test_retarget_verify_records_and_leaves_the_run_alone(run_dir, tmp_path, capsys):
    before = _fingerprint(run_dir)
    out = tmp_path / "student.nir"
    assert main(["export", str(run_dir), str(out), "--retarget", "zero-reset", "--calibrate-epochs", "1",
                 "--calibrate-batch-size", "16", "--verify", "--verify-n", "12", "--json", "--quiet"]) == 0
    report = _json(capsys)
    assert _fingerprint(run_dir) == before, "export wrote into the run folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.nir"]  # no temporary left behind
    r = report["retarget"]
    assert r["from_reset"] == "subtract" and r["to_reset"] == "zero" and r["epochs"] == 1 and r["batch_size"] == 16
    assert len(r["history"]) == 1 and r["chosen_epoch"] in (0, 1)
    for key in ("accuracy_subtract_reset", "accuracy_zero_reset_uncalibrated", "accuracy_after"):
        assert 0 <= r[key] <= 1
    graph = nir.read(str(out))
    assert graph.metadata["reset"] == "zero"
    meta = graph.metadata["retarget"]
    assert meta["to_reset"] == "zero" and int(meta["epochs"]) == 1
    assert float(meta["accuracy_after"]) == pytest.approx(r["accuracy_after"])
    assert all(graph.nodes[n].metadata["reset"] == "zero" for n in neuron_node_names(graph))
    v = report["verify"]
    assert v["samples"] == 12 and set(v["importers"]) == {"reference", "norse", "snntorch", "spikingjelly"}
    for name, result in v["importers"].items():
        assert result["accuracy"] == v["student_accuracy"], name
        assert result["spike_counts_identical"], name


def test_weight_bits_writes_weights_on_a_k_bit_grid(run_dir, tmp_path, capsys):
    out = tmp_path / "w4.nir"
    assert main(["export", str(run_dir), str(out), "--retarget", "zero-reset", "--calibrate-epochs", "0",
                 "--weight-bits", "4", "--json", "--quiet"]) == 0
    report = _json(capsys)
    q = report["weight_quantization"]
    assert q["bits"] == 4 and q["mode"] == "symmetric" and q["chosen_epoch"] == 0
    graph = nir.read(str(out))
    assert int(graph.metadata["weight_bits"]) == 4
    weights = [n for n in graph.nodes.values() if isinstance(n, nir.Affine)]
    assert len(weights) == 3
    for node in weights:
        step = float(node.metadata["weight_step"])
        levels = np.round(node.weight / step)
        np.testing.assert_allclose(node.weight, levels * step, atol=1e-6 * step)
        assert np.abs(levels).max() <= 7  # 2^(4-1) - 1


def test_out_is_never_overwritten_unasked(run_dir, tmp_path, capsys):
    out = tmp_path / "mine.nir"
    out.write_text("the user's file")
    args = ["export", str(run_dir), str(out), "--allow-subtract-reset"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "the user's file"
    assert main(args + ["--overwrite"]) == 0
    assert nir.read(str(out)).metadata["reset"] == "subtract"


def test_flavour_and_flag_checks(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), str(tmp_path / "a.nir"), "--allow-subtract-reset", "--flavour", "snntorch",
                 "--dt", "0.001"]) == 2
    assert "drop --dt" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(tmp_path / "b.nir"), "--weight-bits", "1", "--allow-subtract-reset"]) == 2
    assert "2..16" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(tmp_path / "c.nir"), "--retarget", "zero-reset",
                 "--calibrate-batch-size", "0"]) == 2
    assert "--calibrate-batch-size must be >= 1" in capsys.readouterr().err


def test_export_help_imports_no_torch():
    code = ("import sys\nfrom spiketandem.cli import build_parser\np = build_parser(['export'])\n"
            "p.parse_args(['export', 'R', 'O', '--retarget', 'zero-reset', '--verify'])\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.fixture(scope="module")
def low_latency_run(tmp_path_factory):
    """A digits run of a zero-reset student whose membranes start at theta / 2 (--recipe low-latency)."""
    import torch
    torch.manual_seed(0)
    run = RunFolder(tmp_path_factory.mktemp("runs") / "low-latency")
    cfg = make_config({"dataset": "digits", "arch": "digits-mlp", "width": 0.25, "T": 2, "n_train": 300,
                       "n_test": 60, "batch_size": 64, "out": str(run.path), "progress": False, "reset": "zero",
                       "options": {"recipe": "low-latency"}})
    info = DataInfo(10, 1, 8)
    teacher = build_model("digits-mlp", 10, 1, 8, 0.25).eval()
    run.write_config(cfg)
    save_teacher(teacher, cfg, info, 0.0, run.file("teacher.pt"))
    rule = get_rule("ltl-offline")(cfg, info, teacher, torch.randn(64, 1, 8, 8))
    assert rule.membrane_init() == 0.5
    save_model(rule, run.file("student.pt"), zoo_architecture(cfg))
    return run.path


def test_a_membrane_start_nir_cannot_hold_is_refused_or_retargeted(low_latency_run, tmp_path, capsys):
    """NIR neurons start at v = 0: a student starting at theta / 2 is refused as is (even with zero reset),
    and --retarget zero-reset moves the start to 0 and records it; the file then agrees with the
    retargeted student in the reference simulator."""
    assert main(["export", str(low_latency_run), str(tmp_path / "s.nir")]) == 2
    err = capsys.readouterr().err
    assert "starts every membrane at 0.5 x its threshold" in err and "--retarget zero-reset" in err
    assert not (tmp_path / "s.nir").exists()
    out = tmp_path / "student.nir"
    assert main(["export", str(low_latency_run), str(out), "--retarget", "zero-reset", "--calibrate-epochs", "0",
                 "--verify", "--verify-n", "12", "--verify-with", "reference", "--json", "--quiet"]) == 0
    report = _json(capsys)
    r = report["retarget"]
    assert (r["from_membrane_init"], r["to_membrane_init"], r["from_reset"]) == (0.5, 0.0, "zero")
    assert float(nir.read(str(out)).metadata["retarget"]["from_membrane_init"]) == 0.5
    assert report["verify"]["importers"]["reference"]["spike_counts_identical"]
