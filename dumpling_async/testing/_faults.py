"""The faults the fake server injects, and the answer each one gives.

Drawn at random (``FaultPlan``) or scripted (``FakeDumplingServer.inject``), a fault
replaces the normal answer of one request: an error status, a broken or slow body, a
dropped connection. Faulted requests are never charged: they model requests the vendor
did not complete.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import orjson
from aiohttp import web

__all__ = [
    "FAULT_KINDS",
    "SCRIPTED_ONLY",
    "FaultPlan",
    "FaultScript",
    "error_response",
    "fault_response",
]

FAULT_KINDS = (
    "500",
    "502",
    "503",
    "429",
    "drop",
    "drop_mid_body",
    "slow",
    "truncated_json",
    "html_200",
    "oversized",
)
# Faults only a test asks for by name (FakeDumplingServer.inject), never drawn at random.
SCRIPTED_ONLY = ("400", "html_500", "latency", "slow_body")
# What the client can see of each fault, for the server's record (0: nothing at all).
SEEN_STATUS = {
    "400": 400,
    "500": 500,
    "502": 502,
    "503": 503,
    "429": 429,
    "drop": 0,
    "slow": 500,
    "html_500": 500,
}


@attrs.frozen(kw_only=True)
class FaultPlan:
    """Random faults: each request fails with probability ``rate``, by a kind drawn
    from ``kinds``. ``slow_seconds`` is how long a ``slow`` answer takes;
    ``oversized_bytes`` the size of an ``oversized`` body."""

    rate: float = 0.1
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 0
    slow_seconds: float = 2.0
    oversized_bytes: int = 8 * 1024 * 1024
    retry_after: float = 0.05


_Key = tuple[str | None, str | None]  # (endpoint, subject); None: any


class FaultScript:
    """The faults a test asked for (``FakeDumplingServer.inject``), then random ones."""

    def __init__(self, seed: int) -> None:
        self._scripted: dict[_Key, deque[str]] = {}
        self._skips: dict[_Key, int] = {}  # requests let through first
        self._rng = random.Random(seed)

    def add(self, kinds: tuple[str, ...], key: _Key, skip: int) -> None:
        for kind in kinds:
            if kind not in FAULT_KINDS and kind not in SCRIPTED_ONLY:
                raise ValueError(f"unknown fault {kind!r}")
        if skip < 0:
            raise ValueError("skip must be >= 0")
        self._scripted.setdefault(key, deque()).extend(kinds)
        self._skips[key] = self._skips.get(key, 0) + skip

    def next(self, endpoint: str, subject: str, plan: FaultPlan | None) -> str | None:
        """The fault of the next request about *subject* on *endpoint*, if any."""
        # The most specific script first: this endpoint and subject, then either, then any.
        for key in ((endpoint, subject), (None, subject), (endpoint, None), (None, None)):
            queue = self._scripted.get(key)
            if queue:
                if self._skips.get(key):
                    self._skips[key] -= 1
                    return None
                return queue.popleft()
        if plan is not None and self._rng.random() < plan.rate:
            return self._rng.choice(plan.kinds)
        return None


def error_response(
    status: int, message: str, headers: dict[str, str], *, nested: bool = False
) -> web.Response:
    """An error in one of the vendor's two shapes: ``{"error": "..."}`` or
    ``{"status": "error", "error": {"code": ..., "message": ...}}``."""
    body: dict[str, Any] = {"error": message}
    if nested:
        body = {"status": "error", "error": {"code": f"E{status}", "message": message}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


@attrs.frozen
class _Context:
    """What a fault's answer may use."""

    request: web.Request
    plan: FaultPlan
    service: str  # "profile service" or "TikTok service", as the vendor words it
    headers: dict[str, str]
    error: Callable[[int, str, dict[str, str]], web.Response]
    retry_after: dict[str, str]  # the Retry-After headers of a 429/503
    payload: Callable[[], bytes]  # the body this request would have had


async def _bad_request(c: _Context) -> web.StreamResponse:
    what = "handle" if c.service == "profile service" else "request"
    return c.error(400, f"The {c.service} could not process the {what}.", c.headers)


async def _html_500(c: _Context) -> web.StreamResponse:
    return web.Response(
        status=500,
        text="<html>Internal Server Error</html>",
        content_type="text/html",
        headers=c.headers,
    )


async def _server_error(c: _Context) -> web.StreamResponse:
    return c.error(500, "An unexpected server error occurred.", c.headers)


async def _bad_gateway(c: _Context) -> web.StreamResponse:
    return c.error(502, f"The {c.service} is currently unavailable.", c.headers)


async def _upstream_limited(c: _Context) -> web.StreamResponse:
    message = f"Rate limit exceeded with the {c.service}. Please try again later."
    return c.error(503, message, {**c.headers, **c.retry_after})


async def _rate_limited(c: _Context) -> web.StreamResponse:
    return c.error(429, "Too many requests.", {**c.headers, **c.retry_after})


async def _slow(c: _Context) -> web.StreamResponse:
    await asyncio.sleep(c.plan.slow_seconds)
    return c.error(500, "slow answer", c.headers)


async def _html_200(c: _Context) -> web.StreamResponse:
    return web.Response(
        text="<html><body>Bad gateway</body></html>", content_type="text/html", headers=c.headers
    )


async def _truncated_json(c: _Context) -> web.StreamResponse:
    payload = c.payload()
    return web.Response(
        body=payload[: len(payload) // 2], content_type="application/json", headers=c.headers
    )


async def _oversized(c: _Context) -> web.StreamResponse:
    padding = b" " * c.plan.oversized_bytes
    return web.Response(
        body=c.payload()[:-1] + b',"pad":"' + padding + b'"}',
        content_type="application/json",
        headers=c.headers,
    )


async def _drop(c: _Context) -> web.StreamResponse:
    if c.request.transport is not None:
        c.request.transport.abort()
    return web.Response(status=500)


async def _half_body(
    c: _Context, then: Callable[[web.StreamResponse, bytes], Awaitable[None]]
) -> web.StreamResponse:
    """A 200 that promises the whole body, sends half, then does *then*."""
    payload = c.payload()
    response = web.StreamResponse(headers=c.headers)
    response.content_type = "application/json"
    response.content_length = len(payload)
    await response.prepare(c.request)
    await response.write(payload[: len(payload) // 2])
    await then(response, payload)
    return response


async def _drop_mid_body(c: _Context) -> web.StreamResponse:
    async def cut(response: web.StreamResponse, payload: bytes) -> None:
        await asyncio.sleep(0.01)
        if c.request.transport is not None:
            c.request.transport.abort()

    return await _half_body(c, cut)


async def _slow_body(c: _Context) -> web.StreamResponse:
    async def trickle(response: web.StreamResponse, payload: bytes) -> None:
        await asyncio.sleep(c.plan.slow_seconds)  # the rest after slow_seconds
        await response.write(payload[len(payload) // 2 :])

    return await _half_body(c, trickle)


_ANSWERS: dict[str, Callable[[_Context], Awaitable[web.StreamResponse]]] = {
    "400": _bad_request,
    "html_500": _html_500,
    "500": _server_error,
    "502": _bad_gateway,
    "503": _upstream_limited,
    "429": _rate_limited,
    "slow": _slow,
    "html_200": _html_200,
    "truncated_json": _truncated_json,
    "oversized": _oversized,
    "drop": _drop,
    "drop_mid_body": _drop_mid_body,
    "slow_body": _slow_body,
}


async def fault_response(
    fault: str,
    *,
    request: web.Request,
    plan: FaultPlan,
    service: str,
    headers: dict[str, str],
    error: Callable[[int, str, dict[str, str]], web.Response],
    retry_after: dict[str, str],
    payload: Callable[[], bytes],
) -> web.StreamResponse:
    """The answer *fault* gives to *request*."""
    context = _Context(request, plan, service, headers, error, retry_after, payload)
    return await _ANSWERS[fault](context)
