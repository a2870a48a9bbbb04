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

The pieces both loaders share live in modules of their own, so that the dependencies run one way
(``pipeline -> folders -> epochs -> transform``): :mod:`cnnzoo.data.transform`
(:class:`BatchTransform`: size fitting, crop, flip, erasing, normalisation) and
:mod:`cnnzoo.data.epochs` (the epoch plan and rank sharding).  They are re-exported here.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from cnnzoo.data.base import DataError, FolderSplit, TensorSplit, cpu_threads
from cnnzoo.data.epochs import _check_rank, _EpochPlanner, plan_batches  # noqa: F401 - re-exported
from cnnzoo.data.folders import FolderLoader
from cnnzoo.data.transform import AugmentParams, BatchTransform, _pair  # noqa: F401 - re-exported
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
        return FolderLoader(split, batch_size, train=train, device=device, input_size=input_size, augment=train_aug,
                            mean=mean, std=std, rank=rank, world_size=world_size, seed=seed, shuffle=shuffle,
                            drop_last=drop_last, out_chans=out_chans, num_workers=num_workers,
                            skip_bad_images=skip_bad_images or split.skip_bad_images)  # fmt: skip
    if split is None:
        raise DataError("this data set has no such split (val_fraction=0 gives no validation split)")
    raise TypeError(f"make_loader needs a TensorSplit or FolderSplit, got {type(split).__name__}")
