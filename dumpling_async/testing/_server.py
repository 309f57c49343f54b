"""``FakeDumplingServer``: the fake DumplingAI API itself (see the package docstring).

Auth, credits, the per-key rate limit and the request record are here; the answers come
from ``_answers`` (over ``_data``), the body checks from ``_requests``, the quota
algorithms from ``_quota``, the rate-limit header forms from ``_headers``, the answer
times from ``_latency`` and the injected faults from ``_faults``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Collection, Iterable, Mapping

import attrs
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from ._answers import Answers
from ._faults import (
    SEEN_STATUS,
    FaultPlan,
    FaultScript,
    error_response,
    fault_response,
)
from ._headers import (
    HeadersHook,
    Hostile,
    Quota,
    ResetHeaders,
    RetryAfterRounding,
    check_header_options,
    is_rate_limit_header,
    rate_limit_headers,
    retry_after_headers,
)
from ._latency import AnswerTime
from ._quota import RateLimitRule, Window, aligns_to_clock
from ._record import Ledger, RequestRecord
from ._requests import (
    API_PREFIX,
    ENDPOINTS,
    PROFILE,
    BadRequest,
    Query,
    Seen,
    parse_body,
    seen_in,
)

__all__ = ["FakeDumplingServer", "RequestRecord"]  # RequestRecord: from ._record


class FakeDumplingServer(Ledger):
    """A fake DumplingAI API on 127.0.0.1 (random port unless *port* is given).

    ``api_keys=None`` accepts any non-empty bearer key. ``credits=None`` never runs out;
    ``costs`` maps endpoint names to what a 200 costs (10 for any not given). Pages hold
    a request's ``count`` (at most 50) or ``page_size`` items. ``redirect_to`` answers
    every request with a 307 to that URL (for testing that credentials are never
    forwarded). ``charge_abandoned=True`` finishes and charges a request whose client
    gave up on it (timed out, cancelled, disconnected), as most web stacks do: the
    client cannot know whether it paid. ``idle()`` waits for such requests to finish.

    ``latency`` is how long each request that passed the body checks waits before it is
    answered: seconds, or an ``AnswerTime`` drawn per request from a
    ``random.Random(latency_seed)`` of the server's own. The request was counted against
    the rate limit when it arrived, before that wait, as real servers count it.

    Rate-limit headers (with a ``rate_limit``): ``reset_headers``, one of
    ``RESET_HEADERS``, picks the form. ``"none"``: ``X-RateLimit-Limit`` and
    ``X-RateLimit-Remaining`` only. ``"x-seconds"``: also ``X-RateLimit-Reset`` in seconds
    (3 decimals, rounded up). ``"x-unix"``: also ``X-RateLimit-Reset`` as a Unix time
    (whole seconds, rounded up, GitHub style). ``"x-unix-ms"``: the same in integer
    milliseconds, rounded up. ``"x-seconds-whole"``: also ``X-RateLimit-Reset`` in whole
    seconds, rounded up. ``"ietf"``: instead ``RateLimit-Limit``, ``RateLimit-Remaining``,
    ``RateLimit-Reset`` (whole seconds, rounded up) and
    ``RateLimit-Policy: <limit>;w=<window seconds>``. ``"ietf-structured"``: instead
    ``RateLimit: limit=L, remaining=R, reset=S`` and ``RateLimit-Policy``. The reset is
    the time until one more request is allowed when Remaining is 0, else until the whole
    quota is back (``Window.reset_after``). ``RateLimitRule(aligned=True)`` windows run
    on the Unix clock (``time.time()``, held still if it steps back), so they end on
    multiples of the window in Unix time and the Unix-time resets say exactly those ends.

    A 429 has ``Retry-After`` (whole seconds, rounded up to at least 1, or with
    ``retry_after_rounding="down"`` rounded down, 0 for a wait under a second, as
    ``Math.floor`` in a Node handler gives; with ``retry_after_ms`` also
    ``Retry-After-Ms`` in milliseconds, rounded up) unless ``retry_after_on_429=False``.
    ``retry_after_always=True`` also puts ``Retry-After: <window, rounded up>`` on every
    other response that has rate-limit headers, where it means nothing.

    ``hostile_headers``, one of ``HOSTILE_HEADERS``, sends hostile values while the real
    rule is still applied: ``"limit_zero"`` (Limit 0, Remaining 0),
    ``"remaining_over_limit"`` (Remaining = Limit + 5), ``"huge_limit"`` (Limit 10**14,
    Remaining 10**14 minus what is used), ``"garbage"`` (Limit, Remaining and Reset cycle
    through ``GARBAGE_VALUES``, one step per response), ``"negative"`` (all -5).
    ``headers_hook(status, headers)`` is given every response's rate-limit headers
    (``X-RateLimit-*``, ``RateLimit*``, ``Retry-After*``) last and returns the ones to send.
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
        latency: float | AnswerTime = 0.0,
        latency_seed: int | None = None,
        retry_after_ms: bool = True,
        retry_after_rounding: RetryAfterRounding = "up",
        nested_errors: bool = False,
        redirect_to: str | None = None,
        charge_abandoned: bool = False,
        reset_headers: ResetHeaders = "none",
        retry_after_on_429: bool = True,
        retry_after_always: bool = False,
        hostile_headers: Hostile | None = None,
        headers_hook: HeadersHook | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        costs = dict(costs or {})
        if set(costs) - set(ENDPOINTS) or any(c < 0 for c in costs.values()):
            raise ValueError(f"costs must map names in ENDPOINTS to credits >= 0: {costs}")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        check_header_options(reset_headers, hostile_headers, retry_after_rounding)
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
        self.retry_after_rounding: RetryAfterRounding = retry_after_rounding
        self.nested_errors = nested_errors
        self.redirect_to = redirect_to
        self.charge_abandoned = charge_abandoned
        self.reset_headers: ResetHeaders = reset_headers
        self.retry_after_on_429 = retry_after_on_429
        self.retry_after_always = retry_after_always
        self.hostile_headers: Hostile | None = hostile_headers
        self.headers_hook = headers_hook
        super().__init__()  # the record: records, charged, charges, rate_limited, user_agents
        self.abandoned = 0  # requests whose client left before the answer (charge_abandoned)
        self.max_in_flight = 0
        self._in_flight = 0
        self._quiet: asyncio.Event | None = None  # set when the last request in flight ends
        self._windows: dict[str, Window] = {}
        self._wall = 0.0  # the aligned windows' last time.time(): their clock never goes back
        self._latency_rng = random.Random(latency_seed)
        self._script = FaultScript(faults.seed if faults else 0)
        self._answers = Answers()
        self._sent = 0  # responses with rate-limit headers so far (steps the garbage)
        self._host, self._port = host, port
        self._server: TestServer | None = None

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=1024 * 1024)
        for endpoint in ENDPOINTS:
            app.router.add_post(API_PREFIX + endpoint, self._handle)
        app.on_response_prepare.append(self._apply_hook)
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

    @property
    def in_flight(self) -> int:
        """Requests being served now (abandoned ones still being finished included)."""
        return self._in_flight

    # -- control --------------------------------------------------------------------------
    def set_rate_limit(self, limit: int) -> None:
        """Change the limit of the current rule for every key, effective at once; what
        each key has used is kept (a token bucket's extra tokens are dropped, and a
        ``refill`` stays: a limit below it is a ValueError)."""
        assert self.rate_limit is not None
        self.rate_limit = attrs.evolve(self.rate_limit, limit=limit)
        for window in self._windows.values():
            window.set_limit(limit)

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
        if handle is not None and subject is not None and handle != subject:
            raise ValueError("give handle= or subject=, not both")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        self._script.add(kinds, (endpoint, subject if subject is not None else handle), skip)

    def _error(self, status: int, message: str, headers: dict[str, str]) -> web.Response:
        return error_response(status, message, headers, nested=self.nested_errors)

    def _rate_headers(self, window: Window, now: float, wall: float) -> dict[str, str]:
        quota = Quota(
            window.limit, window.remaining(now), window.reset_after(now), window.rule.window
        )
        self._sent += 1
        headers = rate_limit_headers(
            self.reset_headers,
            quota,
            hostile=self.hostile_headers,
            seq=self._sent - 1,
            wall=wall,
        )
        if self.retry_after_always:
            headers["Retry-After"] = str(max(1, math.ceil(window.rule.window)))
        return headers

    def _retry_after(self, seconds: float) -> dict[str, str]:
        return retry_after_headers(
            seconds, ms=self.retry_after_ms, rounding=self.retry_after_rounding
        )

    def _answer_time(self) -> float:
        """How long this request waits before it is answered (``latency``)."""
        if isinstance(self.latency, AnswerTime):
            return self.latency.sample(self._latency_rng)
        return self.latency

    def _clock(self, rule: RateLimitRule) -> tuple[float, float]:
        """The time to give *rule*'s windows, and the Unix time the reset headers count
        from. Aligned windows get Unix time, so they start at multiples of the window in
        Unix time and a Unix reset names their end; the others keep the monotonic clock,
        whose small values keep the algorithms' arithmetic exact (at today's Unix time a
        float is only good to 2.4e-7 s, which shows in GCRA's and the buckets' counts)."""
        if aligns_to_clock(rule):
            self._wall = max(time.time(), self._wall)
            return self._wall, self._wall
        return time.monotonic(), time.time()

    def _quota(self, key: str, endpoint: str) -> tuple[dict[str, str], web.Response | None]:
        """Count this request against *key*'s quota: its rate-limit headers, and the 429
        to answer if it is over."""
        if self.rate_limit is None:
            return {}, None
        window = self._windows.get(key)
        now, wall = self._clock(self.rate_limit if window is None else window.rule)
        if window is None:
            window = self._windows[key] = Window(self.rate_limit, now)
        wait = window.take(now)
        headers = self._rate_headers(window, now, wall)
        if wait is None:
            return headers, None
        self.rate_limited += 1
        self._record(Seen(endpoint), 429)
        if self.retry_after_on_429:
            headers.update(self._retry_after(wait))
        else:
            headers.pop("Retry-After", None)
        return headers, self._error(429, "Too many requests.", headers)

    async def _apply_hook(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.headers_hook is None:
            return
        ours = {k: v for k, v in response.headers.items() if is_rate_limit_header(k)}
        for name in ours:
            response.headers.popall(name, None)
        response.headers.update(self.headers_hook(response.status, ours))

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
        self.user_agents[request.headers.get("User-Agent", "")] += 1
        if self.redirect_to is not None:
            self._record(Seen(endpoint), 307, authorized="Authorization" in request.headers)
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path)
        auth = request.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if not key or (self.api_keys is not None and key not in self.api_keys):
            self._record(Seen(endpoint), 401, authorized=False)
            return self._error(401, "API key is invalid or missing.", {})
        headers, refused = self._quota(key, endpoint)
        if refused is not None:
            return refused
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
        wait = self._answer_time()  # counted on arrival (above), answered after this
        if wait:
            await asyncio.sleep(wait)
        if self._short_of_credits(endpoint):
            return self._no_credits(seen, headers)
        fault = self._script.next(endpoint, query.subject, self.faults)
        if fault == "latency":
            await asyncio.sleep((self.faults or FaultPlan()).slow_seconds / 4)
            fault = None
            if self._short_of_credits(endpoint):  # checked again: the sleep let others spend
                return self._no_credits(seen, headers)
        if fault is not None:
            self._record(seen, SEEN_STATUS.get(fault, 200), fault=fault)
            return await self._fault(fault, request, query, headers)
        answer = self._lookup(endpoint, query)
        if isinstance(answer, str):
            self._record(seen, 404)
            return self._error(404, answer, headers)
        # No await since the credit check, so credits never go below 0.
        cost = self.costs[endpoint]
        if self.credits is not None:
            self.credits -= cost
        self._charge(endpoint, query.subject, seen, cost)
        return web.Response(body=answer, content_type="application/json", headers=headers)

    async def _fault(
        self, fault: str, request: web.Request, query: Query, headers: dict[str, str]
    ) -> web.StreamResponse:
        endpoint = request.path.removeprefix(API_PREFIX)
        plan = self.faults or FaultPlan()
        silent = fault == "429" and not self.retry_after_on_429
        if silent:  # not even the one retry_after_always adds
            headers = {k: v for k, v in headers.items() if k != "Retry-After"}
        return await fault_response(
            fault,
            request=request,
            plan=plan,
            service="profile service" if endpoint == PROFILE else "TikTok service",
            headers=headers,
            error=self._error,
            retry_after={} if silent else self._retry_after(plan.retry_after),
            payload=lambda: self._answer_body(endpoint, query),
        )

    def _short_of_credits(self, endpoint: str) -> bool:
        return self.credits is not None and self.credits < self.costs[endpoint]

    def _no_credits(self, seen: Seen, headers: dict[str, str]) -> web.Response:
        self._record(seen, 403)
        return self._error(403, "Insufficient credits. Please top up your account.", headers)

    def _lookup(self, endpoint: str, query: Query) -> bytes | str:
        """The body of the normal answer, or the message of its 404."""
        return self._answers.lookup(
            endpoint,
            query,
            unknown_handles=self.unknown_handles,
            unknown_videos=self.unknown_videos,
            page_size=self.page_size,
        )

    def _answer_body(self, endpoint: str, query: Query) -> bytes:
        """The body this request would have had; a would-be 404's error body, if that."""
        answer = self._lookup(endpoint, query)
        return orjson.dumps({"error": answer}) if isinstance(answer, str) else answer
