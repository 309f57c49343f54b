"""``AsyncDumplingClient``: configuration, lifecycle and thin public methods.

The client wires the core together (transport -> pipeline -> single flight -> lookups,
bulk, paging) and holds no request logic of its own: each method checks its input,
names its endpoint's call and hands it to the core.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import aiohttp
import attrs

from ._core.aiohttp_transport import AiohttpTransport
from ._core.aiohttp_transport import user_agent as agent
from ._core.budget import CreditBudget, LocalCreditBudget
from ._core.bulk import (
    PROFILES,
    VIDEOS,
    BulkKind,
    R,
    Width,
    gather_results,
    iter_results,
    transcripts,
)
from ._core.cache import ProfileCache
from ._core.concurrency import Concurrency
from ._core.config import (
    check_request_source,
    is_loopback,
    resolve_base_url,
    resolve_key,
    resolve_proxy,
)
from ._core.endpoints import (
    COMMENTS,
    FOLLOWERS,
    FOLLOWING,
    PROFILE,
    PROFILE_VIDEOS,
    SEARCH_USERS,
    TRANSCRIPT,
    VIDEO,
    CreditCosts,
    Endpoint,
)
from ._core.flights import Flights
from ._core.hooks import ClientHooks, HookRunner
from ._core.inputs import check_language, check_query, normalize_handle, normalize_video_url
from ._core.log import get_logger
from ._core.lookups import Lookups
from ._core.paging import Pager, open_pager
from ._core.pipeline import Pipeline
from ._core.ratelimit import AdaptiveRateLimiter, RateLimiter
from ._core.retry import RetryPolicy
from ._core.shared import SharedCache
from ._core.turns import Priority, Turn, check_priority, check_wait
from ._errors import ConfigurationError
from ._models import (
    ProfileVideo,
    RateLimitState,
    TikTokProfile,
    TikTokTranscript,
    TikTokUserSummary,
    TikTokVideo,
    VideoComment,
)
from ._results import ProfileResult, TranscriptResult, VideoResult

__all__ = ["AsyncDumplingClient"]

Inputs = Iterable[object] | AsyncIterable[object]


class AsyncDumplingClient:
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
        max_concurrency: int | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        rate_limiter: RateLimiter | None = None,
        session: aiohttp.ClientSession | None = None,
        max_credits: int | None = None,
        credit_budget: CreditBudget | None = None,
        request_source: str | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = 4 * 1024 * 1024,
        cache: ProfileCache | SharedCache | None = None,
        max_wait: float | None = None,
        credit_costs: CreditCosts | None = None,
        hooks: ClientHooks | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        user_agent: str | None = None,
    ) -> None:
        self._key = resolve_key(api_key)
        self._log = get_logger(self._key)
        self._base_url = resolve_base_url(base_url, allow_insecure_http=allow_insecure_http)
        if self._base_url.scheme == "http" and not is_loopback(self._base_url.host):
            self._log.warning("insecure_base_url", host=self._base_url.host)
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int)
        ):
            raise ConfigurationError("max_concurrency must be an int or None")
        if max_concurrency is not None and max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be >= 1 (or None: sized by the client)")
        concurrency = Concurrency(max_concurrency)
        if not timeout > 0:
            raise ConfigurationError("timeout must be > 0 seconds")
        check_request_source(request_source)
        proxy = resolve_proxy(
            proxy, self._base_url, trust_env=trust_env, allow_insecure_http=allow_insecure_http
        )
        if hooks is not None and not isinstance(hooks, ClientHooks):
            raise ConfigurationError("hooks must be a ClientHooks (subclass it)")
        if max_credits is not None and credit_budget is not None:
            raise ConfigurationError("pass max_credits or credit_budget, not both")
        self._max_wait = check_wait(max_wait)
        if cache is not None and not isinstance(cache, ProfileCache | SharedCache):
            raise ConfigurationError("cache must be a ProfileCache or a SharedCache (RedisCache)")
        if credit_costs is not None and not isinstance(credit_costs, CreditCosts):
            raise ConfigurationError("credit_costs must be a CreditCosts")
        self._timeout_s = timeout
        self._budget: CreditBudget = credit_budget or LocalCreditBudget(max_credits)
        self._transport = AiohttpTransport(
            self._key,
            session=session,
            max_connections=concurrency.bound,
            timeout=timeout,
            max_body=max_response_bytes,
            proxy=proxy,
            agent=agent(user_agent),
        )
        self._pipeline = Pipeline(
            transport=self._transport,
            base_url=self._base_url,
            limiter=rate_limiter or AdaptiveRateLimiter(),
            budget=self._budget,
            retry=retry or RetryPolicy(),
            costs=credit_costs or CreditCosts(),
            concurrency=concurrency,
            request_source=request_source,
            log=self._log,
            hooks=HookRunner(hooks, self._log) if hooks is not None else None,
        )
        self._flights = Flights()
        self._lookups = Lookups(self._pipeline, self._flights, cache)
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (
            f"AsyncDumplingClient(base_url={str(self._base_url)!r}, "
            f"max_concurrency={self.max_concurrency}, timeout={self._timeout_s}, "
            f"retry={self._pipeline.retry!r}, max_credits={self._budget.max_credits}, "
            f"credits_spent={self.credits_spent}, credits_uncertain={self.credits_uncertain}, "
            f"closed={self._closed})"
        )

    async def __aenter__(self) -> Self:
        self._flights.check_open()
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
        # Lookups in flight are cancelled and their cleanup (limiter, budget) finishes
        # before the pool goes.
        await self._flights.aclose()
        await self._pipeline.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` was called."""
        return self._closed

    # -- state ----------------------------------------------------------------------------
    @property
    def rate_limit(self) -> RateLimitState:
        """The account's rate limit as last seen, what the limiter learned, and how many
        requests the client allows in flight."""
        state = self._pipeline.limiter.snapshot()
        return attrs.evolve(state, concurrency=self._pipeline.max_concurrency)

    @property
    def credits_spent(self) -> int:
        """Credits this client was charged for answers that arrived (priced by
        ``credit_costs``: 10 per profile), a 200 whose body broke or was unusable
        included."""
        return self._pipeline.confirmed

    @property
    def credits_uncertain(self) -> int:
        """Credits of requests that reached the server and got no answer (a timeout, a
        dropped connection, a cancellation): the server may have charged them. The credit
        budget counts them as spent; ``credits_spent`` does not."""
        return self._pipeline.uncertain

    @property
    def credit_costs(self) -> CreditCosts:
        """The price of a successful request to each endpoint, used by the budget."""
        return self._pipeline.costs

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter in use; pass it to another client to share one quota."""
        return self._pipeline.limiter

    @property
    def cache(self) -> ProfileCache | SharedCache | None:
        """The profile cache, when one was given."""
        shared = self._lookups.shared
        return self._lookups.cache if shared is None else shared.store

    @property
    def max_concurrency(self) -> int:
        """The most requests this client has in flight at once, now: the number given,
        or the one the client chose from the learned rate and answer times."""
        return self._pipeline.max_concurrency

    # -- single lookups -------------------------------------------------------------------
    def _turn(self, priority: Priority, max_wait: float | None) -> Turn:
        """How a single call waits: *max_wait* None is the client's, ``math.inf`` none."""
        wait = self._max_wait if max_wait is None else check_wait(max_wait)
        return Turn(check_priority(priority), None if wait == math.inf else wait)

    async def get_tiktok_profile(
        self, handle: str, *, priority: Priority = "interactive", max_wait: float | None = None
    ) -> TikTokProfile:
        """Look up one profile by handle or profile URL.

        Concurrent calls for the same handle share one request (and one charge). Single
        calls go ahead of bulk work on the quota (``priority="bulk"``: not this one). If
        the rate limit would hold it longer than *max_wait* seconds (the client's
        ``max_wait`` when None; ``math.inf``: no bound), it raises
        :class:`MaxWaitExceededError` at once, uncharged, with the predicted wait as
        ``retry_after``.
        """
        call = PROFILE.call(normalize_handle(handle), turn=self._turn(priority, max_wait))
        profile: TikTokProfile = await self._lookups.get(call)
        return profile

    async def get_tiktok_video(
        self, url: str, *, priority: Priority = "interactive", max_wait: float | None = None
    ) -> TikTokVideo:
        """Fetch one video by URL (``tiktok.com/@user/video/ID`` or a short link).

        Concurrent calls for the same video share one request (and one charge).
        *priority* and *max_wait* as for :meth:`get_tiktok_profile`.
        """
        call = VIDEO.call(normalize_video_url(url), turn=self._turn(priority, max_wait))
        video: TikTokVideo = await self._lookups.get(call)
        return video

    async def get_tiktok_transcript(
        self,
        video_url: str,
        *,
        preferred_language: str = "en",
        priority: Priority = "interactive",
        max_wait: float | None = None,
    ) -> TikTokTranscript:
        """Fetch a video's subtitles: the WebVTT text and its parsed ``cues``.

        A video without subtitles raises :class:`TranscriptNotFoundError` (not charged).
        *priority* and *max_wait* as for :meth:`get_tiktok_profile`.
        """
        url = normalize_video_url(video_url)
        turn = self._turn(priority, max_wait)
        call = TRANSCRIPT.call(url, turn=turn, preferredLanguage=check_language(preferred_language))
        transcript: TikTokTranscript = await self._lookups.get(call)
        return transcript

    # -- bulk -----------------------------------------------------------------------------
    def _width(self, concurrency: int | None) -> Width:
        # Without a number, bulk runs follow the slots the client chooses as they change.
        if concurrency is not None:
            return concurrency
        sizing = self._pipeline.concurrency
        return sizing.limit if not sizing.automatic else lambda: sizing.limit

    async def _gather(
        self, kind: BulkKind[R], items: Inputs, concurrency: int | None, priority: Priority
    ) -> list[R]:
        kind = attrs.evolve(kind, turn=Turn(check_priority(priority)))
        return await gather_results(
            self._lookups, kind, items, concurrency=self._width(concurrency)
        )

    def _iter(
        self,
        kind: BulkKind[R],
        items: Inputs,
        concurrency: int | None,
        on_result: Callable[[R], None] | None,
        priority: Priority,
        before_send: Callable[[str], None] | None = None,
    ) -> AsyncGenerator[R, None]:
        kind = attrs.evolve(kind, turn=Turn(check_priority(priority)))
        width = self._width(concurrency)
        return iter_results(
            self._lookups,
            kind,
            items,
            concurrency=width,
            on_result=on_result,
            before_send=before_send,
        )

    async def gather_profiles(
        self, handles: Inputs, *, concurrency: int | None = None, priority: Priority = "bulk"
    ) -> list[ProfileResult]:
        """Look up many handles; one result per input position, in input order. Bulk
        work waits for the quota behind single calls unless ``priority="interactive"``."""
        return await self._gather(PROFILES, handles, concurrency, priority)

    def iter_profiles(
        self,
        handles: Inputs,
        *,
        concurrency: int | None = None,
        on_result: Callable[[ProfileResult], None] | None = None,
        before_send: Callable[[str], None] | None = None,
        priority: Priority = "bulk",
    ) -> AsyncGenerator[ProfileResult, None]:
        """Yield one result per input position as lookups complete (bounded memory).

        *on_result* sees each result as it is produced (e.g. to drive a progress bar).
        Close the generator (``contextlib.aclosing``) to stop early: lookups in flight are
        cancelled and their slots and credit reservations given back. If the input
        raises, the lookups in flight are finished and yielded first, then the error.

        *before_send*, a write-ahead record, is called with the normalised handle just
        before each attempt is sent (after the rate limiter and the budget let it go), so
        that a process killed with requests in flight can tell which handles it may have
        paid for. If it raises, that attempt is not sent, and the batch stops as on a 401:
        that position and every later one get ``BatchAbortedError``, whose ``.cause`` holds
        the exception.
        """
        return self._iter(PROFILES, handles, concurrency, on_result, priority, before_send)

    async def gather_videos(
        self, urls: Inputs, *, concurrency: int | None = None, priority: Priority = "bulk"
    ) -> list[VideoResult]:
        """Fetch many videos; one result per input position, in input order."""
        return await self._gather(VIDEOS, urls, concurrency, priority)

    def iter_videos(
        self,
        urls: Inputs,
        *,
        concurrency: int | None = None,
        on_result: Callable[[VideoResult], None] | None = None,
        priority: Priority = "bulk",
    ) -> AsyncGenerator[VideoResult, None]:
        """Yield one result per input position as video lookups complete.

        The same engine as :meth:`iter_profiles`: spellings of one video are fetched once,
        the credit budget and account-level aborts apply, memory stays bounded.
        """
        return self._iter(VIDEOS, urls, concurrency, on_result, priority)

    async def gather_transcripts(
        self,
        urls: Inputs,
        *,
        preferred_language: str = "en",
        concurrency: int | None = None,
        priority: Priority = "bulk",
    ) -> list[TranscriptResult]:
        """Fetch many videos' transcripts; one result per input position, in input order."""
        kind = transcripts(check_language(preferred_language))
        return await self._gather(kind, urls, concurrency, priority)

    def iter_transcripts(
        self,
        urls: Inputs,
        *,
        preferred_language: str = "en",
        concurrency: int | None = None,
        on_result: Callable[[TranscriptResult], None] | None = None,
        priority: Priority = "bulk",
    ) -> AsyncGenerator[TranscriptResult, None]:
        """Yield one transcript result per input position as lookups complete."""
        kind = transcripts(check_language(preferred_language))
        return self._iter(kind, urls, concurrency, on_result, priority)

    # -- listings -------------------------------------------------------------------------
    # Each returns a lazy Pager: no request until iterated. Inputs are checked here, before
    # any credit is reserved.
    def _pager(
        self,
        endpoint: Endpoint,
        params: dict[str, Any],
        limit: int | None,
        start_cursor: str | int | None,
        page_size: int | None,
    ) -> Pager[Any]:
        return open_pager(
            self._pipeline,
            endpoint,
            params,
            target=params[endpoint.subject],
            limit=limit,
            start_cursor=start_cursor,
            page_size=page_size,
        )

    def iter_profile_videos(
        self,
        handle: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        trim: bool = False,
    ) -> Pager[ProfileVideo]:
        """A profile's videos, newest first.

        ``trim=True`` asks the API to leave out the heavy ``video`` object of each item.
        """
        params: dict[str, Any] = {"handle": normalize_handle(handle)}
        if trim:
            params["trim"] = True
        return self._pager(PROFILE_VIDEOS, params, limit, start_cursor, None)

    def iter_video_comments(
        self,
        url: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[VideoComment]:
        """A video's top-level comments (with the replies the API sends along)."""
        params = {"url": normalize_video_url(url)}
        return self._pager(COMMENTS, params, limit, start_cursor, page_size)

    def iter_followers(
        self,
        handle: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[TikTokUserSummary]:
        """The accounts that follow *handle*, most recent first."""
        params = {"handle": normalize_handle(handle)}
        return self._pager(FOLLOWERS, params, limit, start_cursor, page_size)

    def iter_following(
        self,
        handle: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[TikTokUserSummary]:
        """The accounts *handle* follows, most recent first."""
        params = {"handle": normalize_handle(handle)}
        return self._pager(FOLLOWING, params, limit, start_cursor, page_size)

    def search_users(
        self,
        query: str,
        *,
        limit: int | None = None,
        start_cursor: str | int | None = None,
        page_size: int | None = None,
    ) -> Pager[TikTokUserSummary]:
        """Accounts matching *query*, in the API's order of relevance."""
        params = {"query": check_query(query)}
        return self._pager(SEARCH_USERS, params, limit, start_cursor, page_size)
