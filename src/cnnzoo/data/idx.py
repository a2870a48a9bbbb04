"""MNIST and Fashion-MNIST from their original idx files (gzipped or not).

The idx format (LeCun's MNIST page): a big-endian header ``0x00 0x00 TYPE NDIM``, then ``NDIM``
big-endian uint32 dimensions, then the data; type ``0x08`` is unsigned bytes.  Both data sets ship
four files: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``).

Search order: ``data_dir``, ``$CNNZOO_DATA_DIR/NAME``, Debian's ``/usr/share/datasets/NAME``
(package ``dataset-fashion-mnist``), the cache ``~/.cache/cnnzoo/NAME``; then, with
``download=True``, torchvision's downloader into ``data_dir`` or the cache.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from cnnzoo.data.base import DataError, TensorSplit, cache_dir, candidate_dirs, describe_places

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(d) for d in range(10)]

#: per data set: class names, torchvision class used to download, the folder it creates
IDX_DATASETS = {
    "fashion-mnist": (FASHION_MNIST_CLASSES, "FashionMNIST"),
    "mnist": (MNIST_CLASSES, "MNIST"),
}

# idx type byte -> numpy dtype (big-endian where it matters)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one idx file (``.gz`` decompressed transparently) into a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read idx file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is incomplete: truncated header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is incomplete: header says {'x'.join(map(str, dims))} but it holds "
            f"{len(raw) - header} bytes of data instead of {expected}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _present(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(name: str, data_dir=None) -> tuple[dict[str, Path] | None, list[Path], list[str]]:
    """The first directory holding all four files -> ``(files, dirs_searched, notes)``."""
    _, tv_folder = IDX_DATASETS[name]
    dirs = candidate_dirs(name, data_dir, subdirs=(f"{tv_folder}/raw",))
    notes = []
    for d in dirs:
        found = {key: _present(d, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            return found, dirs, notes  # type: ignore[return-value]
        if any(found.values()):
            missing = [IDX_FILES[k] + "[.gz]" for k, v in found.items() if v is None]
            notes.append(f"{d} is incomplete (missing {', '.join(missing)})")
    return None, dirs, notes


def _download(name: str, data_dir) -> tuple[Path | None, str]:
    """Download with torchvision into ``data_dir`` (or the cache); ``(raw_dir, error)``."""
    _, tv_folder = IDX_DATASETS[name]
    root = Path(data_dir).expanduser() if data_dir is not None else cache_dir(name)
    try:
        import torchvision.datasets as tvd

        cls = getattr(tvd, tv_folder)
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - any failure (offline, disk full) becomes a one-line note
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return None, f"download into {root} failed: {first}"
    return root / tv_folder / "raw", ""


def load_idx_dataset(name: str, data_dir=None, download: bool = True) -> tuple[TensorSplit, TensorSplit, str]:
    """``(train, test, source_dir)`` for ``mnist`` or ``fashion-mnist``, uint8 ``(N, 1, 28, 28)``."""
    classes, _ = IDX_DATASETS[name]
    files, dirs, notes = find_idx_files(name, data_dir)
    if files is None and download:
        raw_dir, err = _download(name, data_dir)
        if raw_dir is not None:
            files, _, more = find_idx_files(name, raw_dir)
            notes += more
        else:
            notes.append(err)
    if files is None:
        wanted = ", ".join(f"{stem}[.gz]" for stem in IDX_FILES.values())
        extra = ("; " + "; ".join(notes)) if notes else ""
        hint = "" if download else " (download=False)"
        raise DataError(
            f"{name} not found: need {wanted}; looked in {describe_places(dirs)}{extra}{hint}; "
            f"pass --data-dir DIR or set $CNNZOO_DATA_DIR"
        )
    arrays = {key: read_idx(path) for key, path in files.items()}
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(
                f"{name}: {files[f'{part}_images']} holds {images.shape} but {files[f'{part}_labels']} "
                f"holds {labels.shape} (need N x H x W images and N labels)"
            )
        if len(labels) and int(labels.max()) >= len(classes):
            raise DataError(
                f"{name}: {files[f'{part}_labels']} has label {int(labels.max())} >= {len(classes)} classes"
            )
        images_t = torch.from_numpy(images.astype(np.uint8, copy=True)).unsqueeze(1)
        splits.append(TensorSplit(images_t, torch.from_numpy(labels.astype(np.int64)), list(classes)))
    return splits[0], splits[1], str(files["train_images"].parent)
