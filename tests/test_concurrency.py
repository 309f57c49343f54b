"""The concurrency machinery under stress: bulk workers, request slots and single flight,
with cancellations and closes at awkward moments. Nothing may leak, hang or be paid
twice."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import KEY

from dumpling_async import AsyncDumplingClient, ClientClosedError, ProfileNotFoundError
from dumpling_async.testing import FakeDumplingServer


def _other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks still alive besides this test's and the fake server's own."""
    return {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and "aiohttp/web_" not in repr(task)
    }


def _quiet(client: AsyncDumplingClient) -> None:
    """Nothing is held: no lookup in flight, no slot taken, no credit reserved."""
    assert not client._flights._flights
    assert client._pipeline._busy == 0 and not client._pipeline._queued
    assert client.rate_limit.in_flight == 0
    assert client._budget._reserved == 0  # type: ignore[attr-defined]


async def test_no_worker_outlives_a_gather(server: FakeDumplingServer) -> None:
    """After a gather with valid, unknown and invalid handles, no task is left running."""
    async with AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=8) as client:
        handles = [f"user{i}" for i in range(50)] + ["unknown_a"] * 3 + ["bad handle!"]
        results = await client.gather_profiles(handles)
        assert sum(r.ok for r in results) == 50
        assert all(isinstance(r.error, ProfileNotFoundError) for r in results[50:53])
        await asyncio.sleep(0)
        assert _other_tasks() == set()
        _quiet(client)


async def test_closing_mid_batch_ends_every_position(server: FakeDumplingServer) -> None:
    """Closing the client while calls are queued gives each position ClientClosedError."""
    server.latency = 0.2
    client = AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=4)
    results: list[Any] = []

    async def consume() -> None:
        async for result in client.iter_profiles([f"q{i}" for i in range(40)], concurrency=4):
            results.append(result)

    job = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    await client.aclose()
    await asyncio.wait_for(job, 5)
    assert len({r.index for r in results}) == len(results)
    assert all(isinstance(r.error, ClientClosedError) for r in results)
    assert len(server.records) <= 4
    await asyncio.sleep(0.01)
    assert _other_tasks() == set()


@pytest.mark.parametrize("width", [1, 5])
async def test_concurrency_bounds_requests_in_flight(
    server: FakeDumplingServer, width: int
) -> None:
    """A bulk call's concurrency caps the requests in flight, down to one at a time."""
    server.latency = 0.02
    async with AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=16) as client:
        results = await client.gather_profiles([f"w{i}" for i in range(30)], concurrency=width)
    assert all(r.ok for r in results)
    assert server.max_in_flight == width


async def test_a_slow_consumer_bounds_the_read_ahead(server: FakeDumplingServer) -> None:
    """Input is read only as fast as results are consumed (plus the window)."""
    pulled = 0

    def handles() -> Iterator[str]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield f"r{i}"

    async with AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=4) as client:
        seen = 0
        async with contextlib.aclosing(client.iter_profiles(handles(), concurrency=4)) as it:
            async for _ in it:
                seen += 1
                await asyncio.sleep(0.02)
                assert pulled <= seen + 4 + 4
                if seen == 15:
                    break
        await asyncio.sleep(0.01)
        assert _other_tasks() == set()
        _quiet(client)


async def test_a_single_call_shares_a_bulk_workers_lookup(server: FakeDumplingServer) -> None:
    """A single call for a handle a bulk worker is fetching gets the same profile."""
    server.latency = 0.1
    async with AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=4) as client:
        batch = asyncio.ensure_future(client.gather_profiles(["j1", "j2", "j3"]))
        await asyncio.sleep(0.02)
        single = await client.get_tiktok_profile("j2")
        results = await batch
    assert results[1].profile is single
    assert server.charged == {"j1": 1, "j2": 1, "j3": 1}


async def test_a_joined_lookup_whose_callers_all_leave_leaks_nothing(
    server: FakeDumplingServer,
) -> None:
    """The batch is cancelled, then the single call that joined its lookup: all let go."""
    server.latency = 0.3
    async with AsyncDumplingClient(
        KEY, base_url=server.url, max_concurrency=4, max_credits=1000
    ) as client:
        batch = asyncio.ensure_future(client.gather_profiles(["k1"]))
        await asyncio.sleep(0.02)
        single = asyncio.ensure_future(client.get_tiktok_profile("k1"))
        await asyncio.sleep(0.02)
        batch.cancel()
        await asyncio.sleep(0.02)
        single.cancel()
        await asyncio.gather(batch, single, return_exceptions=True)
        await asyncio.sleep(0.01)
        assert _other_tasks() == set()
        _quiet(client)


@pytest.mark.parametrize("seed", range(4))
async def test_slots_never_leak_under_random_cancellation(
    server: FakeDumplingServer, seed: int
) -> None:
    """Callers cancelled at random moments give their slot back; the full width remains."""
    rng = random.Random(seed)
    server.latency = 0.01
    async with AsyncDumplingClient(KEY, base_url=server.url, max_concurrency=3) as client:
        tasks = [asyncio.ensure_future(client.get_tiktok_profile(f"h{i}")) for i in range(40)]
        for _ in range(15):
            await asyncio.sleep(rng.random() * 0.01)
            rng.choice(tasks).cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert server.max_in_flight <= 3
        _quiet(client)
        server.max_in_flight = 0
        server.latency = 0.05
        await asyncio.gather(*(client.get_tiktok_profile(f"z{i}") for i in range(9)))
        assert server.max_in_flight == 3


async def test_the_first_caller_leaving_keeps_the_lookup_for_the_second(
    server: FakeDumplingServer,
) -> None:
    """When the caller that started a lookup is cancelled, the one that joined it still
    gets the profile from the same, single request."""
    server.latency = 0.2
    async with AsyncDumplingClient(KEY, base_url=server.url) as client:
        first = asyncio.ensure_future(client.get_tiktok_profile("someone"))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(client.get_tiktok_profile("someone"))
        await asyncio.sleep(0.02)
        first.cancel()
        profile = await second
        assert first.cancelled() and profile.user.unique_id == "someone"
        assert len(server.requests_for("someone")) == 1
        assert client.credits_spent == 10 and client.credits_uncertain == 0


async def test_all_callers_leaving_stops_the_lookup(server: FakeDumplingServer) -> None:
    """When every caller of a lookup is cancelled, it is cancelled too and counted as
    maybe charged; nothing stays held."""
    server.latency = 0.3
    async with AsyncDumplingClient(KEY, base_url=server.url, max_credits=1000) as client:
        tasks = [asyncio.ensure_future(client.get_tiktok_profile("someone")) for _ in range(3)]
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.01)
        assert all(task.cancelled() for task in tasks)
        assert client.credits_uncertain == 10
        _quiet(client)


async def test_an_error_reaches_every_caller_and_none_is_left_unretrieved(
    server: FakeDumplingServer,
) -> None:
    """A 404 shared by five callers reaches each; the loop reports no lost exception."""
    lost: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _, context: lost.append(context))
    server.latency = 0.05
    async with AsyncDumplingClient(KEY, base_url=server.url) as client:
        results = await asyncio.gather(
            *(client.get_tiktok_profile("unknown_x") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ProfileNotFoundError) for r in results)
        assert len(server.requests_for("unknown_x")) == 1
    del results
    gc.collect()
    await asyncio.sleep(0)
    assert lost == []


@pytest.mark.parametrize("wait", [0.05, 0.0])
async def test_closing_with_callers_waiting_ends_them_as_closed(
    server: FakeDumplingServer, wait: float
) -> None:
    """Closing while callers wait for a lookup (in flight, or not yet started) raises
    ClientClosedError in each."""
    server.latency = 0.5
    client = AsyncDumplingClient(KEY, base_url=server.url)
    tasks = [asyncio.ensure_future(client.get_tiktok_profile("someone")) for _ in range(3)]
    await asyncio.sleep(wait)
    await client.aclose()
    for task in tasks:
        with pytest.raises(ClientClosedError):
            await task


async def test_a_single_call_outlives_the_batch_it_joined(server: FakeDumplingServer) -> None:
    """Cancelling the batch and one of two joined single calls leaves the other its
    profile, from the one request the batch sent."""
    server.latency = 0.1
    async with AsyncDumplingClient(KEY, base_url=server.url) as client:
        batch = asyncio.ensure_future(client.gather_profiles(["joined", "other"]))
        await asyncio.sleep(0.02)
        singles = [asyncio.ensure_future(client.get_tiktok_profile("joined")) for _ in range(2)]
        await asyncio.sleep(0.02)
        batch.cancel()
        singles[0].cancel()
        profile = await singles[1]
        assert profile.user.unique_id == "joined"
        assert len(server.requests_for("joined")) == 1
        await asyncio.sleep(0.01)
        _quiet(client)
