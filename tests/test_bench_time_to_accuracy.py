"""`bench time-to-accuracy`: refused on a CPU without --allow-cpu; the smoke path runs end to end."""
import json

from spiketandem.cli import main


def test_refuses_on_cpu_without_allow_cpu(tmp_path, capsys):
    assert main(["bench", "time-to-accuracy", "--device", "cpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA GPU" in err and "--allow-cpu" in err
    assert not (tmp_path / "time-to-accuracy.json").exists()


def test_cpu_smoke_run_reports_the_time_to_target(tmp_path, capsys):
    assert main(["bench", "time-to-accuracy", "--device", "cpu", "--allow-cpu", "--teacher-epochs", "2",
                 "--epochs", "2", "--target", "0.3", "--out", str(tmp_path), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "time-to-accuracy.json").read_text())
    assert result["smoke"] is True and result["setting"]["dataset"] == "digits"
    assert result["setting"]["amp"] == "off" and result["setting"]["channels_last"] is False
    teacher, student = result["rows"]
    # two digits epochs give a teacher far above chance (0.1) and its student passes 0.3 at once
    assert teacher["test_acc"] > 0.5
    assert result["reached"] and student["epochs_to_target"] == 1 and student["epochs_run"] == 1
    assert student["test_acc_at_target"] >= 0.3
    assert teacher["seconds"] < result["seconds_to_target"] == student["seconds_at_target"]
    assert result["target_seconds"] is None and result["within_target"] is None  # no claim from a CPU


def test_gpu_setting_is_the_issue_setting_with_bf16_and_channels_last():
    import argparse
    from spiketandem.bench import time_to_accuracy as tta
    parser = argparse.ArgumentParser()
    tta.add_arguments(parser)
    s = tta.setting(parser.parse_args([]), cuda=True)
    assert (s["dataset"], s["arch"], s["width"], s["T"], s["target"]) == ("cifar10", "vgg11", 1.0, 16, 0.92)
    assert s["amp"] == "bf16" and s["channels_last"] is True
    s = tta.setting(parser.parse_args(["--amp", "off", "--no-channels-last", "--T", "8"]), cuda=True)
    assert s["amp"] == "off" and s["channels_last"] is False and s["T"] == 8
