"""``AsyncDumplingClient``: lifecycle, connection pool and the request pipeline.

limiter -> send -> classify -> retry -> structure. Transport errors are mapped to this
library's exceptions in one place (``_transport_error``).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
)
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._core.budget import CreditBudget, LocalCreditBudget
from ._core.cache import ProfileCache
from ._core.converter import parse_object, parse_profile, structure
from ._core.endpoints import PROFILE, TRANSCRIPT, VIDEO, CreditCosts, Endpoint, flight_key
from ._core.handles import normalize_handle
from ._core.inputs import check_language, normalize_video_url
from ._core.listings import ListingsMixin
from ._core.log import LOGGER_NAME, get_logger
from ._core.ratelimit import (
    AdaptiveRateLimiter,
    RateLimiter,
    ResponseInfo,
    parse_rate_limit_headers,
)
from ._core.retry import RetryPolicy, parse_retry_after
from ._core.secret import Secret
from ._errors import (
    APIConnectionError,
    APITimeoutError,
    BatchAbortedError,
    ClientClosedError,
    ConfigurationError,
    DumplingError,
    InvalidResponseError,
    error_for_status,
)
from ._media import TikTokTranscript, TikTokVideo, TranscriptResult, VideoResult
from ._models import ProfileResult, RateLimitState, TikTokProfile

__all__ = ["DEFAULT_BASE_URL", "REQUEST_SOURCES", "AsyncDumplingClient"]

T = TypeVar("T")
DEFAULT_BASE_URL = "https://app.dumplingai.com"
KEY_ENV_VARS = ("DUMPLINGAI_API_KEY", "DUMPLING_API_KEY")
URL_ENV_VAR = "DUMPLINGAI_API_URL"
REQUEST_SOURCES = frozenset(
    {
        "API",
        "WEB",
        "MAKE_DOT_COM",
        "ZAPIER",
        "N8N",
        "PLAYGROUND",
        "DEFAULT_AUTOMATION",
        "AGENT_PREVIEW",
        "AGENT_LIVE",
        "AUTOPILOT",
        "STUDIO",
    }
)
_LOOPBACK_NAMES = frozenset({"localhost"})
_KEPT_BODY = 64 * 1024  # of a 200 body that could not be parsed, for InvalidResponseError


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _resolve_key(api_key: str | None) -> Secret:
    if api_key is None:
        for name in KEY_ENV_VARS:
            value = os.environ.get(name, "").strip()
            if value:
                api_key = value
                break
    if api_key is None or not api_key.strip():
        raise ConfigurationError(
            "no DumplingAI API key: pass api_key= or set DUMPLINGAI_API_KEY (or DUMPLING_API_KEY)"
        )
    if not isinstance(api_key, str) or any(ch in api_key for ch in "\r\n\0"):
        raise ConfigurationError("the API key must be a single-line string")
    return Secret(api_key.strip())


def _resolve_base_url(base_url: str | None, *, allow_insecure_http: bool) -> URL:
    text = base_url or os.environ.get(URL_ENV_VAR, "").strip() or DEFAULT_BASE_URL
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid base_url {text!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {text!r}")
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    if url.scheme == "http" and not _is_loopback(url.host) and not allow_insecure_http:
        raise ConfigurationError(
            f"refusing plain http:// to {url.host}: the API key would travel in clear text "
            "(pass allow_insecure_http=True to accept that)"
        )
    return url


class AsyncDumplingClient(ListingsMixin):
    """An asyncio client for the DumplingAI API, safe to share between tasks.

    Use one client per application (or per API key) and share it: it owns one
    connection pool, one rate limiter and one credit budget. Configuration is
    keyword-only; the key comes from *api_key* or the environment
    (``DUMPLINGAI_API_KEY``, then ``DUMPLING_API_KEY``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        max_concurrency: int = 16,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        session: aiohttp.ClientSession | None = None,
        max_credits: int | None = None,
        credit_budget: CreditBudget | None = None,
        request_source: str | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = 4 * 1024 * 1024,
        cache: ProfileCache | None = None,
        credit_costs: CreditCosts | None = None,
    ) -> None:
        self._key = _resolve_key(api_key)
        self._headers = _Headers(self._key)
        self._log = get_logger(self._key)
        self._base_url = _resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if self._base_url.scheme == "http" and not _is_loopback(self._base_url.host):
            self._log.warning("insecure_base_url", host=self._base_url.host)
        if max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be >= 1")
        if not timeout > 0:
            raise ConfigurationError("timeout must be > 0 seconds")
        if request_source is not None and request_source not in REQUEST_SOURCES:
            raise ConfigurationError(
                f"request_source must be one of {sorted(REQUEST_SOURCES)}, got {request_source!r}"
            )
        if max_credits is not None and credit_budget is not None:
            raise ConfigurationError("pass max_credits or credit_budget, not both")
        self._urls: dict[str, URL] = {}
        if credit_costs is not None and not isinstance(credit_costs, CreditCosts):
            raise ConfigurationError("credit_costs must be a CreditCosts")
        self._costs = credit_costs or CreditCosts()
        self._max_concurrency = max_concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._timeout_s = timeout
        self._retry = retry or RetryPolicy()
        self._limiter: RateLimiter = rate_limiter or AdaptiveRateLimiter()
        self._budget: CreditBudget = credit_budget or LocalCreditBudget(max_credits)
        self._request_source = request_source
        self._max_body = max_response_bytes
        self._cache = cache
        self._session = session
        self._owns_session = session is None
        self._slots: asyncio.Semaphore | None = None
        self._closed = False
        self._single_flight: dict[tuple[str, str], _Flight] = {}
        self._debug = logging.getLogger(LOGGER_NAME).isEnabledFor

    # -- lifecycle ----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"AsyncDumplingClient(base_url={str(self._base_url)!r}, "
            f"max_concurrency={self._max_concurrency}, timeout={self._timeout_s}, "
            f"retry={self._retry!r}, max_credits={self._budget.max_credits}, "
            f"credits_spent={self._budget.spent}, closed={self._closed})"
        )

    async def __aenter__(self) -> Self:
        self._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the owned connection pool (a borrowed session is left open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        tasks = [flight.task for flight in self._single_flight.values()]
        for task in tasks:
            task.cancel()
        if tasks:  # let their cleanup (limiter, budget) finish before the pool goes
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this AsyncDumplingClient is closed; create a new one")

    def _get_session(self) -> aiohttp.ClientSession:
        self._check_open()
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_concurrency, limit_per_host=self._max_concurrency
            )
            self._session = aiohttp.ClientSession(connector=connector)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_concurrency)
        return self._session

    # -- state ----------------------------------------------------------------------------
    @property
    def rate_limit(self) -> RateLimitState:
        """The account's rate limit as last seen, and what the limiter learned."""
        return self._limiter.snapshot()

    @property
    def credits_spent(self) -> int:
        """Credits the server charged, as far as this client knows (priced by
        ``credit_costs``: 10 per profile)."""
        return self._budget.spent

    @property
    def credit_costs(self) -> CreditCosts:
        """The price of a successful request to each endpoint, used by the budget."""
        return self._costs

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter in use; pass it to another client to share one quota."""
        return self._limiter

    @property
    def cache(self) -> ProfileCache | None:
        """The profile cache, when one was given."""
        return self._cache

    @property
    def max_concurrency(self) -> int:
        """The most requests this client has in flight at once."""
        return self._max_concurrency

    # -- public lookups -------------------------------------------------------------------
    async def get_tiktok_profile(self, handle: str) -> TikTokProfile:
        """Look up one profile by handle or profile URL.

        Concurrent calls for the same handle share one request (and one charge).
        """
        return await self._profile_flight(normalize_handle(handle))

    async def get_tiktok_video(self, url: str) -> TikTokVideo:
        """Fetch one video by URL (``tiktok.com/@user/video/ID`` or a short link).

        Concurrent calls for the same video share one request (and one charge).
        """
        return await self._video_flight(normalize_video_url(url))

    async def get_tiktok_transcript(
        self, video_url: str, *, preferred_language: str = "en"
    ) -> TikTokTranscript:
        """Fetch a video's subtitles: the WebVTT text and its parsed ``cues``.

        A video without subtitles raises :class:`TranscriptNotFoundError` (not charged).
        """
        canonical = normalize_video_url(video_url)
        return await self._transcript_flight(canonical, check_language(preferred_language))

    # Single calls for one thing share one request through these; a bulk job registers
    # its own task instead (``_adopt``), so the common case costs no extra task.
    def _profile_flight(self, handle: str) -> Awaitable[TikTokProfile]:
        return self._shared(flight_key(PROFILE, handle), lambda: self._lookup(handle))

    def _video_flight(self, url: str) -> Awaitable[TikTokVideo]:
        return self._shared(flight_key(VIDEO, url), lambda: self._video(url))

    def _transcript_flight(self, url: str, language: str) -> Awaitable[TikTokTranscript]:
        return self._shared(
            flight_key(TRANSCRIPT, url, language), lambda: self._transcript(url, language)
        )

    async def _shared(self, key: tuple[str, str], start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run *start* once for concurrent callers with the same *key* (single flight)."""
        while True:
            self._check_open()
            flight = self._single_flight.get(key)
            if flight is None:
                flight = _Flight(asyncio.ensure_future(start()))
                self._single_flight[key] = flight
                flight.task.add_done_callback(functools.partial(self._landed, key, flight))
            flight.waiters += 1
            try:
                result = await asyncio.shield(flight.task)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if not flight.task.cancelled() or current is None or current.cancelling():
                    raise  # this caller was cancelled
                if self._closed:
                    raise ClientClosedError("the client was closed during the lookup") from None
                continue  # the bulk job that owned the lookup stopped: start afresh
            finally:
                flight.waiters -= 1
                if flight.waiters == 0 and not flight.owned and not flight.task.done():
                    # Every caller gave up: stop paying for it, and let a new caller start
                    # afresh rather than join a lookup that is being cancelled.
                    self._land(key, flight)
                    flight.task.cancel()
            if flight.outcomes and isinstance(result, DumplingError):
                if isinstance(result, BatchAbortedError):
                    continue  # the batch's own stop, not this caller's: ask afresh
                raise result  # a bulk task returns its error as its outcome
            value: T = result
            return value

    def _in_flight(self, key: tuple[str, str]) -> bool:
        return key in self._single_flight

    def _adopt(self, key: tuple[str, str], task: asyncio.Task[Any]) -> None:
        """Register a bulk job's *task* as the lookup of *key* (none is in flight).

        The task returns a value or a DumplingError; callers that join it get the same.
        """
        assert key not in self._single_flight
        flight = self._single_flight[key] = _Flight(task, owned=True, outcomes=True)
        task.add_done_callback(functools.partial(self._landed, key, flight))

    def _disown(self, key: tuple[str, str], task: asyncio.Task[Any]) -> bool:
        """A bulk job no longer wants *task*: True if other callers still await it (it
        runs on for them, since it may already be paid for), False to cancel it."""
        flight = self._single_flight.get(key)
        if flight is None or flight.task is not task or flight.waiters == 0:
            return False
        flight.owned = False  # from now on its waiters decide, as for a single call
        return True

    def _land(self, key: tuple[str, str], flight: _Flight) -> None:
        if self._single_flight.get(key) is flight:
            del self._single_flight[key]

    def _landed(self, key: tuple[str, str], flight: _Flight, _: object) -> None:
        self._land(key, flight)

    async def gather_profiles(
        self,
        handles: Iterable[object] | AsyncIterable[object],
        *,
        concurrency: int | None = None,
    ) -> list[ProfileResult]:
        """Look up many handles; one result per input position, in input order."""
        from ._core.bulk import PROFILES, gather_results

        return await gather_results(self, PROFILES, handles, concurrency=concurrency)

    def iter_profiles(
        self,
        handles: Iterable[object] | AsyncIterable[object],
        *,
        concurrency: int | None = None,
        on_result: Callable[[ProfileResult], None] | None = None,
    ) -> AsyncGenerator[ProfileResult, None]:
        """Yield one result per input position as lookups complete (bounded memory).

        *on_result* sees each result as it is produced (e.g. to drive a progress bar).
        Close the generator (``contextlib.aclosing``) to stop early: lookups in flight are
        cancelled and their slots and credit reservations given back. If the input
        raises, the lookups in flight are finished and yielded first, then the error.
        """
        from ._core.bulk import PROFILES, iter_results

        return iter_results(self, PROFILES, handles, concurrency=concurrency, on_result=on_result)

    async def gather_videos(
        self,
        urls: Iterable[object] | AsyncIterable[object],
        *,
        concurrency: int | None = None,
    ) -> list[VideoResult]:
        """Fetch many videos; one result per input position, in input order."""
        from ._core.bulk import gather_results, videos

        return await gather_results(self, videos(), urls, concurrency=concurrency)

    def iter_videos(
        self,
        urls: Iterable[object] | AsyncIterable[object],
        *,
        concurrency: int | None = None,
        on_result: Callable[[VideoResult], None] | None = None,
    ) -> AsyncGenerator[VideoResult, None]:
        """Yield one result per input position as video lookups complete.

        The same engine as :meth:`iter_profiles`: spellings of one video are fetched once,
        the credit budget and account-level aborts apply, memory stays bounded.
        """
        from ._core.bulk import iter_results, videos

        return iter_results(self, videos(), urls, concurrency=concurrency, on_result=on_result)

    async def gather_transcripts(
        self,
        urls: Iterable[object] | AsyncIterable[object],
        *,
        preferred_language: str = "en",
        concurrency: int | None = None,
    ) -> list[TranscriptResult]:
        """Fetch many videos' transcripts; one result per input position, in input order."""
        from ._core.bulk import gather_results, transcripts

        kind = transcripts(check_language(preferred_language))
        return await gather_results(self, kind, urls, concurrency=concurrency)

    def iter_transcripts(
        self,
        urls: Iterable[object] | AsyncIterable[object],
        *,
        preferred_language: str = "en",
        concurrency: int | None = None,
        on_result: Callable[[TranscriptResult], None] | None = None,
    ) -> AsyncGenerator[TranscriptResult, None]:
        """Yield one transcript result per input position as lookups complete."""
        from ._core.bulk import iter_results, transcripts

        kind = transcripts(check_language(preferred_language))
        return iter_results(self, kind, urls, concurrency=concurrency, on_result=on_result)

    # -- the pipeline ---------------------------------------------------------------------
    def _body(self, params: dict[str, Any]) -> bytes:
        if self._request_source is not None:
            params = {**params, "requestSource": self._request_source}
        return orjson.dumps(params)

    async def _lookup(self, handle: str, *, should_stop: Any = None) -> TikTokProfile:
        """Fetch one normalised handle's profile (the cache first, when there is one)."""
        if self._cache is not None and (cached := self._cache.get(handle)) is not None:
            return cached
        profile = await self._request(
            PROFILE,
            {"handle": handle},
            functools.partial(parse_profile, handle=handle),
            target=handle,
            handle=handle,
            should_stop=should_stop,
        )
        if self._cache is not None:
            self._cache.put(handle, profile)
        return profile

    async def _video(self, url: str, *, should_stop: Any = None) -> TikTokVideo:
        return await self._request(
            VIDEO,
            {"url": url},
            functools.partial(_parse_as, TikTokVideo, url),
            target=url,
            should_stop=should_stop,
        )

    async def _transcript(
        self, url: str, language: str, *, should_stop: Any = None
    ) -> TikTokTranscript:
        return await self._request(
            TRANSCRIPT,
            {"videoUrl": url, "preferredLanguage": language},
            functools.partial(_parse_as, TikTokTranscript, url),
            target=url,
            should_stop=should_stop,
        )

    async def _request(
        self,
        endpoint: Endpoint,
        params: dict[str, Any],
        parse: Callable[[bytes], T],
        *,
        target: str,
        handle: str | None = None,
        should_stop: Any = None,
    ) -> T:
        """One API call with retries: reserve credits, send, parse; a DumplingError on failure.

        *should_stop* (bulk jobs) returns an exception to raise instead of (re)trying.
        """
        body = self._body(params)
        cost = self._costs.of(endpoint)
        url = self._urls.get(endpoint.name)
        if url is None:
            root = self._base_url.path.rstrip("/")
            url = self._urls[endpoint.name] = self._base_url.with_path(root + endpoint.path)
        attempt = 0
        while True:
            attempt += 1
            if should_stop is not None and (stop := should_stop()) is not None:
                raise stop
            await self._budget.reserve(cost)
            charged = False
            got_200: list[bool] = []  # set by _attempt: a 200 arrived, so it was charged
            try:
                data = await self._attempt(
                    endpoint, url, body, target, handle, attempt, should_stop, got_200
                )
                charged = True
                # Received and charged: whatever the body holds, it is never sent again.
                return _parse_body(parse, data)
            except DumplingError as error:
                charged = _was_charged(error)
                delay = self._retry.delay(error, attempt)
                if delay is None:
                    raise
                self._log.info(
                    "retry",
                    endpoint=endpoint.name,
                    target=target,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=type(error).__name__,
                    status=getattr(error, "status", None),
                )
            finally:
                # Whatever ended the attempt (cancellation included), a 200 was charged.
                await self._budget.settle(cost, charged=charged or bool(got_200))
            await asyncio.sleep(delay)

    async def _attempt(
        self,
        endpoint: Endpoint,
        url: URL,
        body: bytes,
        target: str,
        handle: str | None,
        attempt: int,
        should_stop: Any = None,
        got_200: list[bool] | None = None,
    ) -> bytes:
        """Send once; the 200 body, or raise the error the response or transport means."""
        session = self._get_session()
        assert self._slots is not None
        async with self._slots:
            permit = await self._limiter.acquire()
            if should_stop is not None and (stop := should_stop()) is not None:
                await self._limiter.settle(permit, None)
                raise stop
            info: ResponseInfo | None = None
            started = time.monotonic()
            status = 0
            try:
                async with session.post(
                    url,
                    data=body,
                    headers=self._headers,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as resp:
                    status = resp.status
                    if status == 200 and got_200 is not None:
                        got_200.append(True)
                    headers = resp.headers
                    limit, remaining = parse_rate_limit_headers(headers)
                    retry_after = parse_retry_after(headers) if status in (429, 503) else None
                    info = ResponseInfo(
                        status=status, limit=limit, remaining=remaining, retry_after=retry_after
                    )
                    if status == 200:
                        data = await self._read(resp, target, handle)
                    else:
                        data = await self._read_error(resp)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # The cause keeps its type and message but not its frames, whose locals
                # hold the request headers.
                raise _transport_error(
                    exc, target, handle, response_received=status == 200
                ) from _scrubbed(exc)
            finally:
                await self._limiter.settle(permit, info)
                if self._debug(logging.DEBUG):
                    self._log.debug(
                        "attempt",
                        endpoint=endpoint.name,
                        target=target,
                        attempt=attempt,
                        status=status or None,
                        elapsed=round(time.monotonic() - started, 4),
                        limit=info.limit if info else None,
                        remaining=info.remaining if info else None,
                    )
        if status == 200:
            return data
        raise error_for_status(
            status,
            data,
            reason=resp.reason,
            handle=handle,
            target=target,
            not_found=endpoint.not_found,
            headers=dict(headers),
            retry_after=info.retry_after if info else None,
            rate_limit=self._limiter.snapshot(),
        )

    async def _read(self, resp: aiohttp.ClientResponse, target: str, handle: str | None) -> bytes:
        length = resp.content_length
        if length is not None and length > self._max_body:
            raise InvalidResponseError(
                f"response body of {length} bytes exceeds the {self._max_body} byte cap",
                handle=handle,
                target=target,
                status=200,
            )
        if length is not None:
            return await resp.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > self._max_body:
                raise InvalidResponseError(
                    f"response body exceeds the {self._max_body} byte cap",
                    handle=handle,
                    target=target,
                    status=200,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _read_error(self, resp: aiohttp.ClientResponse) -> bytes:
        # Error bodies are small; read a bounded prefix and drop the rest with the connection.
        try:
            return await resp.content.read(64 * 1024)
        except (aiohttp.ClientError, TimeoutError):
            return b""


class _Headers(dict[str, str]):
    """Request headers built at send time; their repr hides the Authorization value."""

    def __init__(self, key: Secret) -> None:
        super().__init__(
            {
                "Authorization": f"Bearer {key.get()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
        )

    def __repr__(self) -> str:
        return "{'Authorization': '[REDACTED]', ...}"


class _Flight:
    """One lookup in progress and how many callers await it.

    An *owned* lookup is a bulk job's task: it runs as long as the job wants it, whoever
    else joins or leaves; when the job stops, callers that joined it keep it running.
    """

    __slots__ = ("outcomes", "owned", "task", "waiters")

    def __init__(
        self, task: asyncio.Task[Any], *, owned: bool = False, outcomes: bool = False
    ) -> None:
        self.task = task
        self.waiters = 0
        self.owned = owned
        self.outcomes = outcomes  # the task returns its DumplingError instead of raising


def _scrubbed(exc: BaseException) -> BaseException:
    """The cause as users may see it: no frames (their locals hold the request
    headers) and no request headers in aiohttp's ``request_info``."""
    info = getattr(exc, "request_info", None)
    if isinstance(info, aiohttp.RequestInfo):
        exc.request_info = info._replace(headers=CIMultiDictProxy(CIMultiDict()))  # type: ignore[attr-defined]
    return exc.with_traceback(None)


def _was_charged(error: DumplingError) -> bool:
    if isinstance(error, InvalidResponseError):
        return error.status == 200
    return isinstance(error, APIConnectionError) and error.response_received


def _parse_body(parse: Callable[[bytes], T], data: bytes) -> T:
    try:
        return parse(data)
    except InvalidResponseError as error:
        error.body = data[:_KEPT_BODY]
        raise


def _parse_as(cls: type[T], target: str, body: bytes) -> T:
    return structure(parse_object(body, target=target), cls, target=target)


def _transport_error(
    exc: BaseException, target: str, handle: str | None, *, response_received: bool
) -> APIConnectionError:
    """The one place transport failures become library errors (tracebacks scrubbed)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    cls = (
        APITimeoutError
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError)
        else APIConnectionError
    )
    verb = "timed out" if cls is APITimeoutError else "failed"
    return cls(
        f"request for {target!r:.120} {verb} ({detail[:200]})",
        handle=handle,
        target=target,
        response_received=response_received,
    )
