"""The ``atlas`` subcommand of ``cnnzoo``; imports no torch (the handler does)."""

from __future__ import annotations


def add_parsers(subparsers) -> None:
    pass
