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

from cnnzoo.transfer.adapt import adapt_conv_weight, adapt_in_chans, adapt_num_classes
from cnnzoo.transfer.prepare import MODES, NewFC, TransferPlan, prepare, trainable_parameters
from cnnzoo.transfer.units import model_units

__all__ = [
    "MODES",
    "NewFC",
    "TransferPlan",
    "adapt_conv_weight",
    "adapt_in_chans",
    "adapt_num_classes",
    "model_units",
    "prepare",
    "trainable_parameters",
]
