"""The ``dumpling-async`` command line."""

from ._commands import main

__all__ = ["main"]
