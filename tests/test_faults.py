"""Under faults: every position answered, nothing paid twice, nothing left running."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter

import pytest
from conftest import KEY

from dumpling_async import (
    APIConnectionError,
    AsyncDumplingClient,
    DumplingError,
    InvalidHandleError,
    InvalidResponseError,
    InvalidVideoURLError,
    ProfileNotFoundError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    UpstreamError,
)
from dumpling_async.testing import FakeDumplingServer, FaultPlan, fake_followers

TRANSIENT = (ServerError, UpstreamError, RateLimitError, APIConnectionError, InvalidResponseError)


def _handles(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    unique = [f"user{i}" if i % 20 else f"unknown{i}" for i in range(int(n * 0.9))]
    handles = unique + [rng.choice(unique).upper() for _ in range(n - len(unique) - 20)]
    handles += ["not a handle!"] * 10 + [f"https://www.tiktok.com/@{u}" for u in unique[:10]]
    rng.shuffle(handles)
    return handles


@pytest.mark.parametrize(("seed", "n"), [(1, 10_000), (2, 3_000), (3, 3_000)])
async def test_bulk_job_under_random_faults(
    seed: int, n: int, caplog: pytest.LogCaptureFixture
) -> None:
    """10 % of requests fail in every way the fault injector knows; the books still balance."""
    plan = FaultPlan(
        rate=0.10, seed=seed, slow_seconds=2.0, oversized_bytes=96 * 1024, retry_after=0.005
    )
    handles = _handles(n, seed)
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with FakeDumplingServer(faults=plan) as server:
        async with AsyncDumplingClient(
            KEY,
            base_url=server.url,
            max_concurrency=32,
            timeout=1.5,  # well above in-process latency under load: see README
            retry=RetryPolicy(backoff_base=0.002, backoff_max=0.01),
            max_response_bytes=64 * 1024,
        ) as client:
            results = await client.gather_profiles(handles)
        seen_faults = {r.fault for r in server.records if r.fault}
    assert seen_faults == set(plan.kinds)
    # Every input position has exactly one result, for the input it was given.
    assert [r.index for r in results] == list(range(n))
    assert all(r.input == handles[r.index] for r in results)
    # Each outcome is a profile or the right typed error.
    for r in results:
        if isinstance(r.input, str) and r.input.startswith("not a"):
            assert isinstance(r.error, InvalidHandleError)
        elif r.handle.startswith("unknown"):
            assert isinstance(r.error, (ProfileNotFoundError, *TRANSIENT)), r
        else:
            assert r.ok or isinstance(r.error, TRANSIENT), r
    # The server's books: charged handles are exactly the ok ones, each charged once.
    ok_handles = {r.handle for r in results if r.ok}
    assert set(server.charged) == ok_handles
    twice = {h: server.requests_for(h) for h, c in server.charged.items() if c > 1}
    assert not twice, twice
    assert client.credits_spent >= server.credits_charged  # unusable 200s are counted too
    # A received 200 is never retried: no handle was answered 200 more than once.
    answered: dict[str, int] = {}
    for record in server.records:
        if record.status == 200 and record.handle:
            answered[record.handle] = answered.get(record.handle, 0) + 1
    assert max(answered.values()) == 1
    assert sum(r.ok for r in results) > 0.8 * n
    # Nothing left running, nothing destroyed while pending.
    await asyncio.sleep(0.01)
    leftover = [
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and "aiohttp/web_" not in repr(t)
    ]
    assert leftover == []
    assert not [r for r in caplog.records if "destroyed" in r.getMessage()]


async def _walk(client: AsyncDumplingClient, handle: str) -> tuple[list[str], list[Exception]]:
    """Read a whole followers listing, resuming from the failed page's cursor each time."""
    ids: list[str] = []
    errors: list[Exception] = []
    cursor: str | None = None
    while len(errors) < 50:
        try:
            async for entry in client.iter_followers(handle, start_cursor=cursor):
                ids.append(str(entry.user.id if entry.user else None))
            return ids, errors
        except DumplingError as error:
            errors.append(error)
            cursor = error.cursor
    return ids, errors


async def test_other_endpoints_under_random_faults(caplog: pytest.LogCaptureFixture) -> None:
    """Videos, transcripts and listings under 10 % faults: all answered, no page paid twice."""
    plan = FaultPlan(
        rate=0.10, seed=7, slow_seconds=2.0, oversized_bytes=96 * 1024, retry_after=0.005
    )
    urls = [f"https://www.tiktok.com/@creator{i % 50}/video/73000000000{i:08d}" for i in range(600)]
    urls += [u.replace("https://www.", "") for u in urls[:60]] + ["not a url"] * 5
    handles = [f"creator{i}" for i in range(12)]
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with (
        FakeDumplingServer(faults=plan) as server,
        AsyncDumplingClient(
            KEY,
            base_url=server.url,
            max_concurrency=32,
            timeout=1.5,
            retry=RetryPolicy(backoff_base=0.002, backoff_max=0.01),
            max_response_bytes=64 * 1024,
        ) as client,
    ):
        videos, transcripts, *walks = await asyncio.gather(
            client.gather_videos(urls),
            client.gather_transcripts(urls),
            *(_walk(client, h) for h in handles),
        )
    assert {r.fault for r in server.records if r.fault} == set(plan.kinds)
    for results in (videos, transcripts):
        assert [r.index for r in results] == list(range(len(urls)))
        assert all(isinstance(r.error, InvalidVideoURLError) for r in results[-5:])
        assert sum(r.ok for r in results[:-5]) > 0.6 * len(urls)
    # A listing walked through faults holds the server's list exactly once.
    for handle, (ids, errors) in zip(handles, walks, strict=True):
        assert all(isinstance(e, TRANSIENT) for e in errors), errors
        assert ids == [entry["user"]["id"] for entry in fake_followers(handle)]
    # No request (a video, a transcript, a page at its cursor) was charged twice.
    charged = Counter((r.endpoint, r.subject, r.cursor) for r in server.records if r.charged)
    assert charged and max(charged.values()) == 1
    assert client.credits_spent >= server.credits_charged
    await asyncio.sleep(0.01)
    leftover = [
        t
        for t in asyncio.all_tasks()
        if t is not asyncio.current_task() and "aiohttp/web_" not in repr(t)
    ]
    assert leftover == []
