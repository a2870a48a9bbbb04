"""Data sets in their official formats and the fast in-memory batch pipeline.

>>> from cnnzoo.data import load_dataset, make_loader
>>> bundle = load_dataset("fashion-mnist", val_fraction=0.1, seed=0)
>>> loader = make_loader(bundle.train, batch_size=128, train=True, input_size=(32, 32),
...                      augment=bundle.default_augment, mean=bundle.mean, std=bundle.std)
>>> images, labels = next(iter(loader))

See docs/architecture.md, "Data interface (cnnzoo.data)".
"""

from cnnzoo.data.base import DataBundle, DataError, FolderSplit, TensorSplit
from cnnzoo.data.datasets import DATASETS, load_dataset
from cnnzoo.data.folders import preprocess_image
from cnnzoo.data.pipeline import AUGMENT_KEYS, BatchTransform, make_loader

__all__ = [
    "AUGMENT_KEYS",
    "BatchTransform",
    "DATASETS",
    "DataBundle",
    "DataError",
    "FolderSplit",
    "TensorSplit",
    "load_dataset",
    "make_loader",
    "preprocess_image",
]
