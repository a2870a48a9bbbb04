"""The whole-batch pipeline: augmentation correctness, size fitting, sharding, determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnzoo.data import TensorSplit, make_loader
from cnnzoo.errors import ConfigError

MEAN, STD = (0.25,), (0.5,)


def id_split(n=24, c=1, h=8, w=8, seed=0) -> TensorSplit:
    """Random uint8 images whose label is their index, so every output can be traced back."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)
    return TensorSplit(images, torch.arange(n), [str(i) for i in range(n)])


def normalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x.float() / 255 - m) / s


def close(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise equality up to float rounding of the normalisation."""
    return (a - b).abs() <= 1e-5


def collect(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def test_eval_loader_is_plain_normalisation_in_order():
    split = id_split(n=10)
    loader = make_loader(split, batch_size=4, train=False, mean=MEAN, std=STD)
    assert len(loader) == 3
    x, y = collect(loader)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(y, torch.arange(10))
    torch.testing.assert_close(x, normalise(split.images), rtol=0, atol=1e-6)


def test_normalisation_gives_zero_mean_unit_std():
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(64, 3, 6, 6, generator=g) * torch.tensor([80.0, 160.0, 255.0]).view(1, 3, 1, 1)).to(
        torch.uint8
    )
    split = TensorSplit(images, torch.zeros(64), ["a"])
    from cnnzoo.data.base import channel_stats

    mean, std = channel_stats(images)
    x, _ = collect(make_loader(split, batch_size=16, train=False, mean=mean, std=std))
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), rtol=0, atol=1e-4)
    torch.testing.assert_close(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), rtol=0, atol=1e-4)


def test_pad_to_input_size_centres_the_image():
    """28x28 -> 32x32 pads 2 pixels of background on every side (LeCun et al. 1998, section II.A)."""
    split = id_split(n=3, h=28, w=28)
    x, _ = collect(make_loader(split, batch_size=3, train=False, input_size=(32, 32), mean=MEAN, std=STD))
    assert x.shape == (3, 1, 32, 32)
    torch.testing.assert_close(x[:, :, 2:30, 2:30], normalise(split.images), rtol=0, atol=1e-6)
    border = x.clone()
    border[:, :, 2:30, 2:30] = float("nan")
    background = (0 - MEAN[0]) / STD[0]
    vals = border[~border.isnan()]
    assert vals.numel() == 3 * (32 * 32 - 28 * 28) and torch.all(vals == background)


def test_bilinear_resize_for_large_factors_and_forced_modes():
    split = id_split(n=2, h=8, w=8)
    x, _ = collect(make_loader(split, batch_size=2, train=False, input_size=(20, 20), mean=MEAN, std=STD))
    want = F.interpolate(split.images.float(), size=(20, 20), mode="bilinear", antialias=True).round().clamp(0, 255)
    torch.testing.assert_close(x, normalise(want), rtol=0, atol=1e-5)
    x, _ = collect(
        make_loader(split, batch_size=2, train=False, input_size=(9, 9), mean=MEAN, std=STD, resize="bilinear")
    )
    assert x.shape == (2, 1, 9, 9)
    with pytest.raises(ConfigError, match="cannot pad 8x8 images to a smaller 6x6"):
        make_loader(split, batch_size=2, train=False, input_size=(6, 6), resize="pad")


def test_flip_really_flips():
    split = id_split(n=64)
    x, y = collect(make_loader(split, batch_size=16, train=True, augment={"flip": True}, mean=MEAN, std=STD, seed=5))
    plain = normalise(split.images)[y]
    same = close(x, plain).flatten(1).all(1)
    mirrored = close(x, plain.flip(3)).flatten(1).all(1)
    assert torch.all(same | mirrored)
    assert 16 <= int(mirrored.sum()) <= 48  # about half, and both kinds occur


def test_crop_with_padding_shifts():
    p = 2
    split = id_split(n=48)
    x, y = collect(
        make_loader(split, batch_size=16, train=True, augment={"crop_padding": p}, mean=MEAN, std=STD, seed=2)
    )
    padded = F.pad(normalise(split.images), (p, p, p, p), value=(0 - MEAN[0]) / STD[0])[y]
    shifts = []
    for i in range(len(y)):
        found = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if close(x[i], padded[i, :, dy : dy + 8, dx : dx + 8]).all()
        ]
        assert found, f"sample {i} is not a shifted crop of its padded image"
        shifts.append(found[0])
    assert len(set(shifts)) >= 8  # many different offsets occur, not just the centre


def test_random_erasing_blanks_one_rectangle():
    split = id_split(n=32, h=16, w=16)
    plain_loader = make_loader(split, batch_size=8, train=True, augment={}, mean=MEAN, std=STD, seed=0)
    erase_loader = make_loader(
        split, batch_size=8, train=True, augment={"random_erasing": 1.0}, mean=MEAN, std=STD, seed=0
    )
    x, y = collect(erase_loader)
    plain = normalise(split.images)[y]
    for i in range(len(y)):
        changed = ~close(x[i, 0], plain[i, 0])
        rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
        assert changed.any()
        box = x[i, 0, rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        assert torch.all(box == 0)  # erased to the data set mean (0 after normalisation)
        outside = torch.ones_like(changed)
        outside[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
        assert close(x[i, 0][outside], plain[i, 0][outside]).all()
        assert box.numel() <= 0.5 * 256
    # the unaugmented loader walks the same order
    assert torch.equal(collect(plain_loader)[1], y)


def test_grayscale_to_three_channels():
    split = id_split(n=4)
    x, _ = collect(make_loader(split, batch_size=4, train=False, mean=MEAN, std=STD, out_chans=3))
    assert x.shape == (4, 3, 8, 8) and torch.equal(x[:, 0], x[:, 2])


def test_determinism_per_seed_and_epoch():
    split = id_split(n=40)
    aug = {"crop_padding": 2, "flip": True, "random_erasing": 0.5}
    a = make_loader(split, batch_size=8, train=True, augment=aug, seed=7)
    b = make_loader(split, batch_size=8, train=True, augment=aug, seed=7)
    xa, ya = collect(a)
    xb, yb = collect(b)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    a.set_epoch(1)
    x1, y1 = collect(a)
    assert not torch.equal(y1, ya) and sorted(y1.tolist()) == list(range(40))
    a.set_epoch(0)
    assert torch.equal(collect(a)[0], xa)
    c = make_loader(split, batch_size=8, train=True, augment=aug, seed=8)
    assert not torch.equal(collect(c)[1], ya)


def test_two_ranks_cover_the_data_disjointly():
    split = id_split(n=40)
    ranks = [make_loader(split, batch_size=6, train=True, rank=r, world_size=2, seed=3) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4  # 20 samples per rank: 6, 6, 6, 2
    ids = [collect(r)[1] for r in ranks]
    assert set(ids[0].tolist()).isdisjoint(ids[1].tolist())
    assert sorted(torch.cat(ids).tolist()) == list(range(40))


def test_uneven_shards_pad_training_and_split_evaluation_evenly():
    split = id_split(n=41)
    train = [make_loader(split, batch_size=8, train=True, rank=r, world_size=2) for r in range(2)]
    assert len(train[0]) == len(train[1]) == 3
    ids = torch.cat([collect(t)[1] for t in train])
    assert len(ids) == 42 and set(ids.tolist()) == set(range(41))  # one sample repeated to even out
    ev = [make_loader(split, batch_size=8, train=False, rank=r, world_size=2) for r in range(2)]
    assert len(ev[0]) == len(ev[1])
    ids = torch.cat([collect(e)[1] for e in ev])
    assert sorted(ids.tolist()) == list(range(41))  # every sample evaluated exactly once
    dropped = make_loader(split, batch_size=8, train=True, rank=0, world_size=2, drop_last=True)
    assert len(dropped) == 2 and all(len(y) == 8 for _, y in dropped)


def test_two_ranks_reproduce_one_process_with_the_global_batch():
    """Rank shards of batch k together are the single-process batch k, augmentation included."""
    split = id_split(n=48)
    aug = {"crop_padding": 2, "flip": True, "random_erasing": 0.5}
    single = make_loader(split, batch_size=8, train=True, augment=aug, seed=11)
    ranks = [make_loader(split, batch_size=4, train=True, augment=aug, seed=11, rank=r, world_size=2) for r in range(2)]
    for loader in (single, *ranks):
        loader.set_epoch(3)
    assert len(single) == len(ranks[0]) == len(ranks[1])
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks, strict=True):
        xr, yr = torch.cat([x0, x1]), torch.cat([y0, y1])
        assert sorted(y.tolist()) == sorted(yr.tolist())
        torch.testing.assert_close(x[y.argsort()], xr[yr.argsort()], rtol=0, atol=0)


def test_bad_options():
    split = id_split(n=4)
    with pytest.raises(ConfigError, match="unknown augmentation option"):
        make_loader(split, augment={"hflip": True})
    with pytest.raises(ConfigError, match="rank"):
        make_loader(split, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="batch_size"):
        make_loader(split, batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu():
    split = id_split(n=32)
    aug = {"crop_padding": 2, "flip": True, "random_erasing": 0.5}
    xc, yc = collect(make_loader(split, batch_size=8, augment=aug, seed=1))
    xg, yg = collect(make_loader(split, batch_size=8, augment=aug, seed=1, device="cuda"))
    assert xg.is_cuda and torch.equal(yc, yg.cpu())
    torch.testing.assert_close(xc, xg.cpu(), rtol=0, atol=1e-6)
