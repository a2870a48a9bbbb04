"""The brief's experiments, each one command: ``cnnzoo experiment NAME``.

An experiment is a function ``run(args) -> int`` registered with
:func:`register_experiment`; ``add_arguments(parser)`` declares its flags.  Every
module in this package is imported when the experiments are listed, so adding an
experiment is adding its file.
"""

from __future__ import annotations

import argparse
import pkgutil
from dataclasses import dataclass
from importlib import import_module
from typing import Callable

from cnnzoo.errors import CnnzooError


@dataclass(frozen=True)
class Experiment:
    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(
    name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
):
    """Register ``fn(args) -> exit code`` as ``cnnzoo experiment NAME``."""

    def decorator(fn: Callable[[argparse.Namespace], int]):
        if name in _EXPERIMENTS:
            raise RuntimeError(f"experiment {name!r} registered twice")
        _EXPERIMENTS[name] = Experiment(name, help, fn, add_arguments)
        return fn

    return decorator


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            import_module(f"{__name__}.{module.name}")


def list_experiments() -> list[Experiment]:
    _import_all()
    return [_EXPERIMENTS[name] for name in sorted(_EXPERIMENTS)]


def get_experiment(name: str) -> Experiment:
    _import_all()
    try:
        return _EXPERIMENTS[name]
    except KeyError:
        known = ", ".join(sorted(_EXPERIMENTS)) or "none yet"
        raise CnnzooError(f"unknown experiment {name!r}; known: {known}") from None
