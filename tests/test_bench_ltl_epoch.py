"""`bench ltl-epoch` runs end to end on a tiny setting and reports its ratio against (2T+1)/3.
(No timing is asserted: performance is reported by the benchmark, never tested.)"""
import json

import pytest

from spiketandem.cli import main


def test_tiny_ltl_epoch_benchmark(tmp_path, capsys):
    assert main(["bench", "ltl-epoch", "--device", "cpu", "--width", "0.125", "--T", "2", "--batch-size", "8",
                 "--batches", "1", "--repeats", "2", "--n-train", "80", "--profile", "3", "--out", str(tmp_path),
                 "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "ltl-epoch.json").read_text())
    assert result["bound"] == pytest.approx(5 / 3)            # (2T + 1) / 3 at T = 2, by hand
    teacher, ltl = result["rows"]
    assert (teacher["rule"], ltl["rule"]) == ("teacher", "ltl-offline")
    assert len(ltl["wall_samples"]) == 2 and result["batches_per_epoch"] == 10  # 80 images / 8
    assert ltl["epoch_seconds"] == pytest.approx(10 * ltl["seconds_per_batch"])
    assert result["ratio"] == pytest.approx(ltl["seconds_per_batch"] / teacher["seconds_per_batch"])
    assert result["ratio_over_bound"] == pytest.approx(result["ratio"] / result["bound"])
    assert len(result["profile"]) == 3 and all(r["calls"] >= 1 for r in result["profile"])
