"""``load_dataset(name)``: every registered data set by name, as a :class:`~cnnzoo.data.base.DataBundle`.

The data sets themselves are registered in :mod:`cnnzoo.data.sets` (see :mod:`cnnzoo.data.registry`);
``DATASETS`` and ``DEFAULT_AUGMENT`` are computed from the registry, for code written before it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnnzoo.data.base import DataBundle, DataError, FolderSplit, cpu_threads
from cnnzoo.data.registry import DatasetRequest, dataset_names, default_augment, resolve_dataset


def __getattr__(name: str):
    # computed on access, so that data sets registered later are included
    if name == "DATASETS":
        return dataset_names()
    if name == "DEFAULT_AUGMENT":
        return {n: default_augment(n) for n in dataset_names()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def list_datasets() -> tuple[str, ...]:
    """The registered data-set names (see :func:`cnnzoo.data.registry.dataset_names`)."""
    return dataset_names()


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
    """Load data set ``name`` (see :func:`~cnnzoo.data.registry.dataset_names`) with a seeded validation split.

    ``name`` is a registered name or alias, for some data sets followed by ``:ARG``
    (``imagefolder:PATH``, ``imagenet:PATH``, ``synthetic:classes=4,size=16``).  The validation
    split (``val_fraction`` of the training set, stratified, seeded by ``seed``) is carved from the
    training set unless the data set ships an official one.

    The files are looked for in ``data_dir`` (itself, then ``data_dir/NAME``), then
    ``$CNNZOO_DATA_DIR/NAME``, ``/usr/share/datasets/NAME`` and ``~/.cache/cnnzoo/NAME``; with
    ``download=True`` torchvision downloads what is missing (MNIST, Fashion-MNIST, CIFAR,
    Flowers-102) into ``data_dir`` or the cache.  A ``data_dir`` that does not exist is a
    :class:`DataError` (it is not silently passed over for the other places); one that exists but
    lacks the files is searched past, and the error then names every place looked in.

    ``limit_train`` / ``limit_val`` keep a seeded random subset of the training / validation split.
    ``limit_test`` limits the test split the same way, and **when it is not given (None) it takes
    the value of** ``limit_val``: ``load_dataset(..., limit_val=500)`` also cuts the test split to
    500 images.  This default is kept for compatibility; pass ``limit_test=sys.maxsize`` to keep
    the whole test split while limiting validation.

    ``skip_bad_images`` only matters for image folders: their loaders then skip unreadable files
    with a warning instead of stopping (it is accepted, and ignored, for every other data set).
    Missing, incomplete or unreadable files, an unknown name and bad options raise a one-line
    :class:`DataError`.
    """
    info, arg = resolve_dataset(name)
    if arg and not (info.takes_path or info.options):
        raise DataError(f"data set {info.name} takes nothing after its name (got {str(name)!r})")
    if data_dir is not None:
        directory = Path(data_dir).expanduser()
        if not directory.exists():
            hint = f" (create it to download {info.name} into it)" if download and info.downloads else ""
            raise DataError(f"data directory {directory} does not exist{hint}")
        if not directory.is_dir():
            raise DataError(f"data directory {directory} is not a directory")
    if limit_test is None:
        limit_test = limit_val  # documented above: kept for compatibility
    request = DatasetRequest(info=info, arg=arg, data_dir=data_dir, download=bool(download),
                             val_fraction=val_fraction, seed=seed, limit_train=limit_train, limit_val=limit_val,
                             limit_test=limit_test)  # fmt: skip
    if info.takes_path and not request.path:
        raise DataError(f"{info.name} needs a directory: use --data {info.name}:PATH (or --data-dir PATH)")
    with cpu_threads(1):
        bundle = info.loader(request)
    for split in (bundle.train, bundle.val, bundle.test):
        if isinstance(split, FolderSplit):
            split.skip_bad_images = bool(skip_bad_images)
    return bundle
