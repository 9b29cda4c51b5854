"""The two SynOps conventions on hand examples (docs/metrics.md, Conventions):

    exact     SynOps = sum_i E_i * fanout_i          (E_i: events carried by input entry i)
    standard  SynOps = sum_i 1[x_i != 0] * fanout_i  (x_i: the layer's actual input value)

and the convention selected end to end (train, eval, summary.json)."""
import json

import pytest
import torch
from torch import nn

from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.metrics import EnergyModel, compare_ops, count_ops


def _both(counts, layer):
    return counts.synops[layer], counts.standard[layer]


def test_average_pooled_spikes():
    """4 spikes, 3 of them in one 2x2 window, pooled into a linear layer of fan-out 3: exact routes every
    spike (4 * 3 = 12), standard counts the two non-zero pooled values (0.75 and 0.25): 2 * 3 = 6."""
    x = torch.tensor([[[[1., 1., 0., 0.],
                        [1., 0., 0., 1.],
                        [0., 0., 0., 0.],
                        [0., 0., 0., 0.]]]])
    model = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 3))
    counts, _ = count_ops(model, x)
    assert _both(counts, "2") == (12, 6)
    assert counts.total_macs() == 0
    assert counts.total_synops() == 12 and counts.total_synops("standard") == 6
    assert counts.synops_per_sample("standard") == 6
    assert counts.per_layer("standard")["2"] == {"macs": 0, "synops": 6,
                                                 "synops_by_convention": {"exact": 12, "standard": 6}}


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1)

    def forward(self, a, b):
        return self.conv(a + b)


def test_residual_sum_of_coincident_spikes():
    """a + b = [[2, 0], [1, 2]] (two positions where both streams spike) into a 1x1 conv of 4 output
    channels (fan-out 4): exact (3 + 2 events) * 4 = 20, standard 3 non-zero positions * 4 = 12."""
    a = torch.tensor([[[[1., 0.], [1., 1.]]]])
    b = torch.tensor([[[[1., 0.], [0., 1.]]]])
    counts, _ = count_ops(_Residual(), a, b)
    assert _both(counts, "conv") == (20, 12)


def test_event_frames_with_several_events_per_pixel():
    """A 3x3 frame: 3 events at a corner, 1 at the centre, into conv3x3 (padding 1, 2 output channels).
    A corner reaches 2x2 outputs (fan-out 4 * 2 = 8), the centre all 3x3 (9 * 2 = 18):
    exact 3 * 8 + 1 * 18 = 42, standard 1 * 8 + 1 * 18 = 26."""
    frame = torch.zeros(1, 1, 3, 3)
    frame[0, 0, 0, 0], frame[0, 0, 1, 1] = 3, 1
    counts, _ = count_ops(nn.Conv2d(1, 2, 3, padding=1), frame, event_inputs=True)
    assert _both(counts, "Conv2d") == (42, 26)


def test_strided_conv_on_spikes_is_the_same_in_both():
    """conv3x3, stride 2, padding 1, 2 output channels on a 4x4 map: along each axis input index 0..3 reaches
    1, 2, 1, 1 outputs, so spikes at (1, 1), (0, 3), (2, 2) cost (4 + 1 + 1) * 2 = 12 in both conventions."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = x[0, 0, 0, 3] = x[0, 0, 2, 2] = 1
    counts, _ = count_ops(nn.Conv2d(1, 2, 3, stride=2, padding=1), x)
    assert _both(counts, "Conv2d") == (12, 12)


def test_analog_input_is_macs_in_both():
    counts, _ = count_ops(nn.Linear(3, 4), torch.randn(5, 3))
    assert counts.total_macs() == 5 * 3 * 4
    assert counts.total_synops("exact") == counts.total_synops("standard") == 0


def test_compare_ops_in_the_chosen_convention_and_a_bad_name():
    """Student: 6 MACs (an analog first layer) and the pooled layer above (12 exact, 6 standard SynOps);
    against 60 teacher MACs: ratio (12 + 6) / 60 = 0.3 exact, (6 + 6) / 60 = 0.2 standard."""
    x = torch.tensor([[[[1., 1., 0., 0.], [1., 0., 0., 1.], [0., 0., 0., 0.], [0., 0., 0., 0.]]]])
    counts, _ = count_ops(nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4, 3)), x)
    counts.macs["first"] += 6
    teacher, _ = count_ops(nn.Linear(6, 10), torch.randn(1, 6), dense=True)
    energy = EnergyModel(mac_pj=1.0, ac_pj=0.5)
    got = compare_ops(counts, teacher, energy, "standard")
    assert got["synops_convention"] == "standard" and got["synops_per_sample"] == 6
    assert got["synops_ratio"] == pytest.approx(0.2)
    assert got["synops_ratio_by_convention"] == pytest.approx({"exact": 0.3, "standard": 0.2})
    assert got["energy"]["student_uj"] == pytest.approx((6 * 1.0 + 6 * 0.5) * 1e-6)  # energy of the standard count
    assert compare_ops(counts, teacher, energy)["synops_ratio"] == pytest.approx(0.3)  # exact by default
    with pytest.raises(SpiketandemError, match="unknown SynOps convention 'std'; choose one of exact, standard"):
        compare_ops(counts, teacher, energy, "std")


def test_train_and_eval_select_the_convention(tmp_path, digits_teacher, capsys):
    run = tmp_path / "run"
    assert main(["train", "--teacher", digits_teacher, "--arch", "digits-cnn", "--T", "2", "--eval-T", "2",
                 "--epochs", "1", "--n-train", "300", "--n-test", "100", "--synops-convention", "standard",
                 "--out", str(run), "--quiet"]) == 0
    assert "SynOps / teacher MACs at T=2 (standard):" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    by = summary["synops_ratio_by_convention"]
    assert summary["synops_convention"] == "standard" and set(by) == {"exact", "standard"}
    assert summary["synops_ratio"] == pytest.approx(by["standard"])
    assert summary["synops_ratio_by_T"]["2"] == pytest.approx(by["standard"])
    assert by["standard"] <= by["exact"]  # digits-cnn average-pools its spikes: one pooled value, several spikes
    layer = summary["ops_by_layer"]["fc1"]  # the layer behind the pooling
    assert layer["synops"] == layer["synops_by_convention"]["standard"] < layer["synops_by_convention"]["exact"]

    assert main(["eval", str(run), "--synops-convention", "exact", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["synops_convention"] == "exact"
    assert evaluated["synops_ratio"] == pytest.approx(by["exact"])
    assert json.loads((run / "summary.json").read_text())["synops_convention"] == "exact"


def test_a_bad_convention_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--synops-convention", "standrd", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--synops-convention: invalid choice 'standrd' (choose from exact, standard); did you mean standard?" in err
    with pytest.raises(SpiketandemError, match="config field 'synops_convention': 'std' is not allowed"):
        from spiketandem.config import make_config
        make_config({"synops_convention": "std"})
