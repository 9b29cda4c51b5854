"""The loop's advice: a short window trained in a way known to lose accuracy, and a test accuracy that fell."""
import pytest

from spiketandem.cli import main
from spiketandem.train import accuracy_drop


def _rows(*accs):
    return [{"test_acc": a} for a in accs]


def test_a_drop_of_more_than_ten_points_below_the_best_epoch_is_named():
    said = accuracy_drop(_rows(0.569, 0.673, 0.328))
    assert said.startswith("spiketandem: test accuracy fell from 67.30 % (epoch 2) to 32.80 % (epoch 3)")
    assert "--validation" in said and "\n" not in said


@pytest.mark.parametrize("accs", [(0.5,), (0.6, 0.52), (0.7, 0.65, 0.61), (None, 0.4), (0.8, None)])
def test_a_steady_or_short_history_says_nothing(accs):
    assert accuracy_drop(_rows(*accs)) is None


SMALL = ["--dataset", "digits", "--arch", "digits-mlp", "--width", "0.25", "--n-train", "200", "--n-test", "100",
         "--epochs", "1", "--teacher-epochs", "1", "--device", "cpu", "--quiet"]


def _train(tmp_path, capsys, name, *flags):
    assert main(["train", *SMALL, "--out", str(tmp_path / name), *flags]) == 0
    return capsys.readouterr().err


def test_a_short_window_from_zero_membranes_and_an_unclipped_teacher_is_advised_in_one_line(tmp_path, capsys):
    err = _train(tmp_path, capsys, "plain", "--T", "2")
    lines = [line for line in err.splitlines() if "loses accuracy" in line]
    assert len(lines) == 1 and lines[0].startswith("spiketandem: a student at T = 2 loses accuracy when")
    assert "every membrane starts at 0" in lines[0] and "not clipped" in lines[0] and "--act-clip 2" in lines[0]


def test_the_recipe_with_a_clipped_teacher_or_a_longer_window_is_not_advised(tmp_path, capsys):
    assert "loses accuracy" not in _train(tmp_path, capsys, "recipe", "--T", "2", "--recipe", "low-latency",
                                          "--act-clip", "2")
    assert "loses accuracy" not in _train(tmp_path, capsys, "long", "--T", "8")
