"""``load_dataset(name)``: every data set by name, as a :class:`~cnnzoo.data.base.DataBundle`."""

from __future__ import annotations

import os

from cnnzoo.data.base import IMAGENET_MEAN, IMAGENET_STD, DataBundle, DataError, FolderSplit, cpu_threads, finish_bundle

#: names load_dataset accepts (``imagefolder:PATH``, ``imagenet:PATH`` and ``synthetic[:k=v,...]``
#: take an argument after the colon)
DATASETS = (
    "fashion-mnist",
    "mnist",
    "cifar10",
    "cifar100",
    "flowers17",
    "flowers102",
    "imagefolder",
    "imagenet",
    "synthetic",
)

#: the augmentation each data set trains with by default (make_loader's ``augment``)
DEFAULT_AUGMENT = {
    "fashion-mnist": {"crop_padding": 2, "flip": True},
    "mnist": {"crop_padding": 2, "flip": False},  # mirrored digits are other symbols
    "cifar10": {"crop_padding": 4, "flip": True},  # He et al. 2016, section 4.2
    "cifar100": {"crop_padding": 4, "flip": True},
    "synthetic": {"crop_padding": 0, "flip": False},
    "folders": {"flip": True},  # plus the random-resized crop done while decoding
}


def list_datasets() -> tuple[str, ...]:
    return DATASETS


def load_dataset(
    name: str = "fashion-mnist",
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    val_fraction: float = 0.1,
    seed: int = 0,
    limit_train: int | None = None,
    limit_val: int | None = None,
    skip_bad_images: bool = False,
    *,
    limit_test: int | None = None,
) -> DataBundle:
    """Load data set ``name`` (see :data:`DATASETS`) with a seeded validation split carved from training.

    The files are looked for in ``data_dir``, ``$CNNZOO_DATA_DIR/NAME``, ``/usr/share/datasets/NAME``
    and ``~/.cache/cnnzoo/NAME``; with ``download=True`` torchvision downloads what is missing
    (MNIST, Fashion-MNIST, CIFAR, Flowers-102).  ``limit_train``/``limit_val`` keep a seeded random
    subset of the training/validation split; ``limit_test`` (default: ``limit_val``) of the test
    split.  Missing or incomplete files raise a one-line :class:`DataError`.
    ``skip_bad_images`` only matters for image folders: their loaders then skip unreadable files
    with a warning instead of stopping (it is accepted, and ignored, for every other data set).
    """
    if limit_test is None:
        limit_test = limit_val
    with cpu_threads(1):
        bundle = _load(name, data_dir, download, val_fraction, seed, limit_train, limit_val, limit_test)
    for split in (bundle.train, bundle.val, bundle.test):
        if isinstance(split, FolderSplit):
            split.skip_bad_images = bool(skip_bad_images)
    return bundle


def _load(name, data_dir, download, val_fraction, seed, limit_train, limit_val, limit_test) -> DataBundle:
    base, _, arg = str(name).partition(":")
    base = base.strip().lower()
    common = dict(
        val_fraction=val_fraction, seed=seed, limit_train=limit_train, limit_val=limit_val, limit_test=limit_test
    )
    if base in ("fashion-mnist", "fashion_mnist", "fashionmnist", "mnist"):
        from cnnzoo.data.idx import load_idx_dataset

        base = "mnist" if base == "mnist" else "fashion-mnist"
        train, test, source = load_idx_dataset(base, data_dir, download)
        return finish_bundle(base, train, test, default_augment=DEFAULT_AUGMENT[base], source=source, **common)
    if base in ("cifar10", "cifar100", "cifar-10", "cifar-100"):
        from cnnzoo.data.cifar import load_cifar

        base = base.replace("-", "")
        train, test, source = load_cifar(base, data_dir, download)
        return finish_bundle(base, train, test, default_augment=DEFAULT_AUGMENT[base], source=source, **common)
    if base == "synthetic":
        from cnnzoo.data.synthetic import load_synthetic

        train, test, options = load_synthetic(arg, seed)
        return finish_bundle(f"synthetic:{options}" if arg else "synthetic", train, test,
                             default_augment=DEFAULT_AUGMENT["synthetic"], **common)  # fmt: skip
    if base in ("flowers17", "flowers102"):
        from cnnzoo.data.flowers import load_flowers

        train, val, test, source = load_flowers(base, data_dir, download, val_fraction, seed)
        return finish_bundle(base, train, test, val=val, image_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             default_augment=DEFAULT_AUGMENT["folders"], source=source, **common)  # fmt: skip
    if base in ("imagefolder", "imagenet"):
        from cnnzoo.data.folders import load_image_folders

        path = arg or (str(data_dir) if data_dir is not None else "")
        if not path:
            raise DataError(f"{base} needs a directory: use --data {base}:PATH (or --data-dir PATH)")
        train, val, test, source = load_image_folders(base, path)
        return finish_bundle(base, train, test, val=val, image_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                             default_augment=DEFAULT_AUGMENT["folders"], source=source, **common)  # fmt: skip
    raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)} (imagefolder:PATH, imagenet:PATH)")
