"""The limiter over real sockets against what servers send: every reset-header form, hostile
header values, 429s without Retry-After, and a probe that takes long to answer."""

from __future__ import annotations

import itertools
import time

import psutil
import pytest
from conftest import KEY

from dumpling_async import AsyncDumplingClient, ProfileResult, RateLimitError
from dumpling_async._core.quota import MAX_LIMIT
from dumpling_async.testing import (
    HOSTILE_HEADERS,
    RESET_HEADERS,
    FakeDumplingServer,
    FaultPlan,
    RateLimitRule,
)

# A limit the job must wait for: the first window is free, the other three are not.
RULE = RateLimitRule(10, 0.5, "fixed")
HANDLES = 40


async def _job(
    server: FakeDumplingServer, n: int = HANDLES
) -> tuple[AsyncDumplingClient, list[ProfileResult], float]:
    async with AsyncDumplingClient(KEY, base_url=server.url) as client:
        started = time.monotonic()
        results = await client.gather_profiles(f"user{i}" for i in range(n))
        elapsed = time.monotonic() - started
    return client, results, elapsed


def _each_paid_handle_is_delivered_once(
    server: FakeDumplingServer, client: AsyncDumplingClient, results: list[ProfileResult]
) -> None:
    ok = {r.handle for r in results if r.ok}
    assert set(server.charged) == ok and set(server.charged.values()) <= {1}
    assert client.credits_spent == server.credits_charged
    assert all(r.ok or isinstance(r.error, RateLimitError) for r in results), [
        r.error for r in results if not r.ok
    ][:3]


@pytest.mark.parametrize("form", [f for f in RESET_HEADERS if f != "none"])
async def test_every_reset_form_is_followed(form: str) -> None:
    """With reset headers in any form: every handle once, at most one 429, close to ideal."""
    async with FakeDumplingServer(rate_limit=RULE, reset_headers=form) as server:  # type: ignore[arg-type]
        client, results, elapsed = await _job(server)
    assert all(r.ok for r in results)
    _each_paid_handle_is_delivered_once(server, client, results)
    assert server.rate_limited <= 1, server.rate_limited
    # Three windows must pass; a whole-second reset may add up to a second once.
    assert 1.4 <= elapsed <= 4.0, elapsed


@pytest.mark.parametrize("hostile", [h for h in HOSTILE_HEADERS if h != "limit_zero"])
async def test_hostile_values_cost_no_paid_result(hostile: str) -> None:
    """Absurd rate-limit headers: no exception, every paid profile delivered, bounded memory."""
    rss = psutil.Process().memory_info().rss
    async with FakeDumplingServer(rate_limit=RULE, hostile_headers=hostile) as server:  # type: ignore[arg-type]
        client, results, elapsed = await _job(server)
    assert psutil.Process().memory_info().rss - rss < 20 * 2**20  # 10**14 once took 300 MiB
    _each_paid_handle_is_delivered_once(server, client, results)
    assert sum(r.ok for r in results) >= HANDLES * 0.9
    assert elapsed < 10, elapsed
    state = client.rate_limit
    assert state.limit is None or 0 <= state.limit <= MAX_LIMIT
    if hostile == "huge_limit":
        assert state.limit == MAX_LIMIT  # 10**14 said, capped
    elif hostile == "remaining_over_limit":
        assert state.limit == RULE.limit
    assert state.remaining is None or 0 <= state.remaining <= (state.limit or 0)


async def test_limit_zero_holds_back_but_never_breaks() -> None:
    """Limit: 0 on every answer: one probe at a time, further apart, each profile delivered."""
    async with FakeDumplingServer(rate_limit=RULE, hostile_headers="limit_zero") as server:
        client, results, _ = await _job(server, n=3)
    assert all(r.ok for r in results)
    _each_paid_handle_is_delivered_once(server, client, results)
    sent = sorted(r.at for r in server.records)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 3 and gaps[0] >= 0.4 and gaps[-1] > gaps[0], gaps


async def test_429s_without_retry_after_teach_one_lesson() -> None:
    """Sixteen in flight meet 429s with no Retry-After: the window grows once, not 16 times."""
    async with FakeDumplingServer(
        rate_limit=RateLimitRule(10, 0.2, "fixed"), retry_after_on_429=False
    ) as server:
        client, results, elapsed = await _job(server, n=60)
    assert all(r.ok for r in results)
    _each_paid_handle_is_delivered_once(server, client, results)
    window = client.rate_limit.window
    assert window is not None and window < 2.0, window  # 16 doublings once gave 16,384 s
    assert elapsed < 6, elapsed  # ideal 1 s


async def test_a_slow_probe_does_not_stall_the_others() -> None:
    """The first probe takes 1.5 s to answer: other requests go meanwhile."""
    slow = 1.5
    plan = FaultPlan(rate=0.0, slow_seconds=4 * slow)  # a "latency" fault sleeps a quarter
    async with FakeDumplingServer(rate_limit=RateLimitRule(5, 0.3, "fixed"), faults=plan) as server:
        # user0 is first contact, user1-4 spend the confirmed quota, user5 is the first
        # probe (also when it is retried after a 429: the fault waits for an admitted one).
        server.inject("latency", handle="user5")
        # Enough behind it that some are still to go while it is out: its own retry, after
        # its first try was the refused probe, queues behind those already waiting.
        client, results, _ = await _job(server, n=60)
    assert all(r.ok for r in results)
    _each_paid_handle_is_delivered_once(server, client, results)
    # A record is written when the answer goes out.
    probe = next(r for r in server.records if r.handle == "user5" and r.status == 200)
    while_out = [
        r for r in server.records if r.status == 200 and probe.at - slow + 0.1 < r.at < probe.at
    ]
    assert len(while_out) >= 5, [(r.handle, round(probe.at - r.at, 2)) for r in server.records]
