"""The statistics over seeds (``seeds.py``) against hand computations."""
from pathlib import Path

import pytest

from spiketandem.errors import SpiketandemError
from spiketandem.seeds import check_seeds, mean_std, mean_std_text, seed_folder


def test_mean_and_sample_standard_deviation():
    # 0.90, 0.92, 0.94: mean 0.92; deviations -0.02, 0, 0.02: sum of squares 8e-4 over n - 1 = 2 -> std 0.02
    mean, std = mean_std([0.90, 0.92, None, 0.94])
    assert mean == pytest.approx(0.92) and std == pytest.approx(0.02)
    assert mean_std([0.5]) == (0.5, None) and mean_std([None]) == (None, None)


def test_the_text_of_a_mean_over_seeds():
    assert mean_std_text(0.92, 0.02, 3) == "92.00 ± 2.00% (3 seeds)"
    assert mean_std_text(0.92, None, 1) == "92.00%" and mean_std_text(None, None, 0) == "–"
    assert mean_std_text(1.5, 0.25, 2, percent=False) == "1.50 ± 0.25 (2 seeds)"


def test_one_seed_keeps_the_folder_several_get_one_each():
    assert seed_folder(Path("out/ltl"), 4, [4]) == Path("out/ltl")
    assert seed_folder(Path("out/ltl"), 4, [4, 7]) == Path("out/ltl-seed4")


@pytest.mark.parametrize("bad", [[], [-1], [1.5], [True], [1, 1], [2 ** 32]])
def test_bad_seeds_are_refused(bad):
    with pytest.raises(SpiketandemError, match="--seeds"):
        check_seeds(bad)
