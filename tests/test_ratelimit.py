"""The adaptive limiter against real fake-server quotas, with short windows."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from conftest import KEY

from dumpling_async import AdaptiveRateLimiter, AsyncDumplingClient, ResponseInfo
from dumpling_async.testing import ALGORITHMS, FakeDumplingServer, FaultPlan, RateLimitRule

LIMIT, WINDOW = 20, 0.2  # 100 requests/s: ten windows take about two seconds


async def _run(
    rule: RateLimitRule, n: int, halve_at: float | None = None
) -> tuple[FakeDumplingServer, AsyncDumplingClient, float]:
    async with FakeDumplingServer(rate_limit=rule) as server:
        async with AsyncDumplingClient(KEY, base_url=server.url) as client:
            if halve_at is not None:
                asyncio.get_running_loop().call_later(
                    halve_at, server.set_rate_limit, rule.limit // 2
                )
            started = time.monotonic()
            results = await client.gather_profiles(f"user{i}" for i in range(n))
            elapsed = time.monotonic() - started
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return server, client, elapsed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_uses_quota_without_running_into_it(algorithm: str) -> None:
    """Over ten windows: few 429s, near-ideal elapsed time, each handle charged once."""
    n = 10 * LIMIT
    server, client, elapsed = await _run(RateLimitRule(LIMIT, WINDOW, algorithm), n)  # type: ignore[arg-type]
    # Learning costs one or two 429s; up to five on a loaded machine when a bucket's
    # refill first passes for a window shorter than it is (16 in flight, 20 units).
    assert server.rate_limited <= 6, server.rate_limited
    ideal = n / (LIMIT / WINDOW)
    # 0.75-0.95 on a quiet machine; a core kept busy slows the client's loop itself. With
    # both cores busy a bucket's bursts leave spread over 20-80 ms and, before the probes
    # learned from two groups back in part, it read as a slow step server: 4-7 s here.
    statuses = Counter(record.status for record in server.records)
    assert ideal / elapsed >= 0.5, (ideal, elapsed, statuses, client.rate_limit)
    assert set(server.charged.values()) == {1} and len(server.charged) == n
    assert client.credits_spent == server.credits_charged == 10 * n
    state = client.rate_limit
    assert state.limit == LIMIT and state.throttled_seconds > 0 and state.throttle_waits > 0


async def test_limit_halving_mid_run() -> None:
    """When the server halves the limit, the client follows at once."""
    server, client, _ = await _run(RateLimitRule(LIMIT, WINDOW, "sliding"), 200, halve_at=0.6)
    assert client.rate_limit.limit == LIMIT // 2
    assert server.rate_limited <= 6, server.rate_limited  # 3 % here; the benchmark: < 1 %


async def test_window_longer_than_guess_is_learned() -> None:
    """A 1 s window (4x the initial guess) is learned from one 429's Retry-After."""
    server, client, _ = await _run(RateLimitRule(30, 1.0, "fixed"), 90)
    # One or two on a quiet machine (15 runs with a core kept busy: 1 in 13, 2, 4, 8).
    # With the loop lagging more than the ledger's jitter (10 ms), answers of the first
    # burst reach the server out of their send order, which reads as units back early;
    # what was sent on them is refused, once, until the 429's Retry-After says the window.
    assert server.rate_limited <= 10, server.rate_limited
    window = client.rate_limit.window
    assert window is not None and 0.9 <= window <= 1.3


async def test_rate_limit_pause_holds_everyone() -> None:
    """After a 429 with Retry-After, no coroutine sends until the pause is over."""
    plan = FaultPlan(rate=0.0, retry_after=0.3)
    async with FakeDumplingServer(faults=plan) as server:
        server.inject("429", handle="first")
        async with AsyncDumplingClient(KEY, base_url=server.url) as client:
            await client.get_tiktok_profile("warmup")  # first contact: the server sets no limit
            first = asyncio.ensure_future(client.get_tiktok_profile("first"))
            while not server.requests_for("first"):  # noqa: ASYNC110 - polling the record
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)  # the 429 has reached the client
            await asyncio.gather(first, *(client.get_tiktok_profile(f"u{i}") for i in range(9)))
    limited = server.requests_for("first")[0]
    after = [r.at for r in server.records if r.at > limited.at]
    assert limited.status == 429 and len(after) == 10
    assert min(after) - limited.at >= 0.28


async def test_two_clients_share_one_limiter() -> None:
    """Two clients given one limiter stay within one key's quota together."""
    limiter = AdaptiveRateLimiter()
    async with (
        FakeDumplingServer(rate_limit=RateLimitRule(LIMIT, WINDOW, "fixed")) as server,
        AsyncDumplingClient(KEY, base_url=server.url, rate_limiter=limiter) as a,
        AsyncDumplingClient(KEY, base_url=server.url, rate_limiter=limiter) as b,
    ):
        await asyncio.gather(
            a.gather_profiles(f"a{i}" for i in range(100)),
            b.gather_profiles(f"b{i}" for i in range(100)),
        )
    # Learning the window costs a probe's 429 and, on a fixed window, a trial's: as for
    # one client (test_uses_quota_without_running_into_it), at most six.
    assert server.rate_limited <= 6
    assert len(server.charged) == 200 and set(server.charged.values()) == {1}
    assert limiter.snapshot().limit == LIMIT  # one limiter learned the shared quota


async def test_out_of_order_answers_do_not_inflate_budget() -> None:
    """An older answer with a higher Remaining arriving late does not add quota."""
    limiter = AdaptiveRateLimiter()
    first = await limiter.acquire()
    await limiter.settle(first, ResponseInfo(status=200, limit=5, remaining=4))
    permits = [await limiter.acquire() for _ in range(4)]  # the whole remaining budget
    # The newest request is answered first (remaining 0), then an older one (remaining 3).
    await limiter.settle(permits[3], ResponseInfo(status=200, limit=5, remaining=0))
    await limiter.settle(permits[0], ResponseInfo(status=200, limit=5, remaining=3))
    # Nothing in hand: only a probe goes, after a while, and only one at a time.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(limiter.acquire(), 1.0)
    assert loop.time() - started >= 0.015
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await limiter.acquire()


async def test_no_headers_means_no_throttling(server: FakeDumplingServer) -> None:
    """A server that sends no rate-limit headers is not throttled past first contact."""
    async with AsyncDumplingClient(KEY, base_url=server.url) as client:
        await client.gather_profiles(f"user{i}" for i in range(50))
        state = client.rate_limit
    # Only the first request waits alone, to learn whether there is a limit.
    assert state.limit is None and state.throttle_waits <= 1


async def test_retry_after_without_ms_is_honoured() -> None:
    """With only an integer Retry-After, the client waits it out and succeeds."""
    async with (
        FakeDumplingServer(
            rate_limit=RateLimitRule(5, 1.0, "fixed"), retry_after_ms=False
        ) as server,
        AsyncDumplingClient(KEY, base_url=server.url) as client,
    ):
        results = await client.gather_profiles(f"user{i}" for i in range(8))
    assert all(r.ok for r in results)
    assert server.rate_limited <= 1
