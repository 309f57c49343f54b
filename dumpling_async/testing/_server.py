"""``FakeDumplingServer``: the fake DumplingAI API itself (see the package docstring).

Auth, credits, the per-key rate limit and the request record are here; the data comes
from ``_data``, the body checks from ``_requests``, the quota algorithms from ``_quota``
and the injected faults from ``_faults``.
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
    fake_profile,
    fake_profile_videos,
    fake_search_users,
    fake_transcript,
    fake_video,
    parse_video_url,
    relation_entries,
)
from ._faults import (
    FAULT_KINDS,
    SCRIPTED_ONLY,
    SEEN_STATUS,
    FaultPlan,
    error_response,
    fault_response,
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

__all__ = ["FakeDumplingServer", "RequestRecord"]


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


class FakeDumplingServer:
    """A fake DumplingAI API on 127.0.0.1 (random port unless *port* is given).

    ``api_keys=None`` accepts any non-empty bearer key. ``credits=None`` never runs out;
    ``costs`` maps endpoint names to what a 200 costs (10 for any not given). Pages hold
    a request's ``count`` (at most 50) or ``page_size`` items. ``redirect_to`` answers
    every request with a 307 to that URL (for testing that credentials are never
    forwarded). ``charge_abandoned=True`` finishes and charges a request whose client
    gave up on it (timed out, cancelled, disconnected), as most web stacks do: the
    client cannot know whether it paid. ``idle()`` waits for such requests to finish.
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
        charge_abandoned: bool = False,
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
        self.charge_abandoned = charge_abandoned
        self.abandoned = 0  # requests whose client left before the answer (charge_abandoned)
        self.records: list[RequestRecord] = []
        self.charged: Counter[str] = Counter()  # charged profile lookups, by handle
        self.charges: Counter[tuple[str, str]] = Counter()  # by (endpoint, subject)
        self.rate_limited = 0
        self.max_in_flight = 0
        self._credits_charged = 0
        self._in_flight = 0
        self._quiet: asyncio.Event | None = None  # set when the last request in flight ends
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
        return error_response(status, message, headers, nested=self.nested_errors)

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
        if not self.charge_abandoned:
            return await self._serve(request)
        # As real stacks do: a request whose client left is finished, and charged.
        serving = asyncio.ensure_future(self._serve(request))
        try:
            return await asyncio.shield(serving)
        except asyncio.CancelledError:
            self.abandoned += 1
            raise

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            return await self._answer(request)
        finally:
            self._in_flight -= 1
            if not self._in_flight and self._quiet is not None:
                self._quiet.set()

    async def idle(self) -> None:
        """Wait until no request is being served (abandoned ones included), so that
        ``charged`` and ``records`` are final. Bound it with ``asyncio.timeout``."""
        while self._in_flight:
            if self._quiet is None:
                self._quiet = asyncio.Event()
            self._quiet.clear()
            await self._quiet.wait()

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
            self._record(seen, SEEN_STATUS.get(fault, 200), fault=fault)
            plan = self.faults or FaultPlan()
            return await fault_response(
                fault,
                request=request,
                plan=plan,
                service="profile service" if endpoint == PROFILE else "TikTok service",
                headers=headers,
                error=self._error,
                retry_after=self._retry_after(plan.retry_after),
                payload=lambda: self._answer_body(endpoint, query),
            )
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

    def _answer_body(self, endpoint: str, query: Query) -> bytes:
        """The body this request would have had; a would-be 404's error body, if that."""
        answer = self._lookup(endpoint, query)
        return orjson.dumps({"error": answer}) if isinstance(answer, str) else answer

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
