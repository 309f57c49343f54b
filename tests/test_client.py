"""The client against the fake server: statuses, retries, structuring, lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Callable

import aiohttp
import pytest
from conftest import KEY

from dumpling_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncDumplingClient,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    InsufficientCreditsError,
    InvalidHandleError,
    InvalidResponseError,
    ProfileCache,
    ProfileNotFoundError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TikTokProfile,
    UpstreamError,
)
from dumpling_async.testing import FakeDumplingServer, RateLimitRule, fake_profile

MakeClient = Callable[..., AsyncDumplingClient]


async def test_lookup_returns_typed_profile(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """A lookup returns a structured profile matching the server's JSON."""
    profile = await client.get_tiktok_profile("@StoolPresidente")
    expected = fake_profile("stoolpresidente")
    assert isinstance(profile, TikTokProfile)
    assert profile.user is not None and profile.stats is not None
    assert profile.user.unique_id == "stoolpresidente"
    assert profile.user.is_ad_virtual is expected["user"]["isADVirtual"]
    assert profile.user.bio_link is not None
    assert profile.user.bio_link.link == expected["user"]["bioLink"]["link"]
    assert profile.stats.follower_count == expected["stats"]["followerCount"]
    assert profile.raw == expected
    assert server.charged == {"stoolpresidente": 1}
    assert client.credits_spent == 10


@pytest.mark.parametrize(
    ("setup", "error_cls", "status"),
    [
        ({"api_keys": {"someone-else"}}, AuthenticationError, 401),
        ({"credits": 0}, InsufficientCreditsError, 403),
        ({"unknown_handles": {"ghost_user"}}, ProfileNotFoundError, 404),
    ],
)
@pytest.mark.parametrize("nested", [False, True])
async def test_status_maps_to_error_class(
    setup: dict[str, object], error_cls: type[APIStatusError], status: int, nested: bool
) -> None:
    """Each account/lookup status raises its class with status, message and handle."""
    async with (
        FakeDumplingServer(nested_errors=nested, rate_limit=RateLimitRule(50, 1.0), **setup) as srv,  # type: ignore[arg-type]
        AsyncDumplingClient(KEY, base_url=srv.url) as client,
    ):
        with pytest.raises(error_cls) as info:
            await client.get_tiktok_profile("ghost_user")
    err = info.value
    assert err.status == status
    assert err.handle == "ghost_user"
    assert err.message and "HTTP" not in err.message
    if nested:
        assert err.code == f"E{status}"
    if status != 401:
        assert err.rate_limit is not None and err.rate_limit.limit == 50
        assert err.headers["X-RateLimit-Limit"] == "50"
    assert len(srv.records) == 1  # never retried


@pytest.mark.parametrize(
    ("fault", "error_cls", "status"),
    [
        ("400", BadRequestError, 400),
        ("500", ServerError, 500),
        ("502", UpstreamError, 502),
        ("503", UpstreamError, 503),
        ("429", RateLimitError, 429),
        ("html_500", ServerError, 500),
    ],
)
async def test_fault_status_classes(
    make_client: MakeClient,
    server: FakeDumplingServer,
    fault: str,
    error_cls: type[APIStatusError],
    status: int,
) -> None:
    """Server faults raise the right class once retries (if any) are used up."""
    client = make_client(retry=RetryPolicy(max_attempts=1))
    server.inject(fault)
    with pytest.raises(error_cls) as info:
        await client.get_tiktok_profile("someone")
    assert info.value.status == status
    if fault == "html_500":
        assert info.value.message == "Internal Server Error"  # the HTTP reason
    if fault in ("429", "503"):
        assert info.value.retry_after == pytest.approx(0.05)


@pytest.mark.parametrize("fault", ["500", "502", "503", "429"])
async def test_retryable_faults_are_retried(
    client: AsyncDumplingClient, server: FakeDumplingServer, fault: str
) -> None:
    """Two transient failures then success: three requests, one charge, a profile."""
    server.inject(fault, fault, handle="someone")
    profile = await client.get_tiktok_profile("someone")
    assert profile.user is not None
    assert len(server.requests_for("someone")) == 3
    assert server.charged["someone"] == 1


async def test_retries_stop_at_max_attempts(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """max_attempts counts the first try: 2 means exactly one retry."""
    client = make_client(retry=RetryPolicy(max_attempts=2, backoff_base=0.001))
    server.inject("500", "500", "500", handle="someone")
    with pytest.raises(ServerError):
        await client.get_tiktok_profile("someone")
    assert len(server.requests_for("someone")) == 2


@pytest.mark.parametrize("fault", ["404", "400"])
async def test_client_errors_are_not_retried(
    client: AsyncDumplingClient, server: FakeDumplingServer, fault: str
) -> None:
    """400 and 404 are final: one request only."""
    if fault == "400":
        server.inject("400", handle="someone")
        with pytest.raises(BadRequestError):
            await client.get_tiktok_profile("someone")
        assert len(server.requests_for("someone")) == 1
    else:
        with pytest.raises(ProfileNotFoundError):
            await client.get_tiktok_profile("unknown_one")
        assert len(server.requests_for("unknown_one")) == 1


@pytest.mark.parametrize("fault", ["truncated_json", "html_200", "drop_mid_body"])
async def test_received_200_is_never_retried(
    client: AsyncDumplingClient, server: FakeDumplingServer, fault: str
) -> None:
    """A 200 that cannot be used is an error, but it is never sent again."""
    server.inject(fault, handle="someone")
    with pytest.raises((InvalidResponseError, APIConnectionError)):
        await client.get_tiktok_profile("someone")
    assert len(server.requests_for("someone")) == 1
    assert client.credits_spent == 10  # counted as charged: a 200 arrived


@pytest.mark.parametrize(
    ("fault", "start"), [("truncated_json", b'{"user"'), ("html_200", b"<html>")]
)
async def test_unusable_body_is_kept_on_the_error(
    client: AsyncDumplingClient, server: FakeDumplingServer, fault: str, start: bytes
) -> None:
    """InvalidResponseError keeps what arrived, for a bug report."""
    server.inject(fault, handle="someone")
    with pytest.raises(InvalidResponseError) as info:
        await client.get_tiktok_profile("someone")
    assert info.value.body is not None and info.value.body.startswith(start)


async def test_oversized_body_is_refused(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """A body over the cap raises InvalidResponseError without being buffered."""
    client = make_client(max_response_bytes=64 * 1024)
    server.inject("oversized", handle="someone")
    with pytest.raises(InvalidResponseError, match="cap"):
        await client.get_tiktok_profile("someone")


@pytest.mark.parametrize("fault", ["slow", "drop"])
async def test_unanswered_requests_may_be_charged_and_are_not_retried(
    make_client: MakeClient, server: FakeDumplingServer, fault: str
) -> None:
    """A timeout or a dropped connection after sending: maybe charged, sent once."""
    server.faults = None
    client = make_client(timeout=0.2)
    server.inject(fault, fault, handle="someone")
    with pytest.raises(APIConnectionError) as info:
        await client.get_tiktok_profile("someone")
    assert info.value.maybe_charged and not info.value.response_received
    assert isinstance(info.value, APITimeoutError) is (fault == "slow")
    assert len(server.requests_for("someone")) == 1
    assert (client.credits_spent, client.credits_uncertain) == (0, 10)


@pytest.mark.parametrize("fault", ["slow", "drop"])
async def test_retry_unanswered_opts_in_to_paying_twice(
    make_client: MakeClient, server: FakeDumplingServer, fault: str
) -> None:
    """With retry_unanswered=True, two unanswered attempts then an answer: three requests."""
    retry = RetryPolicy(backoff_base=0.001, retry_unanswered=True)
    client = make_client(timeout=0.2, retry=retry)
    server.inject(fault, fault, handle="someone")
    profile = await client.get_tiktok_profile("someone")
    assert profile.user is not None
    assert len(server.requests_for("someone")) == 3
    assert (client.credits_spent, client.credits_uncertain) == (10, 20)


async def test_connection_refused_is_connection_error(unused_tcp_port: int) -> None:
    """Nothing listening gives APIConnectionError, with the aiohttp error as cause."""
    async with AsyncDumplingClient(
        KEY, base_url=f"http://127.0.0.1:{unused_tcp_port}", retry=RetryPolicy(max_attempts=1)
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.get_tiktok_profile("someone")
    assert isinstance(info.value.__cause__, aiohttp.ClientError | OSError)


async def test_invalid_handle_raises_before_any_request(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Invalid handles never reach the server."""
    for bad in ["", "x", "bad handle", "https://example.com/@x", None]:
        with pytest.raises(InvalidHandleError):
            await client.get_tiktok_profile(bad)  # type: ignore[arg-type]
    assert server.records == []


async def test_structuring_tolerates_missing_and_unknown_fields() -> None:
    """Missing optional fields are None; unknown ones are kept in raw."""
    from dumpling_async._core.converter import structure_profile

    profile = structure_profile({"user": {"uniqueId": "x", "brandNew": {"a": 1}}, "extra": 1})
    assert profile.user is not None
    assert profile.user.nickname is None and profile.stats is None
    assert profile.user.raw["brandNew"] == {"a": 1}
    assert profile.raw["extra"] == 1
    drifted = structure_profile({"user": {"uniqueId": "x"}, "stats": {"followerCount": {}}})
    assert drifted.stats is not None and drifted.stats.follower_count is None


def test_missing_key_names_env_vars() -> None:
    """No key at all is a ConfigurationError naming the environment variables."""
    with pytest.raises(ConfigurationError, match=r"DUMPLINGAI_API_KEY.*DUMPLING_API_KEY"):
        AsyncDumplingClient()


def test_key_and_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key comes from DUMPLINGAI_API_KEY, then DUMPLING_API_KEY; the URL from env."""
    monkeypatch.setenv("DUMPLING_API_KEY", "second")
    monkeypatch.setenv("DUMPLINGAI_API_URL", "http://localhost:9")
    client = AsyncDumplingClient()
    assert client._key.get() == "second"
    assert "localhost:9" in repr(client)
    monkeypatch.setenv("DUMPLINGAI_API_KEY", "first")
    assert AsyncDumplingClient()._key.get() == "first"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "http://api.example.com"},
        {"base_url": "ftp://127.0.0.1"},
        {"base_url": "https://user:pw@example.com"},
        {"request_source": "NOT_A_SOURCE"},
        {"max_concurrency": 0},
        {"timeout": 0},
    ],
)
def test_bad_configuration(kwargs: dict[str, object]) -> None:
    """Unsafe or impossible settings are refused at construction."""
    with pytest.raises(ConfigurationError):
        AsyncDumplingClient(KEY, **kwargs)  # type: ignore[arg-type]


def test_plain_http_allowed_only_when_explicit(caplog: pytest.LogCaptureFixture) -> None:
    """http:// to a remote host needs allow_insecure_http=True and logs a warning."""
    with caplog.at_level(logging.WARNING, logger="dumpling_async"):
        AsyncDumplingClient(KEY, base_url="http://api.example.com", allow_insecure_http=True)
    assert "insecure_base_url" in caplog.text
    AsyncDumplingClient(KEY, base_url="http://[::1]:8080")


async def test_request_source_is_sent(make_client: MakeClient, server: FakeDumplingServer) -> None:
    """request_source must be in the spec's enum and is accepted by the server."""
    client = make_client(request_source="ZAPIER")
    await client.get_tiktok_profile("someone")
    assert server.charged["someone"] == 1


async def test_borrowed_session_is_left_open(server: FakeDumplingServer) -> None:
    """A session passed in is used and never closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with AsyncDumplingClient(KEY, base_url=server.url, session=session) as client:
            await client.get_tiktok_profile("someone")
        assert not session.closed
        assert client.closed


async def test_close_is_idempotent_and_final(client: AsyncDumplingClient) -> None:
    """aclose() twice is fine; a closed client refuses work with a clear error."""
    await client.get_tiktok_profile("someone")
    await client.aclose()
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.get_tiktok_profile("someone")


async def test_no_unclosed_session_warnings(server: FakeDumplingServer) -> None:
    """A used and closed client leaves no ResourceWarning behind."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with AsyncDumplingClient(KEY, base_url=server.url) as client:
            await client.get_tiktok_profile("someone")
        del client
        gc.collect()
        await asyncio.sleep(0)


async def test_concurrent_same_handle_is_single_flight(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Concurrent lookups of one handle share one request and one charge."""
    server.latency = 0.05
    results = await asyncio.gather(*(client.get_tiktok_profile("@Same") for _ in range(20)))
    assert len({id(r) for r in results}) == 1
    assert len(server.requests_for("same")) == 1


async def test_max_concurrency_bounds_in_flight(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """No more than max_concurrency requests reach the server at once."""
    server.latency = 0.02
    client = make_client(max_concurrency=3)
    await asyncio.gather(*(client.get_tiktok_profile(f"user{i}") for i in range(12)))
    assert server.max_in_flight == 3


async def test_secret_never_shown(make_client: MakeClient, server: FakeDumplingServer) -> None:
    """The key is absent from repr, errors and every captured log line."""
    client = make_client(retry=RetryPolicy(max_attempts=2, backoff_base=0.001))
    server.inject("500", "500", handle="someone")
    logger = logging.getLogger("dumpling_async")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with pytest.raises(ServerError) as info:
            await client.get_tiktok_profile("someone")
        with pytest.raises(ProfileNotFoundError) as missing:
            await client.get_tiktok_profile("unknown_x")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    texts = [repr(client), str(client), str(info.value), repr(info.value), str(missing.value)]
    texts += [repr(vars(r)) for r in records]
    assert records, "debug logging produced no records"
    assert any("retry" in t for t in texts)
    assert all(KEY not in text for text in texts)


async def test_cache_reuses_recent_profiles(server: FakeDumplingServer) -> None:
    """With a cache, a repeat lookup within the TTL costs no request; after it, one."""
    now = [0.0]
    cache = ProfileCache(max_entries=2, ttl=10.0, clock=lambda: now[0])
    async with AsyncDumplingClient(KEY, base_url=server.url, cache=cache) as client:
        first = await client.get_tiktok_profile("alice")
        assert await client.get_tiktok_profile("@ALICE") is first
        await client.gather_profiles(["alice", "bob", "carol"])  # bob, carol evict alice
        assert server.charged["alice"] == 1
        now[0] = 11.0
        await client.get_tiktok_profile("bob")
    assert server.charged == {"alice": 1, "bob": 2, "carol": 1}
    assert cache.hits == 2 and len(cache) == 2


async def test_new_caller_never_joins_a_cancelled_lookup(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """After every caller of a lookup gave up, the next caller starts a fresh one."""
    server.latency = 0.3
    first = asyncio.ensure_future(client.get_tiktok_profile("someone"))
    await asyncio.sleep(0.05)
    first.cancel()
    await asyncio.sleep(0)
    profile = await client.get_tiktok_profile("someone")
    assert profile.user is not None and profile.user.unique_id == "someone"
    assert first.cancelled()


async def test_cancelled_while_reading_a_200_counts_the_charge(
    make_client: MakeClient, server: FakeDumplingServer
) -> None:
    """A 200 that arrived is counted as spent even if the caller cancels mid-body."""
    server.latency = 0.0
    server.inject("slow_body", handle="someone")
    client = make_client(max_credits=100)
    task = asyncio.ensure_future(client.get_tiktok_profile("someone"))
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert client.credits_spent == 10
    assert client._budget._reserved == 0  # type: ignore[attr-defined]


async def test_closing_the_client_fails_waiters_clearly(
    client: AsyncDumplingClient, server: FakeDumplingServer
) -> None:
    """Callers waiting on a lookup when the client closes get ClientClosedError."""
    server.latency = 0.5
    task = asyncio.ensure_future(client.get_tiktok_profile("someone"))
    await asyncio.sleep(0.05)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await task
