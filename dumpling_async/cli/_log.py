"""Logging in the ``dumpling-async`` commands: the ``-v/--log-format`` options and the
handler that routes the library's log records to stderr through structlog. Only the CLI
configures logging; the library itself stays silent until an application does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import structlog

from .._core.log import LOGGER_NAME

__all__ = ["configure_logging", "log_options"]


class _CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is now (rich swaps it while a
    progress bar is live, so log lines print above the bar)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _CLIHandler(logging.StreamHandler[_CurrentStderr]):
    """Marks the handler the CLI installed, so configuring twice replaces it."""


def configure_logging(verbose: int, log_format: str) -> None:
    """Route the library's log records (stdlib, keys in ``extra``) to stderr via structlog.

    Only the CLI does this; the library itself stays silent until an application
    configures logging. ``-v`` shows DEBUG, otherwise WARNING and above.
    """
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    handler = _CLIHandler(_CurrentStderr())
    handler.setFormatter(formatter)
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, _CLIHandler)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


def log_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        default="console",
        show_default=True,
        help="How library log events are written to stderr.",
    )(func)
    func = click.option(
        "-v", "--verbose", count=True, help="Log DEBUG events of the client (each request)."
    )(func)
    return func
