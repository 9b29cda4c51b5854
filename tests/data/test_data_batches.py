"""DeviceBatches: coverage, normalisation, augmentation, epochs and sharding."""
from __future__ import annotations

import pytest
import torch

from spiketandem.data import DeviceBatches

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def make_images(n: int, size: int = 6, channels: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 images; the label of sample i is i, so batches reveal which samples they hold."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator)
    return x, torch.arange(n)


def normalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Independent reference: (x / 255 - mean) / std."""
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1) for v in (mean, std))
    return (x.double() / 255 - mean) / std


def batches(x, y, batch_size, **kwargs) -> DeviceBatches:
    options = dict(mean=MEAN, std=STD, shuffle=True, augment=False)
    options.update(kwargs)
    return DeviceBatches(x, y, batch_size, **options)


def collect(loader: DeviceBatches) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys), [len(y) for y in ys]


def test_every_sample_once_and_normalised():
    x, y = make_images(37)
    loader = batches(x, y, 8)
    got_x, got_y, sizes = collect(loader)
    assert len(loader) == 5 and sizes == [8, 8, 8, 8, 5]
    assert sorted(got_y.tolist()) == list(range(37)) and got_y.tolist() != list(range(37))
    assert got_x.dtype == torch.float32 and got_y.dtype == torch.int64
    torch.testing.assert_close(got_x.double(), normalise(x[got_y]), atol=1e-5, rtol=0)


def test_without_shuffle_the_order_is_kept():
    x, y = make_images(10)
    _, got_y, _ = collect(batches(x, y, 4, shuffle=False))
    assert got_y.tolist() == list(range(10))


def test_drop_last_drops_the_partial_batch():
    x, y = make_images(37)
    loader = batches(x, y, 8, drop_last=True)
    assert len(loader) == 4 and collect(loader)[2] == [8, 8, 8, 8]


def reference_views(image: torch.Tensor, pad: int) -> list[torch.Tensor]:
    """Every crop (zero padding ``pad``) of ``image``, flipped and not, computed one by one."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad:pad + h, pad:pad + w] = image
    views = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            views += [crop, crop.flip(-1)]
    return views


@pytest.mark.parametrize("pad", [0, 2])
def test_crop_and_flip_gives_a_shifted_or_flipped_original(pad):
    x, y = make_images(64, size=5)
    got_x, got_y, _ = collect(batches(x, y, 16, augment=True, pad=pad))
    expected = normalise(x)
    flipped = shifted = 0
    for image, label in zip(got_x.double(), got_y):
        views = [normalise(v[None])[0] for v in reference_views(x[label], pad)]
        matches = [i for i, v in enumerate(views) if torch.allclose(image, v, atol=1e-5)]
        assert matches, f"sample {int(label)} is no crop/flip of its original"
        flipped += not torch.allclose(image, expected[label], atol=1e-5) and matches[0] % 2 == 1
        shifted += matches[0] // 2 != (pad * (2 * pad + 1) + pad)
    assert flipped > 10  # about half are flipped
    if pad:
        assert shifted > 30  # most are moved


def test_augmentation_off_flip_off():
    x, y = make_images(20)
    got_x, got_y, _ = collect(batches(x, y, 8, augment=True, pad=0, flip=False))
    torch.testing.assert_close(got_x.double(), normalise(x[got_y]), atol=1e-5, rtol=0)


def test_set_epoch_changes_order_deterministically():
    x, y = make_images(50)
    loader = batches(x, y, 10, augment=True, seed=3)
    first_x, first_y, _ = collect(loader)
    again_x, again_y, _ = collect(loader)
    assert torch.equal(first_y, again_y) and torch.equal(first_x, again_x)  # same epoch, same batches
    loader.set_epoch(1)
    second_y = collect(loader)[1]
    assert not torch.equal(first_y, second_y)
    fresh = batches(x, y, 10, augment=True, seed=3)
    fresh.set_epoch(1)
    assert torch.equal(collect(fresh)[1], second_y)
    other_seed = batches(x, y, 10, augment=True, seed=4)
    assert not torch.equal(collect(other_seed)[1], first_y)


@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks_split_the_single_process_batches(drop_last):
    x, y = make_images(46)
    single = batches(x, y, 10, augment=True, seed=7, drop_last=drop_last)
    ranks = [batches(x, y, 5, augment=True, seed=7, rank=r, world_size=2, drop_last=drop_last) for r in range(2)]
    for loader in (single, *ranks):
        loader.set_epoch(2)
    assert len(ranks[0]) == len(ranks[1]) == len(single) == (4 if drop_last else 5)
    for (sx, sy), (ax, ay), (bx, by) in zip(single, *ranks):
        assert len(ay) == len(by)
        assert torch.equal(torch.cat([ay, by]), sy)
        assert torch.equal(torch.cat([ax, bx]), sx)  # augmentation included


def test_uneven_shards_are_padded_by_repeating():
    x, y = make_images(47)
    ranks = [batches(x, y, 4, rank=r, world_size=3) for r in range(3)]
    shards = [collect(loader) for loader in ranks]
    assert all(s[2] == shards[0][2] for s in shards)  # same batch count and sizes on every rank
    assert all(loader.num_samples == 16 for loader in ranks)
    union = torch.cat([s[1] for s in shards])
    assert set(union.tolist()) == set(range(47)) and len(union) == 48


def test_images_stay_uint8_on_the_device():
    x, y = make_images(8)
    loader = batches(x, y, 4)
    assert loader.x.dtype == torch.uint8 and loader.x.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x, y = make_images(30)
    cpu = collect(batches(x, y, 8, augment=True, seed=1))
    gpu = collect(batches(x, y, 8, augment=True, seed=1, device="cuda"))
    assert gpu[0].device.type == "cuda"
    assert torch.equal(cpu[1], gpu[1].cpu())
    torch.testing.assert_close(cpu[0], gpu[0].cpu())


def test_empty_and_bad_arguments():
    x, y = make_images(0)
    assert len(batches(x, y, 4)) == 0 and list(batches(x, y, 4)) == []
    x, y = make_images(4)
    with pytest.raises(ValueError, match="uint8"):
        batches(x.float(), y, 2)
    with pytest.raises(ValueError, match="one per channel"):
        batches(x, y, 2, mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match="rank"):
        batches(x, y, 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        batches(x, y, 0)
