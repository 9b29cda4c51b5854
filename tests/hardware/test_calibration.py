"""On-chip calibration (online LTL) and the HIL baseline recover accuracy lost to hardware noise on digits;
the `noise` command runs a sweep end to end."""
import json

import pytest
import torch

from spiketandem.cli import main
from spiketandem.hardware.calibrate import calibrate, calibration_rule, uncalibrated_accuracy
from spiketandem.hardware.chip import Chip
from spiketandem.hardware.noise import NoiseSpec

STRONG = NoiseSpec("mismatch", 0.6)


@pytest.mark.parametrize("method", ["ltl", "hil"])
def test_one_epoch_of_calibration_recovers_accuracy_under_mismatch(loaded_run, method):
    cfg, rule, info, dev, data, calib = loaded_run
    clean = {k: v.clone() for k, v in rule.model.state_dict().items()}
    result = calibrate(method, rule, Chip([STRONG], seed=0), cfg, info, data, dev, calib, epochs=1, lr=1e-3)
    assert result["before"] < 0.85                       # the noise hurts (clean is about 0.97)
    assert result["epochs"][0] > result["before"] + 0.05  # one epoch on the chip wins most of it back
    # the trained run itself is untouched: calibration works on an imprinted copy
    assert all(torch.equal(v, clean[k]) for k, v in rule.model.state_dict().items())


def test_ltl_and_hil_start_from_the_same_chip(loaded_run):
    cfg, rule, info, dev, data, calib = loaded_run
    spec = NoiseSpec("silencing", 0.3, "fixed")
    ltl = calibration_rule("ltl", rule, Chip([spec], seed=4), cfg, info, calib)
    hil = calibration_rule("hil", rule, Chip([spec], seed=4), cfg, info, calib)
    assert all(torch.equal(a, b) for a, b in zip(ltl.model.state_dict().values(), hil.model.state_dict().values()))


def test_quantization_aware_calibration_keeps_k_bit_weights(loaded_run):
    cfg, rule, info, dev, data, calib = loaded_run
    chip = Chip([NoiseSpec("quantization", 3)], seed=0)
    online = calibration_rule("ltl", rule, chip, cfg, info, calib)
    layer = online.model.graph_module.fc1
    before = layer.weight.detach().clone()
    optimizer = chip.writes(torch.optim.Adam(online.optim_parameters(), lr=1e-2))
    x, y = calib[:64], data.train_y[:64].long()
    online.train_step(x, y, optimizer, 0)
    after = layer.weight.detach()
    assert not torch.equal(after, before)                 # it learned (through the straight-through estimator)
    assert torch.unique(after).numel() <= 2 ** 3          # and what the chip holds is still 3-bit


def test_noise_command_sweeps_levels_without_calibration(digits_run, tmp_path, capsys, loaded_run):
    code = main(["noise", digits_run, "--kind", "thermal", "--levels", "0", "0.5", "--calibrate-epochs", "0",
                 "--seeds", "0", "1", "--device", "cpu", "--json", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [e["level"] for e in result["summary"]] == [0, 0.5]
    zero, strong = result["summary"]
    assert zero["before"]["mean"] == pytest.approx(result["clean_acc"]) and zero["before"]["std"] == 0  # no noise
    assert strong["before"]["n"] == 2 and strong["before"]["mean"] < result["clean_acc"]
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"noise-thermal.{suffix}").is_file()
    cfg, rule, info, dev, data, calib = loaded_run
    assert uncalibrated_accuracy(rule, Chip([NoiseSpec("thermal", 0.5)], 1), cfg, info, data, dev, calib) == \
        pytest.approx(result["rows"][3]["before"])        # seed 1 at 0.5: the same chip, the same number


def test_noise_command_refuses_a_folder_without_a_student(tmp_path, capsys):
    assert main(["noise", str(tmp_path), "--kind", "mismatch"]) == 2
    assert "student.pt" in capsys.readouterr().err
