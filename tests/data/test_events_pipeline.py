"""Event datasets through the run pipeline and the CLI: uint8 frames batched on the device, the teacher on
time-integrated frames, LTL (offline and online) and STBP students on per-step frames, end to end on
synthetic N-MNIST and CIFAR10-DVS recordings written in the releases' own formats."""
import json

import numpy as np
import pytest
import torch

from spiketandem.cli import main
from spiketandem.data import DeviceBatches
from event_builders import write_aedat2_dvs128
from spiketandem.data.event_data import load_event_data
from event_builders import write_nmnist_recording
from spiketandem.data.formats.cifar import CIFAR10_CLASSES

pytest.importorskip("tonic", reason="tonic reads the event files")


def _blob(rng, k, size, n):
    """n events inside cell k of a 4 x 4 grid over a size x size sensor: classes differ in where events occur."""
    cell = size // 4
    row, col = divmod(k, 4)
    return col * cell + rng.integers(0, cell, n), row * cell + rng.integers(0, cell, n)


@pytest.fixture(scope="module")
def nmnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist-release")
    rng = np.random.default_rng(0)
    for split, per_class in (("Train", 12), ("Test", 4)):
        for digit in range(10):
            for i in range(per_class):
                n = int(rng.integers(60, 100))
                x, y = _blob(rng, digit, 34, n)
                write_nmnist_recording(root / split / str(digit) / f"{i:05d}.bin", x, y,
                                       np.sort(rng.integers(0, 300_000, n)), rng.integers(0, 2, n))
    return root


@pytest.fixture(scope="module")
def cli_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cli-cache")


def _cli(capsys, monkeypatch, cache, *argv) -> dict:
    monkeypatch.setenv("SPIKETANDEM_CACHE", str(cache))  # one binning cache for the module's runs
    assert main([*argv, "--json", "--quiet"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_frames_batch_as_exact_counts_and_integrate_to_the_time_average(nmnist_dir, tmp_path):
    data = load_event_data("nmnist", nmnist_dir, T=4, cache_dir=tmp_path)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (120, 4, 2, 34, 34)
    x, y = next(iter(DeviceBatches(data.train_x, data.train_y, 7, mean=data.mean, std=data.std, shuffle=False,
                                   augment=False)))
    assert x.shape == (7, 4, 2, 34, 34) and x.dtype == torch.float32
    assert torch.equal(x, data.train_x[:7].float())  # counts arrive unchanged
    flat = data.integrated()
    xi, _ = next(iter(DeviceBatches(flat.train_x, flat.train_y, 7, mean=flat.mean, std=flat.std, shuffle=False,
                                    augment=False)))
    torch.testing.assert_close(xi, data.train_x[:7].float().mean(1))  # the teacher's input: mean over bins
    small = data.subset(10, 5, seed=1)
    assert len(small.train_y) == 10 and len(small.test_y) == 5 and small.T == 4


def test_nmnist_cli_teacher_then_ltl_offline_online_and_stbp(nmnist_dir, cli_cache, tmp_path, capsys, monkeypatch):
    common = ["--dataset", "nmnist", "--data-dir", str(nmnist_dir), "--arch", "digits-mlp", "--width", "0.25",
              "--batch-size", "16"]
    teacher = _cli(capsys, monkeypatch, cli_cache, "teacher", *common, "--epochs", "20", "--out", str(tmp_path / "t"))
    assert teacher["teacher_acc"] >= 0.8  # 10 classes: chance is 0.1
    runs = {}
    for rule, extra in (("ltl-offline", ["--epochs", "2"]), ("ltl-online", ["--epochs", "1"]),
                        ("stbp", ["--epochs", "4", "--lr", "1e-2"])):
        runs[rule] = _cli(capsys, monkeypatch, cli_cache, "train", "--rule", rule, *common, *extra, "--T", "4",
                          "--teacher", str(tmp_path / "t"), "--out", str(tmp_path / rule))
    for rule, summary in runs.items():
        assert summary["acc_by_T"].keys() == {"4"}, rule           # evaluated at the binning window only
        assert summary["student_acc"] >= 0.6, (rule, summary["student_acc"])
        assert 0 < summary["synops_ratio"] < 1, rule
        first = next(iter(summary["ops_by_layer"].values()))
        assert first["macs"] == 0 and first["synops"] > 0, rule  # event input: the first layer is SynOps
    config = (tmp_path / "ltl-offline" / "config.yaml").read_text()
    assert "encoding: frames" in config and "bins: time" in config
    again = _cli(capsys, monkeypatch, cli_cache, "eval", str(tmp_path / "ltl-offline"))
    assert again["student_acc"] == runs["ltl-offline"]["student_acc"] and again["teacher_acc"] == teacher["teacher_acc"]
    # the student reads frames binned at T=4: other windows are refused with a reason
    assert main(["eval", str(tmp_path / "ltl-offline"), "--eval-T", "4", "8"]) == 2
    assert "evaluated at T=4 only" in capsys.readouterr().err


def test_rate_encoding_is_refused_on_events(nmnist_dir, tmp_path, capsys):
    assert main(["train", "--dataset", "nmnist", "--data-dir", str(nmnist_dir), "--encoding", "rate", "--T", "4",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "already spikes" in capsys.readouterr().err


def test_cifar10_dvs_cli_end_to_end(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(1)
    for k, cls in enumerate(CIFAR10_CLASSES):
        for i in range(5):  # 4 train / 1 test per class (test_fraction 0.1, at least one)
            n = int(rng.integers(40, 80))
            x, y = _blob(rng, k, 128, n)
            write_aedat2_dvs128(tmp_path / "data" / cls / f"cifar10_{cls}_{i}.aedat", x, y,
                                np.sort(rng.integers(0, 500_000, n)), rng.integers(0, 2, n))
    summary = _cli(capsys, monkeypatch, tmp_path / "cache", "train", "--dataset", "cifar10-dvs", "--data-dir",
                   str(tmp_path / "data"), "--arch", "digits-mlp", "--width", "0.05", "--teacher-epochs", "3",
                   "--epochs", "1", "--T", "2", "--bins", "count", "--event-size", "32", "--batch-size", "8",
                   "--out", str(tmp_path / "run"))
    assert summary["dataset"] == "cifar10-dvs" and summary["acc_by_T"].keys() == {"2"}
    assert 0 <= summary["student_acc"] <= 1 and summary["synops_per_sample"] > 0
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "bins: count" in config and "event_size: 32" in config
    assert summary["ops_by_layer"]["net.1"]["teacher_macs"] == 2 * 32 * 32 * 13  # pooled 2 x 32 x 32 input


def test_counts_above_255_are_clipped_with_a_warning():
    from spiketandem.data.event_data import _to_uint8
    frames = np.zeros((1, 2, 2, 1, 1), dtype=np.uint16)
    frames[0, 0, 1, 0, 0], frames[0, 1, 0, 0, 0] = 300, 7
    with pytest.warns(UserWarning, match="1 bin entries hold more than 255 events"):
        x = _to_uint8(frames, "demo")
    assert x.dtype == torch.uint8 and x[0, 0, 1, 0, 0] == 255 and x[0, 1, 0, 0, 0] == 7


def test_augmenting_frames_flips_every_step_alike():
    x = torch.randint(0, 9, (6, 3, 2, 4, 5), dtype=torch.uint8)  # [N, T, C, H, W], distinct per step
    batches = DeviceBatches(x, torch.arange(6), 6, mean=(0, 0), std=(1 / 255, 1 / 255), shuffle=False, augment=True,
                            pad=0, seed=3)
    out, _ = next(iter(batches))
    flipped = [torch.equal(out[i], x[i].flip(-1).float()) for i in range(6)]
    kept = [torch.equal(out[i], x[i].float()) for i in range(6)]
    assert all(f != k for f, k in zip(flipped, kept))  # each recording: all T steps flipped, or none
    assert any(flipped) and any(kept)


@pytest.mark.slow
def test_nmnist_cli_conv_student_ltl_and_stbp(nmnist_dir, cli_cache, tmp_path, capsys, monkeypatch):
    """The same task with a conv teacher/student (frames into a convolution, conv SynOps on counts)."""
    common = ["--dataset", "nmnist", "--data-dir", str(nmnist_dir), "--arch", "digits-cnn", "--width", "0.25",
              "--batch-size", "16", "--T", "4"]
    ltl = _cli(capsys, monkeypatch, cli_cache, "train", *common, "--teacher-epochs", "10", "--epochs", "2",
               "--out", str(tmp_path / "ltl"))
    stbp = _cli(capsys, monkeypatch, cli_cache, "train", "--rule", "stbp", *common, "--epochs", "3", "--lr", "3e-3",
                "--out", str(tmp_path / "stbp"))
    assert ltl["teacher_acc"] >= 0.8 and ltl["student_acc"] >= 0.6 and stbp["student_acc"] >= 0.6
    assert ltl["ops_by_layer"]["conv1"]["macs"] == 0 and ltl["ops_by_layer"]["conv1"]["synops"] > 0
