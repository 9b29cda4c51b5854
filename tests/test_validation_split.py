"""--validation N: N training images, the same for every seed, become the evaluation split; the test set is unused."""
import json

import pytest
import torch
import yaml

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.workflow import prepare


def _data(**fields):
    return prepare(make_config({"dataset": "digits", "device": "cpu", **fields}))[1]


def test_held_out_images_leave_the_training_split_and_replace_the_test_split():
    full, held = _data(), _data(validation=200)
    assert len(held.test_y) == 200 and len(held.train_y) == len(full.train_y) - 200
    # every held-out image is a training image of the full split, and none of them is still trained on
    rows = {bytes(x.numpy()) for x in full.train_x}
    assert all(bytes(x.numpy()) in rows for x in held.test_x)
    train_rows = {bytes(x.numpy()) for x in held.train_x}
    assert not any(bytes(x.numpy()) in train_rows for x in held.test_x)
    assert sorted(train_rows | {bytes(x.numpy()) for x in held.test_x}) == sorted(rows)
    assert held.mean == full.mean and held.std == full.std  # normalised as the full training split


def test_the_split_is_the_same_for_every_seed_and_subsets_apply_after_it():
    a, b = _data(validation=100, seed=0), _data(validation=100, seed=7)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)
    small = _data(validation=100, n_train=300, n_test=50, seed=3)
    assert len(small.train_y) == 300 and len(small.test_y) == 50
    held = {bytes(x.numpy()) for x in a.test_x}
    assert all(bytes(x.numpy()) in held for x in small.test_x)


@pytest.mark.parametrize("n", [1437, 5000])
def test_holding_out_the_whole_training_split_is_refused(n):
    with pytest.raises(SpiketandemError, match=r"--validation .*hold out between 1 and 1436"):
        _data(validation=n)


def test_a_run_on_the_validation_split_says_so_and_reports_it(tmp_path, capsys):
    from spiketandem.cli import main
    main(["teacher", "--dataset", "digits", "--arch", "digits-mlp", "--width", "0.25", "--epochs", "1",
          "--validation", "300", "--out", str(tmp_path / "t"), "--device", "cpu"])
    out = capsys.readouterr()
    said = out.out + out.err
    assert "1137 train / 300 validation samples held out of the training split" in said
    assert "validation acc" in said and "test acc" not in said
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["test_samples"] == 300
    assert yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())["validation"] == 300
