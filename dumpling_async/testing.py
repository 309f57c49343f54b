"""``FakeDumplingServer``: an in-process DumplingAI server for offline tests.

It behaves like the vendor's ``/api/v1/get-tiktok-profile``: bearer-key auth (401),
credits (403 when exhausted, 10 per profile), a per-key rate limit with
``X-RateLimit-Limit`` / ``X-RateLimit-Remaining`` on every response and 429 +
``Retry-After`` when exceeded (fixed window, sliding window or token bucket), 404 for
unknown handles, and injectable faults. It records what it was asked and what it
charged, so tests can assert on the server's own view::

    async with FakeDumplingServer(rate_limit=RateLimitRule(40, 0.5)) as server:
        async with AsyncDumplingClient("any-key", base_url=server.url) as client:
            await client.get_tiktok_profile("someone")
        assert server.charged["someone"] == 1

A handle is unknown (404) when it is in ``unknown_handles`` or starts with ``unknown``.
Injected faults are never charged by the server: they model requests the vendor did not
complete (a client still counts a 200 it could not use as spent, to stay on the safe
side of a budget). The ``latency`` fault is a slow but normal, charged answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable
from typing import Any, Literal

import attrs
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

__all__ = [
    "FAULT_KINDS",
    "FakeDumplingServer",
    "FaultPlan",
    "RateLimitRule",
    "RequestRecord",
    "fake_profile",
]

Algorithm = Literal["fixed", "sliding", "token_bucket"]
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
PROFILE_PATH = "/api/v1/get-tiktok-profile"


@attrs.frozen
class RateLimitRule:
    """``limit`` requests per ``window`` seconds per API key, by ``algorithm``."""

    limit: int
    window: float
    algorithm: Algorithm = "fixed"


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


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request as the server saw it."""

    handle: str | None
    status: int
    charged: bool
    fault: str | None
    at: float
    authorized: bool


class _Window:
    """Server-side quota state for one key."""

    def __init__(self, rule: RateLimitRule, now: float) -> None:
        self.rule = rule
        self.limit = rule.limit
        self.start = now
        self.count = 0
        self.log: deque[float] = deque()
        self.tokens = float(rule.limit)
        self.stamp = now

    def _refresh(self, now: float) -> None:
        rule = self.rule
        if rule.algorithm == "fixed":
            if now - self.start >= rule.window:
                self.start += math.floor((now - self.start) / rule.window) * rule.window
                self.count = 0
        elif rule.algorithm == "sliding":
            while self.log and self.log[0] + rule.window <= now:
                self.log.popleft()
        else:
            rate = self.limit / rule.window
            self.tokens = min(float(self.limit), self.tokens + (now - self.stamp) * rate)
            self.stamp = now

    def remaining(self, now: float) -> int:
        self._refresh(now)
        if self.rule.algorithm == "fixed":
            return max(0, self.limit - self.count)
        if self.rule.algorithm == "sliding":
            return max(0, self.limit - len(self.log))
        return max(0, math.floor(self.tokens))

    def take(self, now: float) -> float | None:
        """Count one request; None when allowed, else seconds until one would be."""
        if self.remaining(now) <= 0:
            rule = self.rule
            if rule.algorithm == "fixed":
                return self.start + rule.window - now
            if rule.algorithm == "sliding":
                excess = len(self.log) - self.limit
                return self.log[excess] + rule.window - now
            return (1.0 - self.tokens) / (self.limit / rule.window)
        if self.rule.algorithm == "fixed":
            self.count += 1
        elif self.rule.algorithm == "sliding":
            self.log.append(now)
        else:
            self.tokens -= 1.0
        return None


def _digest(handle: str) -> bytes:
    return hashlib.sha256(handle.encode()).digest()


def fake_profile(handle: str) -> dict[str, Any]:
    """The deterministic profile the fake server returns for *handle*."""
    d = _digest(handle)
    n = int.from_bytes(d[:8], "big")
    followers = n % 50_000_000
    cdn = f"https://p16-sign-va.tiktokcdn.com/{d.hex()[:24]}"
    return {
        "user": {
            "id": str(6_600_000_000_000_000_000 + n % 10**17),
            "shortId": "",
            "uniqueId": handle,
            "nickname": handle.replace("_", " ").replace(".", " ").title(),
            "avatarLarger": f"{cdn}~c5_1080x1080.jpeg",
            "avatarMedium": f"{cdn}~c5_720x720.jpeg",
            "avatarThumb": f"{cdn}~c5_100x100.jpeg",
            "signature": f"Creator #{n % 9973}. Fake profile for offline tests.",
            "createTime": 1_450_000_000 + n % 300_000_000,
            "verified": d[8] % 7 == 0,
            "secUid": "MS4wLjABAAAA" + d.hex()[:52],
            "ftc": False,
            "relation": 0,
            "openFavorite": d[9] % 2 == 0,
            "bioLink": {"link": f"https://example.com/{handle}", "risk": 0},
            "commentSetting": 0,
            "commerceUserInfo": {"commerceUser": d[10] % 5 == 0},
            "duetSetting": 0,
            "stitchSetting": 0,
            "privateAccount": d[11] % 11 == 0,
            "secret": False,
            "isADVirtual": False,
            "roomId": "",
            "uniqueIdModifyTime": 0,
            "ttSeller": False,
            "region": ("US", "GB", "DE", "FR", "BR", "JP", "IN", "MX")[d[12] % 8],
            "downloadSetting": 0,
            "profileTab": {
                "showMusicTab": False,
                "showQuestionTab": d[13] % 2 == 0,
                "showPlayListTab": True,
            },
            "followingVisibility": 1,
            "recommendReason": "",
            "nowInvitationCardUrl": "",
            "nickNameModifyTime": 0,
            "isEmbedBanned": False,
            "canExpPlaylist": True,
            "profileEmbedPermission": 1,
            "language": ("en", "es", "de", "fr", "pt", "ja")[d[14] % 6],
            "eventList": [],
            "suggestAccountBind": False,
            "isOrganization": 0,
        },
        "stats": {
            "followerCount": followers,
            "followingCount": n % 2000,
            "heart": followers * 40,
            "heartCount": followers * 40,
            "videoCount": n % 3000,
            "diggCount": 0,
            "friendCount": n % 500,
        },
        "itemList": [],
    }


def _error(
    status: int, message: str, headers: dict[str, str], *, nested: bool = False
) -> web.Response:
    # The vendor uses two shapes: {"error": "..."} and {"status": "error", "error": {...}}.
    body: dict[str, Any] = {"error": message}
    if nested:
        body = {"status": "error", "error": {"code": f"E{status}", "message": message}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


class FakeDumplingServer:
    """A fake DumplingAI API on 127.0.0.1 (random port unless *port* is given).

    ``api_keys=None`` accepts any non-empty bearer key. ``credits=None`` never runs out.
    ``redirect_to`` answers every request with a 307 to that URL (for testing that
    credentials are never forwarded).
    """

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        credits: int | None = None,
        rate_limit: RateLimitRule | None = None,
        unknown_handles: Iterable[str] = (),
        faults: FaultPlan | None = None,
        latency: float = 0.0,
        retry_after_ms: bool = True,
        nested_errors: bool = False,
        redirect_to: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.credits = credits
        self.rate_limit = rate_limit
        self.unknown_handles = set(unknown_handles)
        self.faults = faults
        self.latency = latency
        self.retry_after_ms = retry_after_ms
        self.nested_errors = nested_errors
        self.redirect_to = redirect_to
        self.records: list[RequestRecord] = []
        self.charged: Counter[str] = Counter()
        self.rate_limited = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._windows: dict[str, _Window] = {}
        self._scripted: dict[str | None, deque[str]] = {}
        self._rng = random.Random(faults.seed if faults else 0)
        self._bodies: dict[str, bytes] = {}
        self._host, self._port = host, port
        self._server: TestServer | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(PROFILE_PATH, self._handle)
        self._server = TestServer(app, host=self._host, port=self._port)
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> FakeDumplingServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The base URL to give the client (``http://127.0.0.1:PORT``)."""
        assert self._server is not None, "start the server first"
        return str(self._server.make_url("")).rstrip("/")

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        port = self._server.port
        assert port is not None
        return port

    # -- control --------------------------------------------------------------------------
    def set_rate_limit(self, limit: int) -> None:
        """Change the limit of the current rule for every key, effective at once."""
        assert self.rate_limit is not None
        self.rate_limit = attrs.evolve(self.rate_limit, limit=limit)
        for window in self._windows.values():
            window.limit = limit
            window.tokens = min(window.tokens, float(limit))

    def inject(self, *kinds: str, handle: str | None = None) -> None:
        """Make the next requests (for *handle*, or any) fail with *kinds*, in order."""
        for kind in kinds:
            if kind not in FAULT_KINDS and kind not in SCRIPTED_ONLY:
                raise ValueError(f"unknown fault {kind!r}")
        self._scripted.setdefault(handle, deque()).extend(kinds)

    # -- what happened --------------------------------------------------------------------
    @property
    def requests(self) -> int:
        return len(self.records)

    @property
    def credits_charged(self) -> int:
        return 10 * sum(self.charged.values())

    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.records)

    def requests_for(self, handle: str) -> list[RequestRecord]:
        return [r for r in self.records if r.handle == handle]

    # -- the endpoint ---------------------------------------------------------------------
    def _record(
        self,
        handle: str | None,
        status: int,
        *,
        charged: bool = False,
        fault: str | None = None,
        authorized: bool = True,
    ) -> None:
        self.records.append(
            RequestRecord(
                handle=handle,
                status=status,
                charged=charged,
                fault=fault,
                at=time.monotonic(),
                authorized=authorized,
            )
        )

    def _error(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        return _error(status, message, headers, nested=self.nested_errors)

    def _rate_headers(self, key: str, now: float) -> dict[str, str]:
        if self.rate_limit is None:
            return {}
        window = self._windows[key]
        return {
            "X-RateLimit-Limit": str(window.limit),
            "X-RateLimit-Remaining": str(window.remaining(now)),
        }

    def _retry_after(self, seconds: float) -> dict[str, str]:
        headers = {"Retry-After": str(max(1, math.ceil(seconds)))}
        if self.retry_after_ms:
            headers["Retry-After-Ms"] = str(max(1, math.ceil(seconds * 1000)))
        return headers

    def _next_fault(self, handle: str | None) -> str | None:
        for key in (handle, None):
            queue = self._scripted.get(key)
            if queue:
                return queue.popleft()
        if self.faults is not None and self._rng.random() < self.faults.rate:
            return self._rng.choice(self.faults.kinds)
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request)
        finally:
            self._in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to is not None:
            self._record(None, 307, authorized="Authorization" in request.headers)
            raise web.HTTPTemporaryRedirect(self.redirect_to + PROFILE_PATH)
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if not key or (self.api_keys is not None and key not in self.api_keys):
            self._record(None, 401, authorized=False)
            return self._error(401, "API key is invalid or missing.", {})
        now = time.monotonic()
        headers: dict[str, str] = {}
        if self.rate_limit is not None:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = _Window(self.rate_limit, now)
            wait = window.take(now)
            headers = self._rate_headers(key, now)
            if wait is not None:
                self.rate_limited += 1
                self._record(None, 429)
                return self._error(
                    429, "Too many requests.", {**headers, **self._retry_after(wait)}
                )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            self._record(None, 400)
            return self._error(400, "Invalid JSON in request body", headers)
        handle = body.get("handle") if isinstance(body, dict) else None
        if not isinstance(handle, str) or not handle:
            self._record(None, 400)
            return self._error(
                400, "'handle' parameter is required and must be a non-empty string.", headers
            )
        if self.latency:
            await asyncio.sleep(self.latency)
        # Checked right before charging (no await in between), so credits never go below 0.
        if self.credits is not None and self.credits < 10:
            self._record(handle, 403)
            return self._error(403, "Insufficient credits. Please top up your account.", headers)
        fault = self._next_fault(handle)
        if fault is not None:
            return await self._fault(request, fault, handle, headers)
        if handle in self.unknown_handles or handle.startswith("unknown"):
            self._record(handle, 404)
            return self._error(404, f"TikTok profile not found for handle: {handle}", headers)
        return self._profile(handle, headers)

    def _profile(self, handle: str, headers: dict[str, str]) -> web.Response:
        payload = self._bodies.get(handle)
        if payload is None:
            if len(self._bodies) > 50_000:
                self._bodies.clear()
            payload = self._bodies[handle] = orjson.dumps(fake_profile(handle))
        if self.credits is not None:
            self.credits -= 10
        self.charged[handle] += 1
        self._record(handle, 200, charged=True)
        return web.Response(body=payload, content_type="application/json", headers=headers)

    async def _fault(
        self, request: web.Request, fault: str, handle: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        plan = self.faults or FaultPlan()
        if fault == "latency":
            await asyncio.sleep(plan.slow_seconds / 4)
            return self._profile(handle, headers)
        status = {"400": 400, "500": 500, "502": 502, "503": 503, "429": 429}.get(fault)
        if status is None:
            # What the client can see: nothing for a drop, the late 500 for slow.
            status = {"drop": 0, "slow": 500, "html_500": 500}.get(fault, 200)
        self._record(handle, status, fault=fault)
        if fault == "400":
            return self._error(400, "The profile service could not process the handle.", headers)
        if fault == "html_500":
            return web.Response(
                status=500,
                text="<html>Internal Server Error</html>",
                content_type="text/html",
                headers=headers,
            )
        if fault == "500":
            return self._error(500, "An unexpected server error occurred.", headers)
        if fault == "502":
            return self._error(502, "The profile service is currently unavailable.", headers)
        if fault == "503":
            return self._error(
                503,
                "Rate limit exceeded with the profile service. Please try again later.",
                {**headers, **self._retry_after(plan.retry_after)},
            )
        if fault == "429":
            return self._error(
                429, "Too many requests.", {**headers, **self._retry_after(plan.retry_after)}
            )
        if fault == "slow":
            await asyncio.sleep(plan.slow_seconds)
            return self._error(500, "slow answer", headers)
        if fault == "html_200":
            return web.Response(
                text="<html><body>Bad gateway</body></html>",
                content_type="text/html",
                headers=headers,
            )
        payload = orjson.dumps(fake_profile(handle))
        if fault == "truncated_json":
            return web.Response(
                body=payload[: len(payload) // 2],
                content_type="application/json",
                headers=headers,
            )
        if fault == "oversized":
            padding = b" " * plan.oversized_bytes
            return web.Response(
                body=payload[:-1] + b',"pad":"' + padding + b'"}',
                content_type="application/json",
                headers=headers,
            )
        transport = request.transport
        if fault == "drop":
            if transport is not None:
                transport.abort()
            return web.Response(status=500)
        if fault == "slow_body":
            # A 200 whose body trickles: half now, the rest after slow_seconds.
            response = web.StreamResponse(headers=headers)
            response.content_type = "application/json"
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            await asyncio.sleep(plan.slow_seconds)
            await response.write(payload[len(payload) // 2 :])
            return response
        # drop_mid_body: promise the whole body, send half, cut the connection.
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.content_length = len(payload)
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        await asyncio.sleep(0.01)
        if transport is not None:
            transport.abort()
        return response
