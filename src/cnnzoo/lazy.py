"""Package attributes imported on first use (PEP 562 ``__getattr__``).

``cnnzoo.train``, ``cnnzoo.transfer`` and ``cnnzoo.deploy`` name their public functions in a
table instead of importing them, so that their ``commands`` modules (the command line) load
without torch.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table[name]`` is the module that defines ``name``.

    The value is imported on first use and kept in the package, so later lookups are plain.
    """

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(import_module(table[name]), name)
            setattr(sys.modules[package], name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
