"""Trained weights that ship with cnnzoo (timm's convention: ``name.tag``).

>>> import cnnzoo
>>> cnnzoo.list_pretrained()                                              # doctest: +SKIP
['lenet5.fashion_mnist']
>>> model = cnnzoo.create_model("lenet5.fashion_mnist", pretrained=True)  # doctest: +SKIP
>>> run = cnnzoo.load_run("lenet5.fashion_mnist")    # what eval / predict / summary use  # doctest: +SKIP

The table (:mod:`cnnzoo.pretrained.table`) is read without torch; building and loading
(:mod:`cnnzoo.pretrained.load`) import it on first use; ``python -m cnnzoo.pretrained.ship``
adds a trained run to the table; ``python -m cnnzoo.pretrained`` prints the table.
"""

from cnnzoo.lazy import lazy_getattr
from cnnzoo.pretrained.table import (
    PretrainedError,
    UnknownTagError,
    list_pretrained,
    looks_like_tag,
    pretrained_entry,
    read_table,
    split_tag,
    tag_for_name,
)

_LAZY = {
    "build_entry": "cnnzoo.pretrained.load",
    "create_pretrained": "cnnzoo.pretrained.load",
    "load_pretrained_run": "cnnzoo.pretrained.load",
    "pretrained_cfg": "cnnzoo.pretrained.load",
    "pretrained_state_dict": "cnnzoo.pretrained.load",
}

__all__ = sorted([*_LAZY, "PretrainedError", "UnknownTagError", "list_pretrained", "looks_like_tag",
                  "pretrained_entry", "read_table", "split_tag", "tag_for_name"])  # fmt: skip

__getattr__ = lazy_getattr(__name__, _LAZY)
