"""Library logging: structlog over the stdlib logger ``dumpling_async``, silent by default.

The library never calls ``structlog.configure()``: events go to the stdlib logger, which
has only a ``NullHandler`` until the application (or the CLI) configures logging. Each
client's logger carries a redaction processor for that client's key.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from .secret import Secret

__all__ = ["LOGGER_NAME", "get_logger"]

LOGGER_NAME = "dumpling_async"
_REDACTED = "[REDACTED]"
_SENSITIVE_KEYS = frozenset({"authorization", "api_key", "apikey", "key", "token"})


class Redactor:
    """Replaces the secret wherever it appears in an event; blanks sensitive keys."""

    def __init__(self, secret: Secret | None) -> None:
        self._secret = secret

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            secret = self._secret.get() if self._secret is not None else ""
            return value.replace(secret, _REDACTED) if secret and secret in value else value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        if isinstance(value, BaseException):
            return self._scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            if key.lower() in _SENSITIVE_KEYS:
                event_dict[key] = _REDACTED
            else:
                event_dict[key] = self._scrub(event_dict[key])
        return event_dict


def get_logger(secret: Secret | None = None) -> Any:
    """A structlog logger over the stdlib ``dumpling_async`` logger, redacting *secret*."""
    # Imported on first use, not with the package: structlog imports rich when it is
    # installed, and ``import dumpling_async`` should load nothing the command line brings.
    import structlog

    return structlog.wrap_logger(
        logging.getLogger(LOGGER_NAME),
        processors=[
            structlog.stdlib.filter_by_level,
            Redactor(secret),
            structlog.stdlib.render_to_log_kwargs,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
    )
