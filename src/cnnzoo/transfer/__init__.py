"""Transfer learning the brief's three ways (001), from cnnzoo runs, torchvision, timm or files.

>>> from cnnzoo.transfer import load_source, prepare
>>> model = load_source("runs/lenet5-fashion-mnist").build()          # doctest: +SKIP
>>> model = prepare(model, mode="last", num_classes=5, last_k=1)      # doctest: +SKIP
>>> print(model.transfer_plan.describe())                             # doctest: +SKIP

``prepare`` freezes what the mode says (:mod:`cnnzoo.transfer.prepare`), ``load_source``
reads pretrained weights (:mod:`cnnzoo.transfer.sources`), :mod:`cnnzoo.transfer.adapt`
fits them to another number of classes or input channels, and ``cnnzoo finetune`` does
all of it and trains (:mod:`cnnzoo.transfer.commands`).
"""

import sys
import types

from cnnzoo.lazy import lazy_getattr

# imported on first use, so that ``cnnzoo.transfer.commands`` (the command line) loads without torch
_LAZY = {
    "adapt_conv_weight": "adapt", "adapt_in_chans": "adapt", "adapt_num_classes": "adapt",
    "MODES": "prepare", "NewFC": "prepare", "TransferPlan": "prepare", "prepare": "prepare",
    "trainable_parameters": "prepare", "model_units": "units", "load_source": "sources",
}  # fmt: skip

__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, {name: f"{__name__}.{module}" for name, module in _LAZY.items()})


class _Package(types.ModuleType):
    """Keeps ``cnnzoo.transfer.prepare`` the function when the submodule of that name is imported."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return  # the import system binding a submodule: the package's name stays the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
