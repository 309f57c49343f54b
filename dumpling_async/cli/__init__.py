"""The ``dumpling-async`` command line, an optional extra of the library.

``pip install 'dumpling-async[cli]'`` brings what it needs (click and rich); the library
itself never imports this package. Without the extra, the console script says which
extra to install instead of printing a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["INSTALL_HINT", "main"]

INSTALL_HINT = "pip install 'dumpling-async[cli]'"
_CLI_DEPENDENCIES = frozenset({"click", "rich"})


def main(argv: list[str] | None = None) -> None:
    """The console script ``dumpling-async``."""
    try:
        from ._commands import main as run
    except ImportError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in _CLI_DEPENDENCIES:
            raise
        sys.stderr.write(
            f"dumpling-async: the command line needs the 'cli' extra ({missing} is not "
            f"installed): {INSTALL_HINT}\n"
        )
        raise SystemExit(2) from None
    run(argv)
