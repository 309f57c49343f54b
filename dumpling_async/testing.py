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
import re
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

import attrs
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from ._fake_data import (
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
ENDPOINTS = (
    "get-tiktok-profile",
    "get-tiktok-profile-videos",
    "get-tiktok-video",
    "get-tiktok-video-comments",
    "get-tiktok-transcript",
    "get-tiktok-user-followers",
    "get-tiktok-user-following",
    "search-tiktok-users",
)
_PROFILE, _VIDEOS, _VIDEO, _COMMENTS, _TRANSCRIPT, _FOLLOWERS, _FOLLOWING, _SEARCH = ENDPOINTS
API_PREFIX = "/api/v1/"
PROFILE_PATH = API_PREFIX + _PROFILE
# The body field naming what each endpoint is asked about, and the one holding its cursor.
_SUBJECT = {
    _PROFILE: "handle",
    _VIDEOS: "handle",
    _VIDEO: "url",
    _COMMENTS: "url",
    _TRANSCRIPT: "videoUrl",
    _FOLLOWERS: "handle",
    _FOLLOWING: "handle",
    _SEARCH: "query",
}
_CURSOR = {
    _VIDEOS: "maxCursor",
    _COMMENTS: "cursor",
    _FOLLOWERS: "minTime",
    _FOLLOWING: "minTime",
    _SEARCH: "cursor",
}
_BY_HANDLE = frozenset({_PROFILE, _VIDEOS, _FOLLOWERS, _FOLLOWING})
_BY_VIDEO = frozenset({_VIDEO, _COMMENTS, _TRANSCRIPT})
_COUNTED = frozenset({_COMMENTS, _FOLLOWERS, _FOLLOWING, _SEARCH})
MAX_COUNT = 50
REQUEST_SOURCES = frozenset(
    {"API", "WEB", "MAKE_DOT_COM", "ZAPIER", "N8N", "PLAYGROUND", "DEFAULT_AUTOMATION",
     "AGENT_PREVIEW", "AGENT_LIVE", "AUTOPILOT", "STUDIO"}
)  # fmt: skip
# At most a u64, so hostile cursors stay cheap to parse.
_DIGITS = re.compile(r"[0-9]{0,20}")


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


@attrs.frozen
class _Seen:
    """What a request asked, for its record."""

    endpoint: str
    subject: str | None = None
    cursor: str | None = None


@attrs.frozen
class _Query:
    """A valid request body: *cursor* is the offset, maxCursor or minTime (0 = start)."""

    subject: str
    cursor: int = 0
    count: int | None = None
    trim: bool = False
    language: str = "en"


class _BadRequest(Exception):
    """A body the vendor answers 400, with this message."""


def _whole(value: object) -> int | None:
    """*value* as an int when it is a whole JSON number (a bool is not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _optional(body: dict[str, Any], field: str, kind: type, default: Any) -> Any:
    # null counts as absent, as it does for the vendor's JavaScript.
    value = body.get(field)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _BadRequest(f"'{field}' must be a {kind.__name__}.")
    return value


def _parse(endpoint: str, body: dict[str, Any]) -> _Query:
    """Check *body* for *endpoint* as the vendor does; raise _BadRequest if it is bad."""
    field = _SUBJECT[endpoint]
    subject = body.get(field)
    if not isinstance(subject, str) or not subject:
        raise _BadRequest(f"'{field}' parameter is required and must be a non-empty string.")
    if endpoint in _BY_VIDEO and parse_video_url(subject) is None:
        raise _BadRequest("Invalid TikTok video URL")
    source = body.get("requestSource")
    if source is not None and (not isinstance(source, str) or source not in REQUEST_SOURCES):
        raise _BadRequest("'requestSource' must be one of: " + ", ".join(sorted(REQUEST_SOURCES)))
    cursor, name = 0, _CURSOR.get(endpoint)
    if name == "maxCursor":
        text = _optional(body, name, str, "")
        if not _DIGITS.fullmatch(text):
            raise _BadRequest("'maxCursor' must be a string of digits.")
        cursor = int(text or "0")
    elif name is not None and body.get(name) is not None:
        whole = _whole(body[name])
        if whole is None or whole < 0:
            raise _BadRequest(f"'{name}' must be a non-negative integer.")
        cursor = whole
    count = None
    if endpoint in _COUNTED and body.get("count") is not None:
        count = _whole(body["count"])
        if count is None or count < 1:
            raise _BadRequest("'count' must be a positive integer.")
        count = min(count, MAX_COUNT)
    trim = _optional(body, "trim", bool, False) if endpoint == _VIDEOS else False
    language = "en"
    if endpoint == _TRANSCRIPT:
        language = _optional(body, "preferredLanguage", str, "en")
    return _Query(subject, cursor, count, trim, language)


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
        self._windows: dict[str, _Window] = {}
        self._scripted: dict[tuple[str | None, str | None], deque[str]] = {}
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
    ) -> None:
        """Make the next requests fail with *kinds*, in order: those about *subject* (the
        handle, url, videoUrl or query as sent; ``handle=`` is the same), on *endpoint*,
        or any."""
        for kind in kinds:
            if kind not in FAULT_KINDS and kind not in SCRIPTED_ONLY:
                raise ValueError(f"unknown fault {kind!r}")
        if handle is not None and subject is not None and handle != subject:
            raise ValueError("give handle= or subject=, not both")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        key = (endpoint, subject if subject is not None else handle)
        self._scripted.setdefault(key, deque()).extend(kinds)

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
        seen: _Seen,
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
                handle=seen.subject if seen.endpoint in _BY_HANDLE else None,
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
            self._record(_Seen(endpoint), 307, authorized="Authorization" in request.headers)
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path)
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if not key or (self.api_keys is not None and key not in self.api_keys):
            self._record(_Seen(endpoint), 401, authorized=False)
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
                self._record(_Seen(endpoint), 429)
                return self._error(
                    429, "Too many requests.", {**headers, **self._retry_after(wait)}
                )
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            self._record(_Seen(endpoint), 400)
            return self._error(400, "Invalid JSON in request body", headers)
        if not isinstance(body, dict):
            body = {}
        seen = _seen(endpoint, body)
        try:
            query = _parse(endpoint, body)
        except _BadRequest as exc:
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
        if endpoint == _PROFILE:
            self.charged[query.subject] += 1
        self._record(seen, 200, credits=cost)
        return web.Response(body=answer, content_type="application/json", headers=headers)

    def _short_of_credits(self, endpoint: str) -> bool:
        return self.credits is not None and self.credits < self.costs[endpoint]

    def _no_credits(self, seen: _Seen, headers: dict[str, str]) -> web.Response:
        self._record(seen, 403)
        return self._error(403, "Insufficient credits. Please top up your account.", headers)

    def _lookup(self, endpoint: str, query: _Query) -> bytes | str:
        """The body of the normal answer, or the message of its 404."""
        subject = query.subject
        if endpoint in _BY_HANDLE and (
            subject in self.unknown_handles or subject.startswith("unknown")
        ):
            return f"TikTok profile not found for handle: {subject}"
        parsed = parse_video_url(subject) if endpoint in _BY_VIDEO else None
        if parsed is not None and (
            parsed[1] in self.unknown_videos or parsed[0].startswith("unknown")
        ):
            if endpoint == _TRANSCRIPT:
                return "No subtitles found for this video"
            return f"TikTok video not found: {subject}"
        if endpoint == _PROFILE:
            payload = self._bodies.get(subject)
            if payload is None:
                if len(self._bodies) > 50_000:
                    self._bodies.clear()
                payload = self._bodies[subject] = orjson.dumps(fake_profile(subject))
            return payload
        data = self._payload(endpoint, query)
        return "No subtitles found for this video" if data is None else orjson.dumps(data)

    def _payload(self, endpoint: str, query: _Query) -> dict[str, Any] | None:
        subject, cursor = query.subject, query.cursor
        size = query.count or self.page_size
        if endpoint == _VIDEO:
            return fake_video(subject)
        if endpoint == _TRANSCRIPT:
            return fake_transcript(subject, query.language)
        if endpoint == _VIDEOS:
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
        if endpoint in (_FOLLOWERS, _FOLLOWING):
            entries = relation_entries(subject, endpoint.rsplit("-", 1)[1])
            later = [(t, e) for t, e in entries if t < cursor] if cursor else entries
            head = later[:size]
            return {
                "followers" if endpoint == _FOLLOWERS else "followingList": [e for _, e in head],
                "minCursor": head[-1][0] if head else 0,
                "maxCursor": head[0][0] if head else 0,
                "hasMore": len(later) > len(head),
                "total": len(entries),
            }
        found = fake_comments(subject) if endpoint == _COMMENTS else fake_search_users(subject)
        page = found[cursor : cursor + size]
        after = cursor + len(page)
        if endpoint == _SEARCH:
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
        query: _Query,
        seen: _Seen,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        plan = self.faults or FaultPlan()
        status = {"400": 400, "500": 500, "502": 502, "503": 503, "429": 429}.get(fault)
        if status is None:
            # What the client can see: nothing for a drop, the late 500 for slow.
            status = {"drop": 0, "slow": 500, "html_500": 500}.get(fault, 200)
        self._record(seen, status, fault=fault)
        service = "profile service" if endpoint == _PROFILE else "TikTok service"
        if fault == "400":
            what = "handle" if endpoint == _PROFILE else "request"
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


def _seen(endpoint: str, body: dict[str, Any]) -> _Seen:
    """The subject and cursor of *body* as sent, whatever their types."""
    subject = body.get(_SUBJECT[endpoint])
    name = _CURSOR.get(endpoint)
    cursor = body.get(name) if name is not None else None
    return _Seen(
        endpoint,
        subject if isinstance(subject, str) else None,
        None if cursor is None else str(cursor),
    )
