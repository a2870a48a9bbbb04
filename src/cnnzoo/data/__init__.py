"""Data sets in their official formats and the fast in-memory batch pipeline.

>>> from cnnzoo.data import load_dataset, make_loader
>>> bundle = load_dataset("fashion-mnist", val_fraction=0.1, seed=0)
>>> loader = make_loader(bundle.train, batch_size=128, train=True, input_size=(32, 32),
...                      augment=bundle.default_augment, mean=bundle.mean, std=bundle.std)
>>> images, labels = next(iter(loader))

The names below are imported when first used (PEP 562), so that ``cnnzoo.data.registry`` (the
data-set names and helps, for ``--help`` texts) can be imported without torch.
See docs/architecture.md, "Data interface (cnnzoo.data)".
"""

from __future__ import annotations

import importlib

#: public name -> the module defining it
_EXPORTS = {
    "AUGMENT_KEYS": "cnnzoo.data.pipeline",
    "BatchTransform": "cnnzoo.data.transform",
    "DataBundle": "cnnzoo.data.base",
    "DataError": "cnnzoo.data.errors",
    "FolderSplit": "cnnzoo.data.base",
    "TensorSplit": "cnnzoo.data.base",
    "load_dataset": "cnnzoo.data.datasets",
    "make_loader": "cnnzoo.data.pipeline",
    "preprocess_image": "cnnzoo.data.folders",
}

__all__ = sorted([*_EXPORTS, "DATASETS"])


def __getattr__(name: str):
    if name == "DATASETS":  # computed from the registry on every access (data sets may be added later)
        from cnnzoo.data.registry import dataset_names

        return dataset_names()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
