"""ArrayDataset: statistics, properties, subsets, validation."""
from __future__ import annotations

import pytest
import torch

from spiketandem.data import ArrayDataset, load_dataset
from spiketandem.data.arrays import channel_stats


def test_channel_stats_match_a_direct_computation():
    x = torch.randint(0, 256, (20, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(x)
    reference = x.double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), reference.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), reference.std(dim=(0, 2, 3), unbiased=False))


def test_subset_is_random_seeded_and_keeps_statistics():
    data = load_dataset("digits")
    small = data.subset(100, 30, seed=1)
    assert (len(small.train_y), len(small.test_y)) == (100, 30)
    assert small.mean == data.mean and small.classes == data.classes
    assert torch.equal(small.train_x, data.subset(100, 30, seed=1).train_x)
    assert not torch.equal(small.train_y, data.subset(100, 30, seed=2).train_y)
    only_train = data.subset(50, None)
    assert len(only_train.test_y) == len(data.test_y)
    assert len(data.subset(10**6, 5).train_y) == len(data.train_y)  # "at most n"
    with pytest.raises(ValueError, match="n_train"):
        data.subset(-1)


def test_validation_catches_bad_tensors():
    x, y = torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0, 1])
    good = dict(name="t", train_x=x, train_y=y, test_x=x, test_y=y, classes=["a", "b"], mean=(0.5,), std=(0.5,),
                augment=False)
    ArrayDataset(**good)
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset(**{**good, "train_x": x.float()})
    with pytest.raises(ValueError, match="labels outside"):
        ArrayDataset(**{**good, "test_y": torch.tensor([0, 1, 2, 0])})
    with pytest.raises(ValueError, match="one value per channel"):
        ArrayDataset(**{**good, "mean": (0.5, 0.5)})
