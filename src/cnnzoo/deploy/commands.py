"""The ``export`` and ``bench`` subcommands of ``cnnzoo``.

This module imports no torch (``--help`` stays quick); the handlers import what they need.
"""

from __future__ import annotations


def add_parsers(subparsers) -> None:
    _add_export(subparsers)
    _add_bench(subparsers)


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------


def _add_export(subparsers) -> None:
    pass


# ------------------------------------------------------------------------------------------
# bench
# ------------------------------------------------------------------------------------------


def _add_bench(subparsers) -> None:
    pass
