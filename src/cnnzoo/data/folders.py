"""Image folders (``imagefolder:PATH``, ``imagenet:PATH``) decoded by DataLoader workers.

Layout: ``PATH/train/CLASS/*.jpg`` and ``PATH/val/CLASS/*.jpg`` (ImageNet's, after the usual
``valprep`` of the validation images into class folders), optionally ``PATH/test/CLASS/``.
Without ``test/``, the official ``val/`` folder is reported as the test split and the validation
split is carved from ``train/`` (``val_fraction``); with ``test/``, ``val/`` is the validation
split.  ``imagefolder:PATH`` also accepts ``PATH/CLASS/*.jpg`` alone (no test split).
Class names are the sorted folder names of ``train/``.

Workers decode each file with PIL and crop it to the input size: in training a random-resized
crop (area ``crop_scale`` = 8%-100% of the image, aspect ratio 3/4-4/3, Szegedy et al. 2015,
"Going deeper with convolutions", section 6); in evaluation the central 87.5% (the usual
"resize to 256, crop 224").  The crop is drawn from a per-sample seed fixed by ``(seed, epoch,
position)``, so it does not depend on the worker.  Flip, erasing and normalisation are then done
on the whole batch on the training device, as for in-memory data sets.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cnnzoo.data.base import IMAGENET_MEAN, IMAGENET_STD, DataError, FolderSplit, cpu_threads
from cnnzoo.data.epochs import _EpochPlanner
from cnnzoo.data.transform import BatchTransform, _pair

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".tif", ".tiff", ".webp")

#: fraction of the (shorter) side kept by the evaluation centre crop (224 of 256)
EVAL_CROP_FRACTION = 0.875


# --------------------------------------------------------------------------------------------
# scanning
# --------------------------------------------------------------------------------------------


def _class_dirs(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _files(directory: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(IMAGE_EXTENSIONS)]
    return out


def scan_folder(root: Path, classes: list[str] | None = None) -> FolderSplit:
    """``root/CLASS/**/image`` -> a :class:`FolderSplit`; ``classes`` fixes the class order."""
    found = _class_dirs(root)
    if classes is None:
        classes = found
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"{root} has class folders not in the training set: {', '.join(unknown[:5])}")
    samples = []
    for label, name in enumerate(classes):
        if (root / name).is_dir():
            samples += [(path, label) for path in _files(root / name)]
    return FolderSplit(samples, list(classes), 3, str(root))


def load_image_folders(kind: str, path: str) -> tuple[FolderSplit, FolderSplit | None, FolderSplit | None, str]:
    """``(train, val or None (carve from train), test or None, source)`` for an image-folder tree."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{kind}: directory {root} not found")
    has_train = (root / "train").is_dir()
    if kind == "imagenet" and not (has_train and (root / "val").is_dir()):
        raise DataError(
            f"imagenet: need {root / 'train'}/CLASS/*.JPEG and {root / 'val'}/CLASS/*.JPEG (val sorted into class folders)"
        )
    if has_train:
        train = scan_folder(root / "train")
        val = scan_folder(root / "val", train.classes) if (root / "val").is_dir() else None
        test = scan_folder(root / "test", train.classes) if (root / "test").is_dir() else None
        if test is None:
            val, test = None, val
    else:
        train, val, test = scan_folder(root), None, None
    if not train.classes:
        raise DataError(f"{kind}: no class folders in {root / 'train' if has_train else root}")
    if len(train) == 0:
        raise DataError(
            f"{kind}: no images ({', '.join(IMAGE_EXTENSIONS)}) under {root / 'train' if has_train else root}"
        )
    return train, val, test, str(root)


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


def open_image(path: str, in_chans: int = 3):
    """Open and decode ``path`` as RGB (or grayscale for ``in_chans == 1``); DataError if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("L" if in_chans == 1 else "RGB")
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds (OSError, SyntaxError, ValueError, ...)
        reason = (str(e).strip() or type(e).__name__).splitlines()[0]
        raise DataError(f"cannot read image {path}: {reason}") from None


def train_crop_box(width: int, height: int, out_hw: tuple[int, int], rng: random.Random, scale, ratio):
    """A random-resized-crop box ``(left, top, right, bottom)`` in the image (10 tries, then central)."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return (left, top, left + w, top + h)
    # fallback: the largest central crop with an aspect ratio in range
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, round(width / aspect)) if width / height <= aspect else (round(height * aspect), height)
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def eval_crop_box(width: int, height: int, out_hw: tuple[int, int]):
    """The central crop that "resize the shorter side to out/0.875, crop out" takes, in image coordinates."""
    oh, ow = out_hw
    scale = (min(oh, ow) / EVAL_CROP_FRACTION) / min(width, height)  # image -> resized
    cw, ch = min(width, ow / scale), min(height, oh / scale)
    left, top = (width - cw) / 2, (height - ch) / 2
    return (left, top, left + cw, top + ch)


def crop_to_tensor(img, box, out_hw: tuple[int, int]) -> torch.Tensor:
    """Crop ``box`` out of a PIL image, resize it to ``out_hw`` and return uint8 ``(C, H, W)``."""
    from PIL import Image

    oh, ow = out_hw
    out = img.resize((ow, oh), Image.BILINEAR, box=box, reducing_gap=None)
    arr = np.asarray(out, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def preprocess_image(image, in_chans: int = 3, input_size=(224, 224), mean=None, std=None) -> torch.Tensor:
    """One image file (or PIL image) -> a normalised ``(1, C, H, W)`` float batch, as evaluation sees it.

    For :mod:`cnnzoo.train`'s ``predict``: photographs get the evaluation centre crop; images already
    of a small stored size (e.g. a 28x28 digit for a 32x32 net) are fitted like the in-memory data.
    """
    from PIL import Image

    img = (
        open_image(image, in_chans)
        if not isinstance(image, Image.Image)
        else image.convert("L" if in_chans == 1 else "RGB")
    )
    out_hw = _pair(input_size)
    mean = tuple(mean) if mean is not None else (IMAGENET_MEAN if in_chans == 3 else (0.5,))
    std = tuple(std) if std is not None else (IMAGENET_STD if in_chans == 3 else (0.5,))
    arr = np.asarray(img, dtype=np.uint8)
    x = torch.from_numpy(arr.copy()).reshape(img.height, img.width, -1).permute(2, 0, 1).unsqueeze(0).contiguous()
    if max(img.width, img.height) <= 2 * max(out_hw):
        src = (img.height, img.width)  # small image: pad or resize as make_loader does
    else:
        x = crop_to_tensor(img, eval_crop_box(img.width, img.height, out_hw), out_hw).unsqueeze(0)
        src = out_hw
    transform = BatchTransform(src, out_hw, mean, std, {"crop_padding": 0, "flip": False, "random_erasing": 0.0},
                               in_chans=in_chans)  # fmt: skip
    return transform(x)


class _FolderDataset(Dataset):
    """Decodes one sample per key ``(index, position, seed)``; bad files come back as ``None``."""

    def __init__(self, split: FolderSplit, out_hw, train: bool, scale, ratio) -> None:
        self.split, self.out_hw, self.train = split, out_hw, train
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key):
        index, position, seed = key
        path, label = self.split.samples[index]
        try:
            img = open_image(path, self.split.in_chans)
        except DataError as e:
            return None, label, position, str(e)
        if self.train:
            box = train_crop_box(img.width, img.height, self.out_hw, random.Random(seed), self.scale, self.ratio)
        else:
            box = eval_crop_box(img.width, img.height, self.out_hw)
        return crop_to_tensor(img, box, self.out_hw), label, position, None


def _collate(items):
    good = [it for it in items if it[0] is not None]
    bad = [it[3] for it in items if it[0] is None]
    if good:
        images = torch.stack([it[0] for it in good])
    else:
        images = torch.empty(0, dtype=torch.uint8)
    labels = torch.tensor([it[1] for it in good], dtype=torch.int64)
    positions = torch.tensor([it[2] for it in good], dtype=torch.int64)
    return images, labels, positions, bad


class _BatchKeys(Sampler):
    """This rank's batches of ``(index, position, seed)`` keys, planned by the owning loader."""

    def __init__(self, loader: "FolderLoader") -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        indices, seeds = self.loader._keys
        for start, stop in self.loader.batches:
            yield [(int(indices[i]), i, int(seeds[i])) for i in range(start, stop)]


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


class FolderLoader(_EpochPlanner):
    """Batches of an image-folder split: workers decode and crop, the device flips and normalises."""

    def __init__(self, split: FolderSplit, batch_size: int, *, train: bool, device, input_size, augment: dict,
                 mean, std, rank: int, world_size: int, seed: int, shuffle, drop_last: bool, out_chans,
                 num_workers: int | None, skip_bad_images: bool) -> None:  # fmt: skip
        self.out_hw = _pair(input_size) if input_size is not None else (224, 224)
        c = split.in_chans
        mean = tuple(mean) if mean is not None else (IMAGENET_MEAN if c == 3 else (0.5,))
        std = tuple(std) if std is not None else (IMAGENET_STD if c == 3 else (0.5,))
        transform = BatchTransform(self.out_hw, self.out_hw, mean, std, augment, in_chans=c, out_chans=out_chans,
                                   device=device)  # fmt: skip
        super().__init__(len(split), batch_size, train, shuffle, rank, world_size, seed, drop_last, transform)
        self.dataset = split
        self.device = torch.device(device)
        self.skip_bad_images = skip_bad_images
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else int(num_workers)
        self._data = _FolderDataset(split, self.out_hw, train, augment["crop_scale"], augment["crop_ratio"])
        self._keys = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
        self._warned: set[str] = set()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        with cpu_threads(1):
            indices, params = self.plan()
            g = torch.Generator().manual_seed(int(self.seed) * 7919 + self.epoch)
            seeds = torch.randint(0, 2**62, (max(self.total, 1),), generator=g)
            seeds = seeds[torch.arange(self.rank, self.total, self.world_size)]
        self._keys = (indices, seeds)
        pin = self.device.type == "cuda"
        loader = DataLoader(self._data, batch_sampler=_BatchKeys(self), num_workers=self.num_workers,
                            collate_fn=_collate, pin_memory=pin,
                            worker_init_fn=_worker_init if self.num_workers else None)  # fmt: skip
        on_cpu = self.device.type == "cpu"
        for images, labels, positions, bad in loader:
            for message in bad:
                if not self.skip_bad_images:
                    raise DataError(f"{message} (pass --skip-bad-images to skip unreadable files)")
                if message not in self._warned:
                    self._warned.add(message)
                    warnings.warn(f"skipping: {message}", stacklevel=2)
            if len(labels) == 0:
                continue
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            batch_params = params[positions].to(self.device) if params is not None else None
            with cpu_threads(1) if on_cpu else contextlib.nullcontext():
                out = self.transform(images, batch_params)
            yield out, labels


def verify_images(split: FolderSplit, paths: Sequence[str] | None = None) -> list[str]:
    """The unreadable files of ``split`` (decodes each: for small sets and tools, not per epoch)."""
    bad = []
    for path, _ in split.samples if paths is None else [(p, 0) for p in paths]:
        try:
            open_image(path, split.in_chans)
        except DataError:
            bad.append(path)
    return bad
