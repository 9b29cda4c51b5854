"""Multi-process training (torchrun, gloo on the CPU) against one process with the same global batch.

The 2-process run goes through the real launcher (`python -m torch.distributed.run --nproc_per_node=2
-m spiketandem train ...`); the single-process run is the same command in this process.  With the
global order and augmentation drawn once from the seed, global BatchNorm statistics, the global-batch
LTL normaliser and gradients averaged before every optimizer step, both must train the same weights
(up to the order of floating-point sums).
"""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from spiketandem import distributed
from launch import torchrun
from spiketandem.cli import main
from spiketandem.runs import RunFolder

# 128 training images = 4 global batches of 32: no padding, every rank gets 16 images per step
FLAGS = ["train", "--dataset", "digits", "--arch", "digits-cnn", "--n-train", "128", "--n-test", "64",
         "--teacher-epochs", "1", "--epochs", "2", "--batch-size", "32", "--T", "4", "--eval-T", "4",
         "--device", "cpu", "--quiet", "--seed", "3"]


def _weights(path: Path) -> dict:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    state = obj["state"]["model"] if "state" in obj else obj["state_dict"]
    return {k: v for k, v in state.items() if v.is_floating_point()}


def assert_same_student(a: dict, b: dict) -> None:
    """Two Adam-trained students agree up to rounding.  Adam divides each gradient by its running RMS, so
    for a weight whose gradient is ~0 (an input that almost never spikes) a rounding-level difference
    in the gradient becomes a step of up to lr = 1e-3: such weights may differ by a few 1e-4 (measured:
    50 of 131,072 weights of one PTL layer, at most 1.8e-4).  Every other weight must agree to 1e-5.  A
    real error (unaveraged gradients, wrong slices) moves nearly every weight."""
    assert a.keys() == b.keys()
    for key in a:
        diff = (a[key] - b[key]).abs()
        assert float((diff > 1e-5).float().mean()) < 1e-3, (key, int((diff > 1e-5).sum()), diff.numel())
        assert float(diff.max()) < 2e-3, (key, float(diff.max()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run twice: 2 processes under torchrun, and one process."""
    root = tmp_path_factory.mktemp("ddp")
    done = torchrun(FLAGS + ["--out", str(root / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(FLAGS + ["--out", str(root / "one")]) == 0
    return root / "one", root / "two", done


def test_two_ranks_train_the_single_process_weights(runs):
    one, two, _ = runs
    # the teacher: SGD (no per-weight normalisation) on the global batch, BatchNorm over 32 images either way
    a, b = _weights(one / "teacher/teacher.pt"), _weights(two / "teacher/teacher.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=0), (key, (a[key] - b[key]).abs().max())
    assert_same_student(_weights(one / "student.pt"), _weights(two / "student.pt"))


def test_two_ranks_report_the_global_metrics(runs):
    one, two, _ = runs
    for sub in ("teacher", "."):
        rows_one = RunFolder(one / sub).read_metrics()
        rows_two = RunFolder(two / sub).read_metrics()
        assert len(rows_one) == len(rows_two) >= 1
        for r1, r2 in zip(rows_one, rows_two):
            for key in ("train_loss", "train_acc", "test_acc"):
                assert r1[key] == pytest.approx(r2[key], abs=1e-4), (sub, key)
    s1 = json.loads((one / "summary.json").read_text())
    s2 = json.loads((two / "summary.json").read_text())
    assert s2["student_acc"] == pytest.approx(s1["student_acc"], abs=1 / 64)
    assert s2["teacher_acc"] == pytest.approx(s1["teacher_acc"], abs=1 / 64)


def test_only_rank_zero_reports(runs):
    _, two, done = runs
    # --quiet: no per-epoch lines; rank 0 prints the summary table once, rank 1 prints nothing
    assert done.stdout.count("run folder:") == 1
    assert not list(two.rglob(".*.tmp"))


@pytest.mark.slow
def test_resume_undertorchrun(runs, tmp_path):
    """A 2-process run resumed from its epoch-1 checkpoint continues exactly as a single process
    resumed from the same checkpoint (same weights and metrics after epoch 2)."""
    import shutil
    _, two, _ = runs
    flags = list(FLAGS) + ["--teacher", str(two / "teacher" / "teacher.pt")]
    flags[flags.index("--epochs") + 1] = "1"
    assert torchrun(flags + ["--out", str(tmp_path / "two")]).returncode == 0
    shutil.copytree(tmp_path / "two", tmp_path / "one")
    flags[flags.index("--epochs") + 1] = "2"
    done = torchrun(flags + ["--out", str(tmp_path / "two"), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(flags + ["--out", str(tmp_path / "one"), "--resume"]) == 0
    assert_same_student(_weights(tmp_path / "one" / "student.pt"), _weights(tmp_path / "two" / "student.pt"))
    rows = RunFolder(tmp_path / "two").read_metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] == pytest.approx(RunFolder(tmp_path / "one").read_metrics()[1]["train_loss"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("rule_flags", [
    ["--rule", "ltl-online", "--online-update", "step"],        # T backward calls and T optimizer steps per batch
    ["--rule", "ltl-offline", "--schedule", "sequential"],      # requires_grad switched between stages
    # its own (sharded) batches from a train/validation split, stage-wise freezing; validation 0.25 leaves
    # 96 = 3 x 32 training images, so its batches never straddle the end of a pass (see distributed.py)
    ["--rule", "ptl", "--neuron", "if", "--epochs", "3", "--ptl-val-fraction", "0.25"],
    ["--rule", "decolle", "--decolle-updates", "step"],         # extra readout modules, a step per time step
], ids=["ltl-online-step", "ltl-sequential", "ptl", "decolle-step"])
def test_rules_with_several_steps_per_batch_match_one_process(runs, tmp_path, rule_flags):
    _, two, _ = runs
    flags = list(FLAGS) + rule_flags + ["--teacher", str(two / "teacher" / "teacher.pt")]
    done = torchrun(flags + ["--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(flags + ["--out", str(tmp_path / "one")]) == 0
    assert_same_student(_weights(tmp_path / "one" / "student.pt"), _weights(tmp_path / "two" / "student.pt"))
    rows_one, rows_two = (RunFolder(tmp_path / r).read_metrics() for r in ("one", "two"))
    for r1, r2 in zip(rows_one, rows_two):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], abs=1e-5)


def test_batch_size_must_divide_among_ranks(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    with pytest.raises(Exception, match="global batch and must be divisible by the number of processes"):
        distributed.local_batch_size(64)


def test_global_batchnorm_is_batchnorm_in_one_process():
    """Outside a process group GlobalBatchNorm is nn.BatchNorm2d (same output, same running stats)."""
    torch.manual_seed(0)
    bn = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    other = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))
    other.load_state_dict(bn.state_dict())
    assert distributed.globalise_batchnorm(other) == 1
    assert isinstance(other[1], distributed.GlobalBatchNorm)
    x = torch.randn(5, 2, 4, 4)
    assert torch.equal(bn(x), other(x))
    assert torch.equal(bn[1].running_var, other[1].running_var)
    assert set(bn.state_dict()) == set(other.state_dict())
