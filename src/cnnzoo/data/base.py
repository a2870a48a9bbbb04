"""What every data set hands to the engine: splits, the bundle, the one-line DataError.

Two kinds of split exist:

* :class:`TensorSplit`: a data set that fits in memory, held as ``uint8`` images ``(N, C, H, W)``
  and ``int64`` labels; :func:`cnnzoo.data.make_loader` augments it in whole batches on the
  training device (:mod:`cnnzoo.data.pipeline`).
* :class:`FolderSplit`: a list of ``(image file, label)`` pairs decoded by DataLoader workers
  (:mod:`cnnzoo.data.folders`).

A :class:`DataBundle` groups the training split, the validation split carved from the training
set (``val_fraction``, seeded) and the official test split with the class names and the
per-channel mean and standard deviation used for normalisation.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from cnnzoo.data.errors import DataError  # noqa: F401 - re-exported: defined torch-free in cnnzoo.data.errors

#: where Debian's ``dataset-*`` packages install data sets (looked at after ``data_dir`` and
#: ``$CNNZOO_DATA_DIR``); a module attribute so that tests can point it elsewhere
SYSTEM_DATA_DIRS: list[Path] = [Path("/usr/share/datasets")]

#: environment variable naming a directory that holds one sub-directory per data set
DATA_DIR_ENV = "CNNZOO_DATA_DIR"


def cache_dir(name: str) -> Path:
    """Where downloads go when no ``data_dir`` is given: ``~/.cache/cnnzoo/NAME`` (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cnnzoo" / name


def candidate_dirs(name: str, data_dir: str | os.PathLike | None, subdirs: Sequence[str] = ()) -> list[Path]:
    """The directories to search for data set ``name``, in order of preference.

    ``data_dir`` (itself, then ``data_dir/NAME``), ``$CNNZOO_DATA_DIR/NAME``, the system location
    ``/usr/share/datasets/NAME`` and the download cache ``~/.cache/cnnzoo/NAME``; each followed by
    the ``subdirs`` that torchvision's downloads create inside a root (e.g. ``FashionMNIST/raw``).
    """
    roots: list[Path] = []
    if data_dir is not None:
        roots += [Path(data_dir).expanduser(), Path(data_dir).expanduser() / name]
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        roots.append(Path(env).expanduser() / name)
    roots += [Path(d) / name for d in SYSTEM_DATA_DIRS]
    roots.append(cache_dir(name))
    out: list[Path] = []
    for root in roots:
        for d in [root, *(root / s for s in subdirs)]:
            if d not in out:
                out.append(d)
    return out


def describe_places(dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in dirs)


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


@dataclass
class TensorSplit:
    """An in-memory split: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        return (int(self.images.shape[2]), int(self.images.shape[3]))

    @property
    def in_chans(self) -> int:
        return int(self.images.shape[1])

    def subset(self, indices: torch.Tensor) -> "TensorSplit":
        return TensorSplit(self.images[indices], self.labels[indices], self.classes)


@dataclass
class FolderSplit:
    """A split of image files decoded on the fly: ``samples`` is a list of ``(path, label)``.

    ``in_chans`` is 3 (images are converted to RGB) or 1 (to grayscale); ``skip_bad_images``
    (set by ``load_dataset(..., skip_bad_images=True)``) makes loaders skip unreadable files.
    """

    samples: list[tuple[str, int]]
    classes: list[str]
    in_chans: int = 3
    root: str | None = None
    skip_bad_images: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def subset(self, indices: torch.Tensor) -> "FolderSplit":
        return FolderSplit([self.samples[int(i)] for i in indices], self.classes, self.in_chans, self.root,
                           self.skip_bad_images)  # fmt: skip


Split = TensorSplit | FolderSplit


@dataclass
class DataBundle:
    """A loaded data set: its splits, class names, channels, stored size and normalisation stats.

    ``image_size`` is ``(H, W)`` as stored for in-memory data sets; for image folders, whose files
    vary in size, it is the size images are cropped to by default (224 x 224).  ``mean`` and ``std``
    are per channel in [0, 1] units (computed on the training split for in-memory data sets, the
    usual ImageNet values for photographs).  ``default_augment`` is the augmentation suited to the
    data set (e.g. no horizontal flip for digits), to be passed to :func:`make_loader`.
    """

    name: str
    classes: list[str]
    in_chans: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: Split
    val: Split | None
    test: Split | None
    default_augment: dict = field(default_factory=dict)
    #: where the files were found (None for synthetic data)
    source: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{k}={len(s) if s is not None else None}"
            for k, s in (("train", self.train), ("val", self.val), ("test", self.test))
        )
        return (
            f"DataBundle({self.name!r}, {self.num_classes} classes, {self.in_chans}x{self.image_size[0]}x"
            f"{self.image_size[1]}, {sizes})"
        )


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from integers (e.g. seed, epoch), stable across runs and platforms."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


@contextlib.contextmanager
def cpu_threads(n: int = 1):
    """Run small, memory-bound tensor work with ``n`` intra-op threads, then restore the setting.

    Measured on the 2-core development machine under load: an element-wise op on a 128x1x32x32
    batch takes 0.15 ms on one thread and 4.7 ms on two (the threads' synchronisation dominates),
    so the CPU batch pipeline and the loading steps run single-threaded.
    """
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 ``(N, C, H, W)`` images, in [0, 1] units."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float32)
        total += x.sum(dim=(0, 2, 3), dtype=torch.float64)
        total_sq += (x * x).sum(dim=(0, 2, 3), dtype=torch.float64)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    if count == 0:
        return (0.5,) * c, (0.5,) * c
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(float(m) / 255 for m in mean), tuple(max(float(s) / 255, 1e-3) for s in std)


def split_train_val(
    n: int, val_fraction: float, seed: int, labels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random ``(train_indices, val_indices)`` of ``range(n)``; ``val`` gets ``round(n * val_fraction)``.

    With ``labels`` the split is stratified: every class gives the same fraction to validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    g = torch.Generator().manual_seed(seed_for(seed, 0x5A11))
    if labels is None:
        perm = torch.randperm(n, generator=g)
        n_val = int(round(n * val_fraction))
        return perm[n_val:], perm[:n_val]
    # Stratified: shuffle each class, give the k-th of a class's m samples the key (k + u) / m
    # (u uniform in [0, 1)), sort by key and cut: every class is spread evenly along the order, so
    # any prefix holds the classes in proportion, and the validation size is exact.
    n_val = int(round(n * val_fraction))
    key = torch.empty(n, dtype=torch.float64)
    perm = torch.randperm(n, generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    shuffled = labels[perm]
    for c in torch.unique(labels):
        members = perm[shuffled == c]
        m = len(members)
        key[members] = (torch.arange(m, dtype=torch.float64) + u[members]) / m
    order = torch.argsort(key, stable=True)
    val, train = order[:n_val], order[n_val:]
    # shuffle the training part so that a later ``limit`` takes a random subset
    return train[torch.randperm(len(train), generator=g)], val


def limited(indices: torch.Tensor, limit: int | None, seed: int, salt: int) -> torch.Tensor:
    """At most ``limit`` of ``indices``: a seeded random subset, kept in the original order."""
    if limit is None or limit >= len(indices):
        return indices
    if limit < 0:
        raise DataError(f"a limit must be >= 0, got {limit}")
    g = torch.Generator().manual_seed(seed_for(seed, salt))
    pick = torch.randperm(len(indices), generator=g)[:limit].sort().values
    return indices[pick]


def finish_bundle(
    name: str,
    train_full: Split,
    test: Split | None,
    *,
    val_fraction: float,
    seed: int,
    limit_train: int | None,
    limit_val: int | None,
    limit_test: int | None,
    image_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    default_augment: dict | None = None,
    source: str | None = None,
    val: Split | None = None,
) -> DataBundle:
    """Carve the validation split (unless ``val`` is given), apply the limits, compute the stats."""
    if val is None:
        train_idx, val_idx = split_train_val(len(train_full), val_fraction, seed, train_full.labels)
    else:
        train_idx, val_idx = torch.arange(len(train_full)), None
    train_idx = limited(train_idx, limit_train, seed, 1)
    if val is None:
        val = train_full.subset(limited(val_idx, limit_val, seed, 2)) if len(val_idx) else None
    else:
        val = val.subset(limited(torch.arange(len(val)), limit_val, seed, 2))
    train = train_full.subset(train_idx)
    if test is not None:
        test = test.subset(limited(torch.arange(len(test)), limit_test, seed, 3))
    if len(train) == 0:
        raise DataError(f"{name}: the training split is empty (limit_train={limit_train}, val_fraction={val_fraction})")
    if mean is None or std is None:
        assert isinstance(train, TensorSplit)
        mean, std = channel_stats(train.images)
    if image_size is None:
        assert isinstance(train, TensorSplit)
        image_size = train.image_size
    return DataBundle(
        name=name,
        classes=list(train_full.classes),
        in_chans=train_full.in_chans,
        image_size=tuple(image_size),
        mean=tuple(mean),
        std=tuple(std),
        train=train,
        val=val,
        test=test,
        default_augment=dict(default_augment or {}),
        source=source,
    )
