"""The fast input pipeline: whole-batch augmentation of uint8 tensors on the training device.

For a data set held in memory (:class:`~cnnzoo.data.base.TensorSplit`) an epoch is planned up
front on the CPU from ``(seed, epoch)`` alone: a permutation of the samples and, for every
position in it, the augmentation parameters (crop offset, flip, erasing box).  Each batch is then
one gather on the uint8 images that does the padding, the random crop and the flip at once,
followed by the conversion to float, the normalisation and the erasing, all on ``device``; no
per-sample Python or PIL work.

Because a sample's augmentation depends only on its position in the epoch's permutation, the
batches that ``world_size`` ranks see together are exactly the batches of one process with a
``world_size`` times larger batch (DistributedSampler's interleaved sharding): a 2-process run and
a 1-process run with the same global batch get the same images.

Fitting the network's input size (``input_size``): a stored image smaller than the input by at
most 25% per side is *padded* with background (zeros) and centred, as LeCun et al. (1998, section
II.A) did to put the 28x28 MNIST digits in LeNet-5's 32x32 field; larger differences (e.g. CIFAR's
32x32 into a 224x224 network) and shrinking use bilinear *resizing* (``resize="auto"``; force one
with ``resize="pad"`` or ``resize="bilinear"``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

from cnnzoo.data.base import DataError, FolderSplit, TensorSplit, cpu_threads, seed_for
from cnnzoo.errors import ConfigError

AUGMENT_KEYS = {
    "crop_padding": 0,  # random crop of the input size from the image padded by this many pixels
    "flip": False,  # random horizontal flip with probability 1/2
    "random_erasing": 0.0,  # probability of erasing a random rectangle (Zhong et al. 2017)
    "erasing_scale": (0.02, 0.33),  # erased area as a fraction of the image
    "erasing_ratio": (0.3, 3.3),  # aspect ratio range of the erased rectangle
    "crop_scale": (0.08, 1.0),  # image folders: random-resized-crop area range (Szegedy et al. 2015)
    "crop_ratio": (3 / 4, 4 / 3),  # image folders: random-resized-crop aspect ratio range
}


def resolve_augment(augment: dict | None, train: bool) -> dict:
    """Fill in defaults; reject unknown keys; no augmentation at all when ``train`` is False."""
    augment = dict(augment or {})
    unknown = set(augment) - set(AUGMENT_KEYS)
    if unknown:
        raise ConfigError(f"unknown augmentation option(s) {sorted(unknown)}; known: {sorted(AUGMENT_KEYS)}")
    out = {**AUGMENT_KEYS, **augment}
    if not train:
        out.update(crop_padding=0, flip=False, random_erasing=0.0)
    if int(out["crop_padding"]) < 0 or not 0.0 <= float(out["random_erasing"]) <= 1.0:
        raise ConfigError(f"crop_padding must be >= 0 and random_erasing in [0, 1], got {augment}")
    return out


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(s) for s in size)
    return (h, w)


@dataclass
class AugmentParams:
    """Per-sample augmentation parameters (CPU or device tensors of one length)."""

    dy: torch.Tensor  # crop offset in the padded image (int64)
    dx: torch.Tensor
    flip: torch.Tensor  # bool
    erase: torch.Tensor  # int64 (n, 4): y0, y1, x0, x1 (empty box: no erasing)

    def __getitem__(self, index) -> "AugmentParams":
        return AugmentParams(self.dy[index], self.dx[index], self.flip[index], self.erase[index])

    def to(self, device) -> "AugmentParams":
        return AugmentParams(*(t.to(device, non_blocking=True) for t in (self.dy, self.dx, self.flip, self.erase)))


class BatchTransform:
    """uint8 ``(B, C, H, W)`` images -> float32 normalised ``(B, C', h, w)`` with batch augmentation.

    ``src_size`` is the stored ``(H, W)``; ``input_size`` the network's; ``out_chans`` repeats a
    single channel (grayscale into a 3-channel net).  With ``crop_padding`` the output is a crop of
    the input-size image padded by that many pixels (zeros); ``flip`` mirrors left-right; erasing
    sets a rectangle to 0 after normalisation, i.e. to the data set's mean (torchvision's default).
    """

    def __init__(
        self,
        src_size: Sequence[int],
        input_size: Sequence[int] | int | None,
        mean: Sequence[float],
        std: Sequence[float],
        augment: dict,
        *,
        in_chans: int,
        out_chans: int | None = None,
        resize: str = "auto",
        device: torch.device | str = "cpu",
    ) -> None:
        self.src_size = _pair(src_size)
        self.input_size = _pair(input_size) if input_size is not None else self.src_size
        self.augment = augment
        self.in_chans = in_chans
        self.out_chans = out_chans or in_chans
        if self.out_chans != in_chans and in_chans != 1:
            raise ConfigError(f"cannot turn {in_chans}-channel images into {self.out_chans} channels")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ConfigError(f"mean/std need {in_chans} values, got {len(mean)}/{len(std)}")
        self.device = torch.device(device)
        self.mode = self._resize_mode(resize)
        self.pad = int(augment["crop_padding"])
        std_t = torch.tensor(std, dtype=torch.float32)
        mean_t = torch.tensor(mean, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(self.device)
        self.shift = (-mean_t / std_t).view(1, -1, 1, 1).to(self.device)

    def _resize_mode(self, resize: str) -> str:
        (sh, sw), (th, tw) = self.src_size, self.input_size
        if (sh, sw) == (th, tw):
            return "none"
        if resize not in ("auto", "pad", "bilinear"):
            raise ConfigError(f"resize must be 'auto', 'pad' or 'bilinear', got {resize!r}")
        if resize == "pad" and (th < sh or tw < sw):
            raise ConfigError(f"cannot pad {sh}x{sw} images to a smaller {th}x{tw} input; use resize='bilinear'")
        if resize == "auto":
            close = sh <= th <= 1.25 * sh and sw <= tw <= 1.25 * sw
            return "pad" if close else "bilinear"
        return resize

    # -- parameters -------------------------------------------------------------------------

    @property
    def random(self) -> bool:
        return self.pad > 0 or bool(self.augment["flip"]) or float(self.augment["random_erasing"]) > 0

    def draw(self, n: int, generator: torch.Generator) -> AugmentParams:
        """Draw the parameters of ``n`` samples on the CPU (always the same count of random numbers)."""
        h, w = self.input_size
        g = generator
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=g)
        flip = torch.rand(n, generator=g) < (0.5 if self.augment["flip"] else 0.0)
        p_erase = float(self.augment["random_erasing"])
        do_erase = torch.rand(n, generator=g) < p_erase
        lo, hi = self.augment["erasing_scale"]
        area = (torch.rand(n, generator=g) * (hi - lo) + lo) * (h * w)
        rlo, rhi = (math.log(r) for r in self.augment["erasing_ratio"])
        ratio = torch.exp(torch.rand(n, generator=g) * (rhi - rlo) + rlo)
        eh = torch.sqrt(area * ratio).round().long().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().long().clamp(1, w)
        y0 = (torch.rand(n, generator=g) * (h - eh + 1)).long()
        x0 = (torch.rand(n, generator=g) * (w - ew + 1)).long()
        eh, ew = eh * do_erase, ew * do_erase
        erase = torch.stack([y0, y0 + eh, x0, x0 + ew], dim=1)
        return AugmentParams(dy, dx, flip, erase)

    # -- the transform ----------------------------------------------------------------------

    def __call__(self, images: torch.Tensor, params: AugmentParams | None = None) -> torch.Tensor:
        """Transform a batch already on ``device``; ``params`` (on ``device``) None = no augmentation."""
        if images.dim() != 4 or images.shape[1] != self.in_chans:
            raise ValueError(f"expected (B, {self.in_chans}, H, W) images, got {tuple(images.shape)}")
        th, tw = self.input_size
        x = images
        if self.mode == "bilinear":
            x = F.interpolate(x.float(), size=(th, tw), mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
            extra_h = extra_w = (0, 0)
        elif self.mode == "pad":
            dh, dw = th - x.shape[2], tw - x.shape[3]
            extra_h, extra_w = (dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2)
        else:
            extra_h = extra_w = (0, 0)
        p = self.pad
        if params is not None and (p > 0 or bool(self.augment["flip"])):
            x = self._crop_flip(x, params, p, extra_h, extra_w)
        elif extra_h != (0, 0) or extra_w != (0, 0):
            x = F.pad(x, (extra_w[0], extra_w[1], extra_h[0], extra_h[1]))
        x = torch.addcmul(self.shift, x.to(torch.float32), self.scale)
        if params is not None and float(self.augment["random_erasing"]) > 0:
            rows = torch.arange(th, device=x.device).view(1, 1, th, 1)
            cols = torch.arange(tw, device=x.device).view(1, 1, 1, tw)
            e = params.erase.view(-1, 4, 1, 1, 1)
            mask = ((rows >= e[:, 0]) & (rows < e[:, 1])) & ((cols >= e[:, 2]) & (cols < e[:, 3]))
            x.masked_fill_(mask, 0.0)
        if self.out_chans != self.in_chans:
            x = x.expand(-1, self.out_chans, -1, -1)
        return x.contiguous()

    def _crop_flip(self, x, params: AugmentParams, p: int, extra_h, extra_w) -> torch.Tensor:
        """One gather: pad by ``p`` (plus centring), crop at ``(dy, dx)``, mirror where ``flip``."""
        b, c = x.shape[:2]
        th, tw = self.input_size
        padded = F.pad(x, (p + extra_w[0], p + extra_w[1], p + extra_h[0], p + extra_h[1]))
        pw = padded.shape[3]
        dev = x.device
        rows = params.dy.view(b, 1) + torch.arange(th, device=dev).view(1, th)
        ar = torch.arange(tw, device=dev).view(1, tw)
        cols = params.dx.view(b, 1) + torch.where(params.flip.view(b, 1), tw - 1 - ar, ar)
        flat = (rows.view(b, th, 1) * pw + cols.view(b, 1, tw)).view(b, 1, th * tw)
        out = padded.flatten(2).gather(2, flat.expand(b, c, th * tw))
        return out.view(b, c, th, tw)


# --------------------------------------------------------------------------------------------
# sharding
# --------------------------------------------------------------------------------------------


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


def plan_batches(
    n: int, batch_size: int, rank: int, world_size: int, *, train: bool, drop_last: bool
) -> tuple[int, list[tuple[int, int]]]:
    """``(total_positions, [(start, stop), ...])`` of this rank's batches in its position list.

    Training: the epoch's positions are padded (wrapping around) to a multiple of ``world_size``;
    rank ``r`` takes positions ``r, r + W, r + 2W, ...`` (the same count on every rank), cut into
    batches of ``batch_size``.  Evaluation: no padding; with ``world_size > 1`` every rank cuts its
    ``n // W`` or ``n // W + 1`` samples into the same number of batches (sizes differ by at most
    one), so collective operations inside the loop cannot deadlock.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if train:
        total = math.ceil(n / world_size) * world_size if n else 0
        per_rank = total // world_size
        count = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
        return total, [(i * batch_size, min((i + 1) * batch_size, per_rank)) for i in range(count)]
    per_rank = len(range(rank, n, world_size))
    if world_size == 1:
        count = math.ceil(per_rank / batch_size)
        return n, [(i * batch_size, min((i + 1) * batch_size, per_rank)) for i in range(count)]
    count = math.ceil(math.ceil(n / world_size) / batch_size)
    bounds = [round(i * per_rank / count) for i in range(count + 1)] if count else [0]
    return n, list(zip(bounds[:-1], bounds[1:]))


class _EpochPlanner:
    """Shared epoch bookkeeping: permutation, padding, rank positions, augmentation parameters."""

    def __init__(self, n, batch_size, train, shuffle, rank, world_size, seed, drop_last, transform):
        _check_rank(rank, world_size)
        self.n, self.batch_size, self.train = n, batch_size, train
        self.shuffle = train if shuffle is None else shuffle
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.drop_last = drop_last
        self.transform = transform
        self.epoch = 0
        self.total, self.batches = plan_batches(n, batch_size, rank, world_size, train=train, drop_last=drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffle and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (counting the wrap-around padding when training)."""
        return self.batches[-1][1] if self.batches else 0

    def plan(self) -> tuple[torch.Tensor, AugmentParams | None]:
        """This rank's sample indices and their augmentation parameters (CPU) for the current epoch."""
        g = torch.Generator().manual_seed(seed_for(self.seed, self.epoch, 0xE90C))
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        params = self.transform.draw(self.total, g) if (self.train and self.transform.random) else None
        positions = torch.arange(self.rank, self.total, self.world_size)
        indices = order[positions % max(self.n, 1)] if self.n else positions
        return indices, (params[positions] if params is not None else None)


class TensorLoader(_EpochPlanner):
    """Batches of an in-memory split, augmented on ``device``; see :func:`make_loader`."""

    def __init__(self, split: TensorSplit, batch_size: int, *, train: bool, device, transform: BatchTransform,
                 rank: int, world_size: int, seed: int, shuffle: bool | None, drop_last: bool) -> None:  # fmt: skip
        super().__init__(len(split), batch_size, train, shuffle, rank, world_size, seed, drop_last, transform)
        self.dataset = split
        self.device = torch.device(device)
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        on_cpu = self.device.type == "cpu"
        with cpu_threads(1):
            indices, params = self.plan()
        indices = indices.to(self.device)
        if params is not None:
            params = params.to(self.device)
        for start, stop in self.batches:
            idx = indices[start:stop]
            with cpu_threads(1) if on_cpu else contextlib.nullcontext():
                images = self.images.index_select(0, idx)
                batch = self.transform(images, params[start:stop] if params is not None else None), self.labels[idx]
            yield batch


def make_loader(
    split,
    batch_size: int = 128,
    train: bool = True,
    device="cpu",
    input_size=None,
    augment: dict | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    *,
    shuffle: bool | None = None,
    drop_last: bool = False,
    resize: str = "auto",
    out_chans: int | None = None,
    num_workers: int | None = None,
    skip_bad_images: bool = False,
):
    """An iterable of ``(images, labels)`` batches: float32 normalised images and int64 labels on ``device``.

    ``batch_size`` is per rank.  ``train=True`` shuffles and augments (``augment`` keys:
    ``crop_padding``, ``flip``, ``random_erasing``, see :data:`AUGMENT_KEYS`); ``train=False``
    keeps the order and only fits the size and normalises.  ``input_size`` ``(H, W)``: the
    network's input; ``None`` keeps the stored size (224 x 224 for image folders).  ``mean`` and
    ``std`` default to 0.5.  ``rank``/``world_size`` shard the data for DistributedDataParallel
    (every rank gets the same number of batches); ``loader.set_epoch(e)`` reshuffles
    deterministically from ``(seed, e)``.  ``out_chans=3`` repeats grayscale into 3 channels.
    Image folders (:class:`FolderSplit`) are decoded by ``num_workers`` DataLoader workers (default:
    the CPU count, at most 8); an unreadable file raises a one-line :class:`DataError` naming it,
    or is skipped (with a warning) when ``skip_bad_images`` (here or given to ``load_dataset``).
    """
    train_aug = resolve_augment(augment, train)
    if isinstance(split, TensorSplit):
        c = split.in_chans
        mean = tuple(mean) if mean is not None else (0.5,) * c
        std = tuple(std) if std is not None else (0.5,) * c
        transform = BatchTransform(split.image_size, input_size, mean, std, train_aug, in_chans=c,
                                   out_chans=out_chans, resize=resize, device=device)  # fmt: skip
        return TensorLoader(split, batch_size, train=train, device=device, transform=transform, rank=rank,
                            world_size=world_size, seed=seed, shuffle=shuffle, drop_last=drop_last)  # fmt: skip
    if isinstance(split, FolderSplit):
        from cnnzoo.data.folders import FolderLoader

        return FolderLoader(split, batch_size, train=train, device=device, input_size=input_size, augment=train_aug,
                            mean=mean, std=std, rank=rank, world_size=world_size, seed=seed, shuffle=shuffle,
                            drop_last=drop_last, out_chans=out_chans, num_workers=num_workers,
                            skip_bad_images=skip_bad_images or split.skip_bad_images)  # fmt: skip
    if split is None:
        raise DataError("this data set has no such split (val_fraction=0 gives no validation split)")
    raise TypeError(f"make_loader needs a TensorSplit or FolderSplit, got {type(split).__name__}")
