"""The data package's one-line error, in a module of its own so that torch-free code can raise it."""

from __future__ import annotations

from cnnzoo.errors import CnnzooError


class DataError(CnnzooError):
    """Missing, incomplete or unreadable data; the message names the files and where they were looked for."""
