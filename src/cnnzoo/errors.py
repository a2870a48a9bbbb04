"""User-facing errors.

Every mistake a user can make (an unknown model, a malformed ``--input``, an image
too small for a network, missing data, ...) raises a :class:`CnnzooError` whose
message fits on one line.  The command line prints that line and exits with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class CnnzooError(Exception):
    """An error caused by the user's input, reported as one line (CLI exit code 2)."""

    exit_code = 2


class UnknownModelError(CnnzooError, KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputSizeError(CnnzooError, ValueError):
    """An input whose spatial size a network cannot take."""


class ConfigError(CnnzooError, ValueError):
    """An invalid option value (num_classes, in_chans, a flag, a recipe key)."""
