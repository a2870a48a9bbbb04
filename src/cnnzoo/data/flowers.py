"""Oxford flowers: 17 categories (Nilsback & Zisserman 2006, NIN's exercise in 000) and 102 (2008).

``flowers17`` reads the official archive ``17flowers.tgz`` as extracted: ``jpg/image_0001.jpg`` ...
``jpg/image_1360.jpg``, 80 images per class in class order (images 1-80 are daffodils, ...).
The official splits ``datasplits.mat`` (``trn1``/``val1``/``tst1``: 40/20/20 images per class,
1-based image numbers; the first of its three splits is used) are used when the file lies in the
``jpg`` folder or next to it; otherwise a fixed seeded split puts 20 images per class into the
test split (as the official splits do) and the validation split is carved from the rest with
``val_fraction``.

``flowers102`` reads torchvision's ``Flowers102`` layout: ``flowers-102/jpg/image_00001.jpg`` ...,
``imagelabels.mat`` (``labels``, 1-102) and ``setid.mat`` (``trnid``/``valid``/``tstid``: the
official 10 + 10 images per class for training and validation, 6149 for testing); the official
validation split is used, ``val_fraction`` is ignored.

Both are image folders decoded by DataLoader workers (:mod:`cnnzoo.data.folders`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnzoo.data.base import DataError, FolderSplit, cache_dir, candidate_dirs, describe_places, split_train_val
from cnnzoo.data.matfile import MatFileError, loadmat

#: class names from the data set's page (www.robots.ox.ac.uk/~vgg/data/flowers/17/), in label order
FLOWERS17_CLASSES = [
    "Daffodil", "Snowdrop", "Lily Valley", "Bluebell", "Crocus", "Iris", "Tigerlily", "Tulip", "Fritillary",
    "Sunflower", "Daisy", "Colts' Foot", "Dandelion", "Cowslip", "Buttercup", "Windflower", "Pansy",
]  # fmt: skip
FLOWERS17_PER_CLASS = 80
FLOWERS17_TEST_PER_CLASS = 20


def _flowers17_files(directory: Path) -> list[Path]:
    n = len(FLOWERS17_CLASSES) * FLOWERS17_PER_CLASS
    return [directory / f"image_{i:04d}.jpg" for i in range(1, n + 1)]


def _missing_note(directory: Path, missing: list[Path]) -> str:
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    return f"{directory} is incomplete (missing {missing[0].name}{more})"


def _read_mat(path: Path, keys: list[str], name: str) -> dict[str, np.ndarray]:
    try:
        mat = loadmat(path)
    except (MatFileError, OSError) as e:
        raise DataError(f"{name}: cannot read {path}: {e}") from None
    missing = [k for k in keys if k not in mat]
    if missing:
        raise DataError(f"{name}: {path} lacks {', '.join(missing)}")
    return {k: np.asarray(mat[k]).astype(np.int64).ravel() for k in keys}


def _subset(samples: list[tuple[str, int]], ids: np.ndarray, classes, path: Path, name: str) -> FolderSplit:
    if len(ids) and (ids.min() < 1 or ids.max() > len(samples)):
        raise DataError(f"{name}: {path} refers to image {int(ids.max())} of {len(samples)}")
    return FolderSplit([samples[i - 1] for i in ids], list(classes), 3)


def load_flowers17(data_dir=None, download: bool = True):
    dirs = candidate_dirs("flowers17", data_dir, subdirs=("jpg", "17flowers/jpg", "17flowers"))
    notes, directory = [], None
    for d in dirs:
        files = _flowers17_files(d)
        missing = [f for f in files if not f.is_file()]
        if not missing:
            directory = d
            break
        if len(missing) < len(files):
            notes.append(_missing_note(d, missing))
    if directory is None:
        extra = ("; " + "; ".join(notes)) if notes else ""
        raise DataError(
            f"flowers17 not found: need jpg/image_0001.jpg ... image_1360.jpg (the extracted 17flowers.tgz from "
            f"www.robots.ox.ac.uk/~vgg/data/flowers/17/); looked in {describe_places(dirs)}{extra}; "
            f"torchvision has no downloader for it"
        )
    samples = [(str(f), (i // FLOWERS17_PER_CLASS)) for i, f in enumerate(_flowers17_files(directory))]
    splits_file = next(
        (p for p in (directory / "datasplits.mat", directory.parent / "datasplits.mat") if p.is_file()), None
    )
    if splits_file is not None:
        s = _read_mat(splits_file, ["trn1", "val1", "tst1"], "flowers17")
        train, val, test = (
            _subset(samples, s[k], FLOWERS17_CLASSES, splits_file, "flowers17") for k in ("trn1", "val1", "tst1")
        )
        return train, val, test, f"{directory} (splits: {splits_file.name})"
    everything = FolderSplit(samples, list(FLOWERS17_CLASSES), 3)
    frac = FLOWERS17_TEST_PER_CLASS / FLOWERS17_PER_CLASS
    rest, test_idx = split_train_val(
        len(samples), frac, seed=0, labels=everything.labels
    )  # fixed: same test set for every run
    return (
        everything.subset(rest.sort().values),
        None,
        everything.subset(test_idx.sort().values),
        f"{directory} (seeded split)",
    )


def flowers102_classes() -> list[str]:
    try:
        import torchvision.datasets as tvd

        classes = list(getattr(tvd.Flowers102, "classes", []))
    except Exception:  # noqa: BLE001 - an old torchvision: numbered classes
        classes = []
    return classes if len(classes) == 102 else [f"class_{i}" for i in range(1, 103)]


def _find_flowers102(dirs: list[Path]) -> tuple[Path | None, list[str]]:
    notes = []
    for d in dirs:
        need = [d / "imagelabels.mat", d / "setid.mat", d / "jpg"]
        present = [p.exists() for p in need]
        if all(present):
            return d, notes
        if any(present):
            notes.append(f"{d} is incomplete (missing {', '.join(p.name for p, ok in zip(need, present) if not ok)})")
    return None, notes


def load_flowers102(data_dir=None, download: bool = True):
    dirs = candidate_dirs("flowers102", data_dir, subdirs=("flowers-102",))
    directory, notes = _find_flowers102(dirs)
    if directory is None and download:
        root = Path(data_dir).expanduser() if data_dir is not None else cache_dir("flowers102")
        try:
            import torchvision.datasets as tvd

            tvd.Flowers102(root=str(root), split="train", download=True)
        except Exception as e:  # noqa: BLE001 - offline, or scipy missing after the download
            notes.append(f"torchvision download into {root}: {(str(e).strip() or type(e).__name__).splitlines()[0]}")
        directory, more = _find_flowers102([root / "flowers-102"])
        notes += more
    if directory is None:
        extra = ("; " + "; ".join(notes)) if notes else ""
        raise DataError(
            f"flowers102 not found: need flowers-102/{{jpg/,imagelabels.mat,setid.mat}} (torchvision's Flowers102 "
            f"layout); looked in {describe_places(dirs)}{extra}"
        )
    labels = _read_mat(directory / "imagelabels.mat", ["labels"], "flowers102")["labels"]
    ids = _read_mat(directory / "setid.mat", ["trnid", "valid", "tstid"], "flowers102")
    if labels.min() < 1 or labels.max() > 102:
        raise DataError(f"flowers102: {directory / 'imagelabels.mat'} has labels outside 1..102")
    files = [directory / "jpg" / f"image_{i:05d}.jpg" for i in range(1, len(labels) + 1)]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"flowers102: {_missing_note(directory / 'jpg', missing)}")
    classes = flowers102_classes()
    samples = [(str(f), int(lab) - 1) for f, lab in zip(files, labels)]
    mat = directory / "setid.mat"
    train, val, test = (_subset(samples, ids[k], classes, mat, "flowers102") for k in ("trnid", "valid", "tstid"))
    return train, val, test, str(directory)


def load_flowers(name: str, data_dir=None, download: bool = True, val_fraction: float = 0.1, seed: int = 0):
    """``(train, val or None, test, source)`` for ``flowers17`` or ``flowers102``."""
    if name == "flowers17":
        return load_flowers17(data_dir, download)
    return load_flowers102(data_dir, download)
