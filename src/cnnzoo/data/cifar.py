"""CIFAR-10 and CIFAR-100 from the official "python version" pickles (Krizhevsky 2009).

CIFAR-10: ``cifar-10-batches-py/data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
``batches.meta`` (``label_names``); each batch is a pickled dict with ``data`` (N x 3072 uint8,
the red, green then blue 32x32 planes of each image, row-major) and ``labels``.
CIFAR-100: ``cifar-100-python/train``, ``test`` and ``meta``; the 100 ``fine_labels`` are used
(``fine_label_names``), the 20 coarse super-classes are not.

Search order as for every data set (``data_dir``, ``$CNNZOO_DATA_DIR/NAME``,
``/usr/share/datasets/NAME``, the cache), each directory tried as is and with the archive's folder
name appended; ``download=True`` uses torchvision's downloader.

The batches are pickles, and unpickling runs whatever callables a file names: a crafted
``data_batch_1`` could run a shell command.  They are therefore read with
:class:`CifarUnpickler`, which resolves only the globals a real batch references (numpy's array
and dtype reconstruction; see :data:`ALLOWED_GLOBALS`) and refuses any other with a one-line
:class:`DataError` before anything is called.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from cnnzoo.data.base import DataError, TensorSplit, cache_dir, candidate_dirs, describe_places

#: name -> (archive folder, training files, test files, meta file, label key, class-name key, torchvision class)
LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names", "CIFAR10"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names", "CIFAR100"),
}  # fmt: skip

NUM_CLASSES = {"cifar10": 10, "cifar100": 100}


#: the globals a CIFAR "python version" pickle may name, as ``(module, name)``.  The official
#: files (pickled by Python 2 with protocol 2) hold dicts of byte strings, lists of ints and byte
#: strings, and numpy arrays; an array is rebuilt from ``_reconstruct(ndarray, ...)`` and a
#: ``dtype``.  Files written again by Python 3 may also name ``_codecs.encode`` (protocol 2 stores
#: bytes as ``encode(latin-1 text)``), numpy scalars (``scalar``, e.g. a list of np.int64 labels)
#: and, with protocol 5, ``_frombuffer``.  numpy 1 calls its module ``numpy.core``, numpy 2
#: ``numpy._core``: both spellings are accepted and resolved in the installed numpy.
ALLOWED_GLOBALS = frozenset(
    [(f"numpy.{core}.multiarray", n) for core in ("core", "_core") for n in ("_reconstruct", "scalar")]
    + [(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
)


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`; any other global is a :class:`DataError`."""

    def __init__(self, file, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            # protocols 0-2 spell Python 3 names the Python 2 way (__builtin__.eval): report the Python 3 name
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            raise self._refuse(f"it references {module}.{name}")
        if module == "_codecs":
            return self._latin1_encode
        if module == "numpy":
            return getattr(np, name)
        submodule = module.rpartition(".")[2]
        try:  # the installed numpy's own module (numpy 2: numpy._core; numpy 1: numpy.core)
            found = importlib.import_module(f"numpy._core.{submodule}")
        except ImportError:
            found = importlib.import_module(f"numpy.core.{submodule}")
        return getattr(found, name)

    def persistent_load(self, pid):
        raise self._refuse("it holds a persistent reference")

    def _latin1_encode(self, text, encoding="utf-8", errors="strict") -> bytes:
        """``_codecs.encode`` as protocol 2 uses it for bytes (``encode(text, "latin1")``), and nothing else."""
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise self._refuse(f"it calls _codecs.encode with {encoding!r}")
        return text.encode("latin-1")

    def _refuse(self, what: str) -> DataError:
        return DataError(f"{self.path} is not a CIFAR batch: {what}, which a CIFAR batch never holds")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = CifarUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or foreign file
        raise DataError(f"cannot read CIFAR batch {path}: {type(e).__name__}: {e}".splitlines()[0]) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch (expected a pickled dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batches(name: str, directory: Path, files: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    datas, labels = [], []
    for fname in files:
        d = _unpickle(directory / fname)
        if "data" not in d or label_key not in d:
            raise DataError(f"{directory / fname} lacks the '{label_key}' or 'data' entry of a {name} batch")
        data = np.asarray(d["data"], dtype=np.uint8)
        lab = np.asarray(d[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(lab):
            raise DataError(f"{directory / fname} is incomplete: data {data.shape}, {len(lab)} labels (need N x 3072)")
        datas.append(data)
        labels.append(lab)
    images = torch.from_numpy(np.concatenate(datas).reshape(-1, 3, 32, 32).copy())
    targets = torch.from_numpy(np.concatenate(labels))
    if len(targets) and int(targets.max()) >= NUM_CLASSES[name]:
        raise DataError(f"{name} in {directory} has label {int(targets.max())} >= {NUM_CLASSES[name]}")
    return images, targets


def _find(name: str, data_dir) -> tuple[Path | None, list[Path], list[str]]:
    folder, train_files, test_files, _, _, _, _ = LAYOUTS[name]
    dirs = candidate_dirs(name, data_dir, subdirs=(folder,))
    notes = []
    for d in dirs:
        present = [f for f in train_files + test_files if (d / f).is_file()]
        if len(present) == len(train_files + test_files):
            return d, dirs, notes
        if present:
            missing = [f for f in train_files + test_files if f not in present]
            notes.append(f"{d} is incomplete (missing {', '.join(missing)})")
    return None, dirs, notes


def load_cifar(name: str, data_dir=None, download: bool = True) -> tuple[TensorSplit, TensorSplit, str]:
    """``(train, test, source_dir)`` for ``cifar10`` or ``cifar100``: uint8 ``(N, 3, 32, 32)``."""
    folder, train_files, test_files, meta, label_key, names_key, tv_class = LAYOUTS[name]
    directory, dirs, notes = _find(name, data_dir)
    if directory is None and download:
        root = Path(data_dir).expanduser() if data_dir is not None else cache_dir(name)
        try:
            import torchvision.datasets as tvd

            getattr(tvd, tv_class)(root=str(root), train=True, download=True)
            directory, _, more = _find(name, root)
            notes += more
        except Exception as e:  # noqa: BLE001 - offline etc.: reported in the one-line error
            notes.append(f"download into {root} failed: {(str(e).strip() or type(e).__name__).splitlines()[0]}")
    if directory is None:
        extra = ("; " + "; ".join(notes)) if notes else ""
        hint = "" if download else " (download=False)"
        raise DataError(
            f"{name} not found: need {folder}/{{{','.join(train_files + test_files)}}} (the python version); "
            f"looked in {describe_places(dirs)}{extra}{hint}; pass --data-dir DIR or set $CNNZOO_DATA_DIR"
        )
    if (directory / meta).is_file():
        raw = _unpickle(directory / meta).get(names_key, [])
        classes = [c.decode() if isinstance(c, bytes) else str(c) for c in raw]
    else:
        classes = []
    if len(classes) != NUM_CLASSES[name]:
        classes = [str(i) for i in range(NUM_CLASSES[name])]
    train = TensorSplit(*_read_batches(name, directory, train_files, label_key), classes)
    test = TensorSplit(*_read_batches(name, directory, test_files, label_key), classes)
    return train, test, str(directory)
