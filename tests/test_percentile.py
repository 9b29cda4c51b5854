"""``percentile_of`` (nearest rank) against sorting, on both of its branches (top-k and kthvalue)."""
import pytest
import torch

from spiketandem.student import percentile_of


@pytest.mark.parametrize("percentile", [99.9, 99.0, 90.0, 50.0, 10.0, 100.0])
def test_percentile_is_the_nearest_rank_value(percentile):
    torch.manual_seed(0)
    values = torch.relu(torch.randn(10_007))
    k = max(1, round(percentile / 100 * values.numel()))      # nearest rank, 1-based
    expected = float(values.sort().values[k - 1])
    assert percentile_of(values, percentile) == (expected if expected > 0 else 1.0)


def test_hand_example():
    values = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0])[torch.randperm(5)]
    assert percentile_of(values, 100) == 5.0
    assert percentile_of(values, 80) == 4.0   # rank round(0.8 * 5) = 4
    assert percentile_of(values, 20) == 1.0
    assert percentile_of(torch.zeros(7), 99.9) == 1.0  # an all-zero layer gets scale 1, not 0


def test_large_tensors_take_the_prefiltered_path_exactly():
    """n >= 2^20: a bound from every 16th value prefilters; the result must still be the sorted value,
    also when the sample misleads (all large values off the sampled positions, or only on them)."""
    torch.manual_seed(1)
    n = (1 << 20) + 37
    cases = [torch.relu(torch.randn(n))]
    hidden = torch.zeros(n)
    hidden[torch.arange(n) % 16 != 0] = torch.rand(int((torch.arange(n) % 16 != 0).sum()))
    cases.append(hidden)                       # every sampled value is 0: the bound keeps everything
    only_sampled = torch.zeros(n)
    only_sampled[::16] = 1 + torch.rand(only_sampled[::16].numel())
    cases.append(only_sampled)                 # the sample holds all the large values
    for values in cases:
        for percentile in (99.9, 99.0, 95.0):
            k = round(percentile / 100 * n)
            expected = float(values.sort().values[k - 1])
            assert percentile_of(values, percentile) == (expected if expected > 0 else 1.0)
