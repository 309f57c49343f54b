"""Event hooks: the client's requests, answers, retries, waits and charges, for the
user's own metrics and tracing.

Subclass :class:`ClientHooks`, override the events you want and pass an instance as
``AsyncDumplingClient(hooks=...)``. Each method is called synchronously, in the task
making the request, with a small frozen event; keep it quick (increment a counter, end
a span). A hook that raises is logged (``hook_failed``) and never breaks a lookup. With
no hooks the client builds no event at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from .._errors import DumplingError

__all__ = [
    "ClientHooks",
    "CreditsEvent",
    "HookRunner",
    "PauseEvent",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "ThrottleEvent",
]


@attrs.frozen(kw_only=True)
class RequestEvent:
    """A request is about to be sent (attempt 1 is the first try)."""

    endpoint: str
    target: str
    attempt: int


@attrs.frozen(kw_only=True)
class ResponseEvent:
    """An attempt ended: its status (0 when no answer came), how long it took, the
    rate-limit headers it carried, and the error it ended with, if any."""

    endpoint: str
    target: str
    attempt: int
    status: int
    elapsed: float
    limit: int | None
    remaining: int | None
    error: DumplingError | None = None


@attrs.frozen(kw_only=True)
class RetryEvent:
    """An attempt failed and will be retried after *delay* seconds."""

    endpoint: str
    target: str
    attempt: int
    delay: float
    error: DumplingError


@attrs.frozen(kw_only=True)
class ThrottleEvent:
    """A request waited *seconds* for the rate limiter before it could go."""

    endpoint: str
    target: str
    seconds: float


@attrs.frozen(kw_only=True)
class PauseEvent:
    """The server answered 429 or 503: every request on the key pauses (``seconds`` as
    the server asked, when it said)."""

    endpoint: str
    target: str
    status: int
    seconds: float | None


@attrs.frozen(kw_only=True)
class CreditsEvent:
    """An attempt cost *credits*: confirmed (a 200 arrived), or maybe (it reached the
    server and no answer came; counted in ``credits_uncertain``)."""

    endpoint: str
    target: str
    credits: int
    confirmed: bool


class ClientHooks:
    """Override the events you want; the others do nothing."""

    def on_request(self, event: RequestEvent) -> None:
        """A request is about to be sent."""

    def on_response(self, event: ResponseEvent) -> None:
        """An attempt ended, with an answer or not."""

    def on_retry(self, event: RetryEvent) -> None:
        """A failed attempt will be retried."""

    def on_throttle(self, event: ThrottleEvent) -> None:
        """A request waited for the rate limiter."""

    def on_pause(self, event: PauseEvent) -> None:
        """The server asked everyone to wait (429 or 503)."""

    def on_credits(self, event: CreditsEvent) -> None:
        """Credits were charged, or maybe charged."""


class HookRunner:
    """Calls one method of the user's hooks, logging instead of raising."""

    __slots__ = ("_hooks", "_log")

    def __init__(self, hooks: ClientHooks, log: Any) -> None:
        self._hooks = hooks
        self._log = log

    def __call__(self, name: str, event: Any) -> None:
        method: Callable[[Any], None] = getattr(self._hooks, name)
        try:
            method(event)
        except Exception as exc:
            self._log.warning("hook_failed", hook=name, error=f"{type(exc).__name__}: {exc}")
