"""What is retried, and how long to wait: capped exponential backoff with full jitter."""

from __future__ import annotations

import random

import attrs

from .._errors import APIStatusError, DumplingError
from .fate import is_retryable
from .headers import parse_retry_after

__all__ = ["RetryPolicy", "parse_retry_after"]


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a failed attempt is retried.

    ``max_attempts`` counts the first try: the default 3 is two retries, as in the
    OpenAI and Anthropic SDKs. Waits grow as ``backoff_base * 2**n`` up to
    ``backoff_max`` with full jitter. A server-requested wait (``Retry-After``) is
    honoured up to ``max_retry_after`` seconds; a longer one is not waited out: the
    error is returned so the caller can decide.

    A request that reached the server and got no answer (a timeout, a dropped
    connection) may have been charged: a server finishes and charges what its client
    gave up on. It is not sent again unless ``retry_unanswered=True``, for users who
    prefer results to money (a retry may pay twice).
    """

    max_attempts: int = attrs.field(default=3, validator=attrs.validators.ge(1))
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_max: float = attrs.field(default=8.0, validator=_positive)
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)
    retry_unanswered: bool = False

    def is_retryable(self, error: DumplingError) -> bool:
        """True for 429, 5xx and transport failures that cannot have been charged (and,
        with ``retry_unanswered``, those that may have been)."""
        return is_retryable(error, retry_unanswered=self.retry_unanswered)

    def backoff(self, retry: int, *, rng: random.Random | None = None) -> float:
        """Full-jitter wait before retry number *retry* (1 for the first retry)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry - 1))
        return (rng or random).uniform(0.0, ceiling)

    def delay(self, error: DumplingError, retry: int) -> float | None:
        """Seconds to wait before *retry*, or None when the error must not be retried."""
        if retry >= self.max_attempts or not self.is_retryable(error):
            return None
        server_wait = error.retry_after if isinstance(error, APIStatusError) else None
        if server_wait is not None:
            # A wait longer than we are willing to honour is the caller's decision.
            return server_wait if server_wait <= self.max_retry_after else None
        return self.backoff(retry)
