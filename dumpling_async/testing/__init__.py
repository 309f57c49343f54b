"""``FakeDumplingServer``: an in-process DumplingAI server for offline tests.

It serves the vendor's TikTok endpoints (all ``POST /api/v1/<name>``, names in
``ENDPOINTS``) with deterministic data from the ``fake_*`` functions:

- ``get-tiktok-profile`` ``{handle}``: ``fake_profile(handle)``.
- ``get-tiktok-profile-videos`` ``{handle, maxCursor?, trim?}``: ``fake_profile_videos``,
  paged by ``maxCursor`` (the previous page's ``max_cursor``; ``has_more`` is 1 or 0).
- ``get-tiktok-video`` ``{url}``: ``fake_video(url)``.
- ``get-tiktok-video-comments`` ``{url, cursor?, count?}``: ``fake_comments``, paged by offset.
- ``get-tiktok-transcript`` ``{videoUrl, preferredLanguage?}``: ``fake_transcript`` (WebVTT).
- ``get-tiktok-user-followers`` / ``get-tiktok-user-following`` ``{handle, minTime?,
  count?}``: ``fake_followers`` / ``fake_following``, paged by follow time.
- ``search-tiktok-users`` ``{query, cursor?, count?}``: ``fake_search_users``, by offset.

All share bearer-key auth (401), credits (403 when below the endpoint's cost, 10 each
unless ``costs`` says otherwise), one per-key rate limit with ``X-RateLimit-Limit`` /
``X-RateLimit-Remaining`` on every response and 429 + ``Retry-After`` when exceeded (fixed
window, sliding window or token bucket), 400 for a missing field or a bad video URL, and
injectable faults. It records what it was asked and what it charged, so tests can assert
on the server's own view::

    async with FakeDumplingServer(rate_limit=RateLimitRule(40, 0.5)) as server:
        async with AsyncDumplingClient("any-key", base_url=server.url) as client:
            await client.get_tiktok_profile("someone")
        assert server.charged["someone"] == 1

A handle is unknown (404) when it is in ``unknown_handles`` or starts with ``unknown``; a
video when its id is in ``unknown_videos`` or its URL's user starts with ``unknown``.
Handles starting with ``empty`` have no videos, followers or followings; queries starting
with ``nobody`` find no one. 404s are never charged. Nor are injected faults: they model
requests the vendor did not complete (a client still counts a 200 it could not use as
spent, to stay on the safe side of a budget). The ``latency`` fault is a slow but normal,
charged answer.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from ._data import (
    fake_comments,
    fake_followers,
    fake_following,
    fake_profile,
    fake_profile_videos,
    fake_search_users,
    fake_transcript,
    fake_transcript_cues,
    fake_video,
    fake_video_id,
    parse_video_url,
    relation_entries,
)
from ._quota import RateLimitRule, Window
from ._requests import (
    API_PREFIX,
    BY_HANDLE,
    BY_VIDEO,
    COMMENTS,
    ENDPOINTS,
    FOLLOWERS,
    FOLLOWING,
    PROFILE,
    SEARCH,
    TRANSCRIPT,
    VIDEO,
    VIDEOS,
    BadRequest,
    Query,
    Seen,
    parse_body,
    seen_in,
)

__all__ = [
    "ENDPOINTS",
    "FAULT_KINDS",
    "FakeDumplingServer",
    "FaultPlan",
    "RateLimitRule",
    "RequestRecord",
    "fake_comments",
    "fake_followers",
    "fake_following",
    "fake_profile",
    "fake_profile_videos",
    "fake_search_users",
    "fake_transcript",
    "fake_transcript_cues",
    "fake_video",
    "fake_video_id",
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
    """One request as the server saw it.

    ``endpoint`` is the name from the path; ``subject`` the handle, URL, videoUrl or query
    as sent (None when the body was not read or lacked it); ``handle`` the subject of the
    handle-based endpoints only; ``cursor`` the cursor/maxCursor/minTime sent, as a string;
    ``credits`` what this request was charged.
    """

    endpoint: str
    subject: str | None
    handle: str | None
    cursor: str | None
    status: int
    charged: bool
    credits: int
    fault: str | None
    at: float
    authorized: bool


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

    ``api_keys=None`` accepts any non-empty bearer key. ``credits=None`` never runs out;
    ``costs`` maps endpoint names to what a 200 costs (10 for any not given). Pages hold
    a request's ``count`` (at most 50) or ``page_size`` items. ``redirect_to`` answers
    every request with a 307 to that URL (for testing that credentials are never
    forwarded).
    """

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        credits: int | None = None,
        rate_limit: RateLimitRule | None = None,
        unknown_handles: Iterable[str] = (),
        unknown_videos: Iterable[str] = (),
        costs: Mapping[str, int] | None = None,
        page_size: int = 10,
        faults: FaultPlan | None = None,
        latency: float = 0.0,
        retry_after_ms: bool = True,
        nested_errors: bool = False,
        redirect_to: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        costs = dict(costs or {})
        if set(costs) - set(ENDPOINTS) or any(c < 0 for c in costs.values()):
            raise ValueError(f"costs must map names in ENDPOINTS to credits >= 0: {costs}")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.credits = credits
        self.costs: dict[str, int] = {**dict.fromkeys(ENDPOINTS, 10), **costs}
        self.page_size = page_size
        self.rate_limit = rate_limit
        self.unknown_handles = set(unknown_handles)
        self.unknown_videos = set(unknown_videos)
        self.faults = faults
        self.latency = latency
        self.retry_after_ms = retry_after_ms
        self.nested_errors = nested_errors
        self.redirect_to = redirect_to
        self.records: list[RequestRecord] = []
        self.charged: Counter[str] = Counter()  # charged profile lookups, by handle
        self.charges: Counter[tuple[str, str]] = Counter()  # by (endpoint, subject)
        self.rate_limited = 0
        self.max_in_flight = 0
        self._credits_charged = 0
        self._in_flight = 0
        self._windows: dict[str, Window] = {}
        self._scripted: dict[tuple[str | None, str | None], deque[str]] = {}
        self._skips: dict[tuple[str | None, str | None], int] = {}  # requests let through first
        self._rng = random.Random(faults.seed if faults else 0)
        self._bodies: dict[str, bytes] = {}
        self._host, self._port = host, port
        self._server: TestServer | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        for endpoint in ENDPOINTS:
            app.router.add_post(API_PREFIX + endpoint, self._handle)
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

    def inject(
        self,
        *kinds: str,
        handle: str | None = None,
        subject: str | None = None,
        endpoint: str | None = None,
        skip: int = 0,
    ) -> None:
        """Make the next requests fail with *kinds*, in order: those about *subject* (the
        handle, url, videoUrl or query as sent; ``handle=`` is the same), on *endpoint*,
        or any. *skip* lets that many of them through first: ``skip=1`` fails a listing's
        second page."""
        for kind in kinds:
            if kind not in FAULT_KINDS and kind not in SCRIPTED_ONLY:
                raise ValueError(f"unknown fault {kind!r}")
        if handle is not None and subject is not None and handle != subject:
            raise ValueError("give handle= or subject=, not both")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if skip < 0:
            raise ValueError("skip must be >= 0")
        key = (endpoint, subject if subject is not None else handle)
        self._scripted.setdefault(key, deque()).extend(kinds)
        self._skips[key] = self._skips.get(key, 0) + skip

    # -- what happened --------------------------------------------------------------------
    @property
    def requests(self) -> int:
        return len(self.records)

    @property
    def credits_charged(self) -> int:
        """Credits charged on all endpoints."""
        return self._credits_charged

    def statuses(self) -> Counter[int]:
        return Counter(r.status for r in self.records)

    def requests_for(self, handle: str) -> list[RequestRecord]:
        return [r for r in self.records if r.handle == handle]

    def requests_to(self, endpoint: str, subject: str | None = None) -> list[RequestRecord]:
        """The requests to *endpoint* (about *subject*, if given)."""
        return [
            r
            for r in self.records
            if r.endpoint == endpoint and (subject is None or r.subject == subject)
        ]

    # -- the endpoints --------------------------------------------------------------------
    def _record(
        self,
        seen: Seen,
        status: int,
        *,
        credits: int | None = None,
        fault: str | None = None,
        authorized: bool = True,
    ) -> None:
        self.records.append(
            RequestRecord(
                endpoint=seen.endpoint,
                subject=seen.subject,
                handle=seen.subject if seen.endpoint in BY_HANDLE else None,
                cursor=seen.cursor,
                status=status,
                charged=credits is not None,
                credits=credits or 0,
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

    def _next_fault(self, endpoint: str, subject: str) -> str | None:
        # The most specific script first: this endpoint and subject, then either, then any.
        for key in ((endpoint, subject), (None, subject), (endpoint, None), (None, None)):
            queue = self._scripted.get(key)
            if queue:
                if self._skips.get(key):
                    self._skips[key] -= 1
                    return None
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
        endpoint = request.path.removeprefix(API_PREFIX)
        if self.redirect_to is not None:
            self._record(Seen(endpoint), 307, authorized="Authorization" in request.headers)
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path)
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if not key or (self.api_keys is not None and key not in self.api_keys):
            self._record(Seen(endpoint), 401, authorized=False)
            return self._error(401, "API key is invalid or missing.", {})
        now = time.monotonic()
        headers: dict[str, str] = {}
        if self.rate_limit is not None:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = Window(self.rate_limit, now)
            wait = window.take(now)
            headers = self._rate_headers(key, now)
            if wait is not None:
                self.rate_limited += 1
                self._record(Seen(endpoint), 429)
                return self._error(
                    429, "Too many requests.", {**headers, **self._retry_after(wait)}
                )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            self._record(Seen(endpoint), 400)
            return self._error(400, "Invalid JSON in request body", headers)
        if not isinstance(body, dict):
            body = {}
        seen = seen_in(endpoint, body)
        try:
            query = parse_body(endpoint, body)
        except BadRequest as exc:
            self._record(seen, 400)
            return self._error(400, str(exc), headers)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self._short_of_credits(endpoint):
            return self._no_credits(seen, headers)
        fault = self._next_fault(endpoint, query.subject)
        if fault == "latency":
            await asyncio.sleep((self.faults or FaultPlan()).slow_seconds / 4)
            fault = None
            if self._short_of_credits(endpoint):  # checked again: the sleep let others spend
                return self._no_credits(seen, headers)
        if fault is not None:
            return await self._fault(request, fault, endpoint, query, seen, headers)
        answer = self._lookup(endpoint, query)
        if isinstance(answer, str):
            self._record(seen, 404)
            return self._error(404, answer, headers)
        # No await since the credit check, so credits never go below 0.
        cost = self.costs[endpoint]
        if self.credits is not None:
            self.credits -= cost
        self._credits_charged += cost
        self.charges[endpoint, query.subject] += 1
        if endpoint == PROFILE:
            self.charged[query.subject] += 1
        self._record(seen, 200, credits=cost)
        return web.Response(body=answer, content_type="application/json", headers=headers)

    def _short_of_credits(self, endpoint: str) -> bool:
        return self.credits is not None and self.credits < self.costs[endpoint]

    def _no_credits(self, seen: Seen, headers: dict[str, str]) -> web.Response:
        self._record(seen, 403)
        return self._error(403, "Insufficient credits. Please top up your account.", headers)

    def _lookup(self, endpoint: str, query: Query) -> bytes | str:
        """The body of the normal answer, or the message of its 404."""
        subject = query.subject
        if endpoint in BY_HANDLE and (
            subject in self.unknown_handles or subject.startswith("unknown")
        ):
            return f"TikTok profile not found for handle: {subject}"
        parsed = parse_video_url(subject) if endpoint in BY_VIDEO else None
        if parsed is not None and (
            parsed[1] in self.unknown_videos or parsed[0].startswith("unknown")
        ):
            if endpoint == TRANSCRIPT:
                return "No subtitles found for this video"
            return f"TikTok video not found: {subject}"
        if endpoint == PROFILE:
            payload = self._bodies.get(subject)
            if payload is None:
                if len(self._bodies) > 50_000:
                    self._bodies.clear()
                payload = self._bodies[subject] = orjson.dumps(fake_profile(subject))
            return payload
        data = self._payload(endpoint, query)
        return "No subtitles found for this video" if data is None else orjson.dumps(data)

    def _payload(self, endpoint: str, query: Query) -> dict[str, Any] | None:
        subject, cursor = query.subject, query.cursor
        size = query.count or self.page_size
        if endpoint == VIDEO:
            return fake_video(subject)
        if endpoint == TRANSCRIPT:
            return fake_transcript(subject, query.language)
        if endpoint == VIDEOS:
            items = fake_profile_videos(subject)
            if cursor:  # the cursor is a time in ms: older items than the last page's
                items = [i for i in items if i["create_time"] * 1000 < cursor]
            page = items[: self.page_size]
            if query.trim:
                page = [{k: v for k, v in item.items() if k != "video"} for item in page]
            return {
                "status_code": 0,
                "aweme_list": page,
                "max_cursor": page[-1]["create_time"] * 1000 if page else 0,
                "min_cursor": page[0]["create_time"] * 1000 if page else 0,
                "has_more": int(len(items) > len(page)),  # the vendor's integer flag
                "extra": {"now": int(time.time() * 1000)},
            }
        if endpoint in (FOLLOWERS, FOLLOWING):
            entries = relation_entries(subject, endpoint.rsplit("-", 1)[1])
            later = [(t, e) for t, e in entries if t < cursor] if cursor else entries
            head = later[:size]
            return {
                "followers" if endpoint == FOLLOWERS else "followingList": [e for _, e in head],
                "minCursor": head[-1][0] if head else 0,
                "maxCursor": head[0][0] if head else 0,
                "hasMore": len(later) > len(head),
                "total": len(entries),
            }
        found = fake_comments(subject) if endpoint == COMMENTS else fake_search_users(subject)
        page = found[cursor : cursor + size]
        after = cursor + len(page)
        if endpoint == SEARCH:
            return {"userList": page, "cursor": after, "hasMore": after < len(found)}
        return {
            "comments": page,
            "cursor": after,
            "hasMore": after < len(found),
            "total": len(found),
            "status_code": 0,
        }

    async def _fault(
        self,
        request: web.Request,
        fault: str,
        endpoint: str,
        query: Query,
        seen: Seen,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        plan = self.faults or FaultPlan()
        status = {"400": 400, "500": 500, "502": 502, "503": 503, "429": 429}.get(fault)
        if status is None:
            # What the client can see: nothing for a drop, the late 500 for slow.
            status = {"drop": 0, "slow": 500, "html_500": 500}.get(fault, 200)
        self._record(seen, status, fault=fault)
        service = "profile service" if endpoint == PROFILE else "TikTok service"
        if fault == "400":
            what = "handle" if endpoint == PROFILE else "request"
            return self._error(400, f"The {service} could not process the {what}.", headers)
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
            return self._error(502, f"The {service} is currently unavailable.", headers)
        if fault == "503":
            return self._error(
                503,
                f"Rate limit exceeded with the {service}. Please try again later.",
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
        # The body this request would have had; a would-be 404's error body, if that.
        answer = self._lookup(endpoint, query)
        payload = orjson.dumps({"error": answer}) if isinstance(answer, str) else answer
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
