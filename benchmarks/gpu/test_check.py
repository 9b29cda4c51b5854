"""The GPU validation kit (`benchmarks/gpu/check.py`): the CPU rehearsal runs every step end to end and writes its JSON; a step that hangs or
crashes is stopped or recorded and the others run; the GPU plan's flags are valid for the benchmarks they call;
the kernel check can fail; the packing step adds up what travels and refuses what does not fit."""
import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import check as gpu_check
from spiketandem.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
main = gpu_check.main


def test_dry_run_runs_every_step_and_writes_its_json(tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    assert main(["--dry-run", "--out", str(out), "--work", str(work), "--json", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "gpu_check.json").read_text())
    assert printed == report
    assert report["mode"] == "dry-run" and report["measured_on_gpu"] is False and report["complete"] is True
    assert report["budget_s"] == 540 and [p["step"] for p in report["plan"]] == [*gpu_check.STEP_ORDER, "data"]
    steps = report["steps"]
    assert set(steps) == {*gpu_check.STEP_ORDER, "data"}
    for name, entry in steps.items():
        assert entry["status"] == "ok", (name, entry.get("error"), entry.get("log_tail"))
        assert 0 < entry["seconds"] <= entry["limit_s"]
    kernels = steps["kernels"]["result"]
    assert kernels["complete"] and kernels["triton_interpret"]
    assert kernels["summary"]["autograd"] == {"passed": 160, "failed": 0, "skipped": 0, "failures": []}
    triton = kernels["summary"]["triton"]
    assert triton["failed"] == 0 and triton["passed"] + triton["skipped"] == 40
    neuron = steps["neuron"]["result"]["bench"]
    assert all(r["spike_agreement"] == 1.0 for r in neuron["rows"] if r["framework"] == "spiketandem")
    assert {r["setup"] for r in neuron["rows"]} == {"neuron", "linear"}
    assert steps["ltl-epoch"]["result"]["runs"][0]["bench"]["ratio"] > 0
    assert steps["complexity"]["result"]["runs"][0]["bench"]["derived"]["memory_ratio_Tmax_over_Tmin"]
    ddp = steps["distributed"]["result"]
    assert ddp["backend"] == "gloo" and ddp["equal_to_one_process"] is True
    tta = steps["time-to-accuracy"]["result"]
    assert tta["complete"] and [(r["phase"], r["epoch"]) for r in tta["epochs"]] == [("teacher", 1), ("student", 1)]
    assert all(r["test_acc"] is not None and r["seen_at_s"] > 0 for r in tta["epochs"])
    head = report["headline"]
    assert head["kernels_vs_reference"]["total"]["failed"] == 0
    assert head["distributed"]["equal_to_one_process"] and head["time_to_accuracy"]["reached"] is not None
    assert head["ltl_over_teacher_epoch"] and head["memory_vs_T"]
    assert (out / "gpu_check.log").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["gpu-check.json", "gpu_check.json", "gpu_check.log"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_refuses_and_names_the_dry_run(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "out")]) == 2
    assert "--dry-run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


FAKE_STEP = textwrap.dedent("""
    import json, subprocess, sys, time
    from pathlib import Path
    spec_path = Path(sys.argv[1]); name = sys.argv[2]; out = Path(sys.argv[3])
    go = Path(json.loads(spec_path.read_text())["go_file"])   # started ahead of its turn: wait to be told
    while not go.exists():
        time.sleep(0.02)
    partial, result = spec_path.with_suffix(".partial.json"), spec_path.with_suffix(".result.json")
    if name == "kernels":        # reports something, then hangs with a child process
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        (out / "child.pid").write_text(str(child.pid))
        partial.write_text(json.dumps({"summary": "half done"}))
        time.sleep(60)
    elif name == "neuron":       # what the JSON said while this step ran; then a crash without a result
        (out / "seen-during-neuron.json").write_text((out / "gpu_check.json").read_text())
        sys.exit(3)
    else:
        result.write_text(json.dumps({"ok": True, "result": {"step": name}, "seconds": 0.01}))
""")


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by init has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_hanging_or_crashing_step_does_not_stop_the_others(tmp_path, monkeypatch):
    out, work = tmp_path / "out", tmp_path / "work"
    script = tmp_path / "fake_step.py"
    script.write_text(FAKE_STEP)

    def fake_command(name, spec, work_dir):
        spec_path = work_dir / f"{name}.spec.json"
        spec_path.write_text(json.dumps(spec))
        return [sys.executable, str(script), str(spec_path), name, str(out)], spec_path
    monkeypatch.setattr(gpu_check, "step_command", fake_command)
    # budget 60 s over kernels, neuron, time-to-accuracy: 60 : 60 : 250 -> kernels gets 9.7 s (room for a slow start)
    assert main(["--dry-run", "--steps", "kernels", "neuron", "time-to-accuracy",
                 "--budget-s", "60", "--out", str(out), "--work", str(work), "--quiet"]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    steps = report["steps"]
    assert steps["kernels"]["status"] == "timeout" and steps["kernels"]["partial"] == {"summary": "half done"}
    assert steps["kernels"]["limit_s"] == pytest.approx(60 * 60 / 370, abs=0.1)
    assert steps["kernels"]["seconds"] < 120  # ended at its limit, not after the step's own 600 s (generous for load)
    assert not _alive(int((out / "child.pid").read_text()))   # the hung step's own child was ended with it
    assert steps["neuron"]["status"] == "failed" and steps["neuron"]["exit_code"] == 3
    assert "without a result" in steps["neuron"]["error"]
    assert steps["time-to-accuracy"] == {**steps["time-to-accuracy"], "status": "ok",
                                         "result": {"step": "time-to-accuracy"}}
    assert steps["data"]["status"] == "ok" and report["complete"] is True
    during = json.loads((out / "seen-during-neuron.json").read_text())   # written when each step started / ended
    assert during["steps"]["kernels"]["status"] == "timeout" and during["steps"]["neuron"]["status"] == "running"
    assert during["steps"]["time-to-accuracy"]["status"] == "pending" and during["complete"] is False


def test_a_running_step_hands_over_its_partial_result_as_it_goes(tmp_path):
    spec = tmp_path / "slow.spec.json"
    code = (f"import json, time; from pathlib import Path; p = Path({str(spec.with_suffix('.partial.json'))!r})\n"
            "for i in range(3):\n    p.write_text(json.dumps({'epochs': i})); time.sleep(0.3)\ntime.sleep(600)")
    step = gpu_check.StepProcess("slow", [sys.executable, "-c", code], spec, dict(os.environ), tmp_path / "slow.log")
    seen = []
    entry = step.finish(15.0, on_partial=seen.append, every=0.2)  # room for a slow start under load
    assert entry["status"] == "timeout" and entry["partial"] == {"epochs": 2}
    assert seen[0] == {"epochs": 0} and seen[-1] == {"epochs": 2} and len(seen) >= 2


def test_the_gpu_plan_is_valid_for_the_commands_it_calls_and_fits_nine_minutes():
    args = gpu_check.build_parser().parse_args(["--out", "x", "--data-dir", "cifar.tar.gz",
                                      "--tta-teacher-epochs", "20"])
    assert sum(gpu_check.SHARES.values()) == gpu_check.DEFAULT_BUDGET_S <= 9 * 60
    assert sum(gpu_check.limits(list(gpu_check.STEP_ORDER), 540).values()) == pytest.approx(540)
    assert gpu_check.limits(["kernels", "time-to-accuracy"], 100) == pytest.approx(
        {"kernels": 100 * 60 / 310, "time-to-accuracy": 100 * 250 / 310})
    for dry in (False, True):
        cfg = gpu_check.plan(dry, args)
        parse = build_parser().parse_args
        parse(["bench", "neuron", *cfg["neuron"]["flags"], "--device", "cuda", "--out", "x"])
        for name in ("ltl-epoch", "complexity"):
            for flags in cfg[name]["runs"]:
                parse(["bench", name, *flags, "--device", "cuda", "--out", "x"])
        parse([*cfg["distributed"]["flags"], "--device", "cuda", "--out", "x"])
        tta = parse(["bench", "time-to-accuracy", *cfg["time-to-accuracy"]["flags"], "--device", "cuda", "--out", "x"])
        assert set(cfg["kernels"]["sizes"]) == {"autograd_shape", "triton_n", "triton_T"}
        if not dry:
            assert tta.teacher_epochs == 20 and tta.data_dir == "cifar.tar.gz" and not hasattr(tta, "epochs")
    gpu = gpu_check.plan(False, args)
    assert gpu["kernels"]["triton_interpret"] is False and gpu["distributed"]["backends"] == ["nccl", "gloo"]
    assert ["--amp", "bf16", "--channels-last"] == gpu["ltl-epoch"]["runs"][0][-3:]
    assert gpu_check.step_env("distributed", gpu["distributed"]) == {"NVIDIA_TF32_OVERRIDE": "0"}
    assert gpu_check.step_env("kernels", gpu_check.plan(True, args)["kernels"]) == {"TRITON_INTERPRET": "1"}


def test_the_kernel_check_reports_a_wrong_spike_and_where(monkeypatch):
    import kernels_check as gk
    real = gk.run_neuron

    def broken(x, *a, backend="auto", **k):
        s, st = real(x, *a, backend=backend, **k)
        if backend == "fused":
            s = s.clone()
            s.view(-1)[7] = 1 - s.view(-1)[7]
        return s, st
    monkeypatch.setattr(gk, "run_neuron", broken)
    case = dict(group="autograd", kind="lif", reset="subtract", detach=False, surrogate="atan", static=False,
                dtype="float32")
    row = gk.check_autograd(case, torch.device("cpu"), (4, 2, 8), seed=0)
    assert row["passed"] is False and row["spike_mismatches"] == 1 and "spikes differ" in row["problem"]
    assert (row["first_mismatch"]["step"], row["first_mismatch"]["neuron"]) == (0, 7)
    monkeypatch.setattr(gk, "run_neuron", real)
    assert gk.check_autograd(case, torch.device("cpu"), (4, 2, 8), seed=0)["passed"] is True
    assert len(gk.autograd_cases()) == 160 and len(gk.triton_cases()) == 40


def _pack():
    spec = importlib.util.spec_from_file_location("gpu_pack", ROOT / "benchmarks" / "gpu" / "pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_adds_up_what_travels_and_refuses_what_does_not_fit(tmp_path, capsys):
    import subprocess
    pack = _pack()
    fits, text = pack.check_size({"a": 10 * 2**20, "b": 54 * 2**20}, 64)
    assert fits and "64.00 MiB" in text
    fits, text = pack.check_size({"a": 10 * 2**20, "b": 54 * 2**20 + 1}, 64)
    assert not fits and "TOO BIG by 1 bytes" in text
    assert pack.known_md5("cifar10-jpeg.tar.gz") == "dab9011423fd02e2d44b297cac6116c4"

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("ignored.bin\n")
    (repo / "tracked.txt").write_bytes(b"x" * 1000)
    subprocess.run(["git", "-C", str(repo), "add", "tracked.txt", ".gitignore"], check=True)
    (repo / "untracked.txt").write_bytes(b"y" * 2000)
    (repo / "ignored.bin").write_bytes(b"z" * 4000)
    archive = tmp_path / "fake.tar.gz"      # no known md5 for this name: copied as it is
    archive.write_bytes(os.urandom(3 * 2**20))
    carry = repo / "carry"
    assert pack.main(["--repo", str(repo), "--carry", str(carry), "--archive", str(archive), "--no-wheels"]) == 0
    printed = capsys.readouterr().out
    assert (carry / "fake.tar.gz").read_bytes() == archive.read_bytes()
    assert "fake.tar.gz" in (carry / "MANIFEST.txt").read_text()
    assert "working tree (3 files)" in printed and "fits" in printed           # ignored.bin and carry/ not counted
    assert sum(p.stat().st_size for p in pack.git_files(repo)) == 1000 + 2000 + len("ignored.bin\n")
    status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert "carry" not in status                     # ignored through .git/info/exclude: it travels only when carried
    assert pack.main(["--repo", str(repo), "--carry", str(carry), "--check-only", "--limit-mib", "2"]) == 1
    assert "TOO BIG" in capsys.readouterr().out
