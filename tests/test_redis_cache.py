"""The shared cache and single flight across processes, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from _redis import RedisProcess
from conftest import KEY

from dumpling_async import AsyncDumplingClient, ProfileNotFoundError, SharedCache
from dumpling_async.redis import RedisCache, RedisCreditBudget, RedisRateLimiter, key_namespace
from dumpling_async.testing import FakeDumplingServer

WORKER = str(Path(__file__).with_name("_cache_worker.py"))


async def _start_workers(
    server: FakeDumplingServer, redis_url: str, handle: str, count: int, *, lease: float = 10.0
) -> list[asyncio.subprocess.Process]:
    return [
        await asyncio.create_subprocess_exec(
            sys.executable,
            WORKER,
            server.url,
            redis_url,
            handle,
            str(count),
            str(lease),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]


async def _summaries(procs: list[asyncio.subprocess.Process]) -> list[dict[str, object]]:
    outputs = [await proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [o[1] for o in outputs]
    return [json.loads(out.splitlines()[-1]) for out, _ in outputs]


def _cache(redis_server: RedisProcess, **options: object) -> RedisCache:
    return RedisCache(redis_server.url, api_key=KEY, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("workers", [2, 4])
async def test_processes_asking_one_handle_at_once_pay_once(
    redis_server: RedisProcess, workers: int
) -> None:
    """Worker processes released together on one handle: one request, one charge, and
    every other worker is handed the answer."""
    async with FakeDumplingServer(latency=0.5) as server:
        procs = await _start_workers(server, redis_server.url, "same", workers)
        summaries = await _summaries(procs)
    assert [s["outcome"] for s in summaries] == ["same"] * workers
    assert server.charged == {"same": 1} and len(server.requests_for("same")) == 1
    assert sorted(int(s["hits"]) for s in summaries) == [0] + [1] * (workers - 1)  # type: ignore[call-overload]


async def test_a_killed_leader_is_replaced_once_its_lease_expires(
    redis_server: RedisProcess,
) -> None:
    """SIGKILL the worker fetching a handle: the lookups waiting on it make one request
    after its lease expires, and every one of them gets the profile."""
    async with FakeDumplingServer(latency=1.0, charge_abandoned=True) as server:
        (leader,) = await _start_workers(server, redis_server.url, "held", 1, lease=0.5)
        while not server.in_flight:  # noqa: ASYNC110 - polling the server
            await asyncio.sleep(0.005)
        key = "worker-shared-key"  # the worker's
        caches = [RedisCache(redis_server.url, api_key=key, lease=0.5) for _ in range(3)]
        clients = [AsyncDumplingClient(key, base_url=server.url, cache=c) for c in caches]
        waiting = [asyncio.ensure_future(c.get_tiktok_profile("held")) for c in clients]
        await asyncio.sleep(0.1)
        leader.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await leader.wait()
        profiles = await asyncio.gather(*waiting)
        for client, cache in zip(clients, caches, strict=True):
            await client.aclose()
            await cache.aclose()
    assert all(p.user is not None and p.user.unique_id == "held" for p in profiles)
    _, second = server.requests_for("held")  # the dead leader's, one follower's
    # Answered 1 s after it arrived: the follower's was sent after the leader was gone.
    assert second.at - 1.0 >= killed
    assert sorted(c.hits for c in caches) == [0, 1, 1]


async def test_a_profile_is_reused_across_clients_for_its_ttl(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    """A profile one client bought is another's for ttl seconds, then bought again; the
    stored value is under a hash, never the API key or the handle."""
    async with (
        FakeDumplingServer() as server,
        _cache(redis_server, ttl=0.3) as one,
        _cache(redis_server, ttl=0.3) as two,
        AsyncDumplingClient(KEY, base_url=server.url, cache=one) as a,
        AsyncDumplingClient(KEY, base_url=server.url, cache=two) as b,
    ):
        assert isinstance(one, SharedCache) and a.cache is one
        first = await a.get_tiktok_profile("alice")
        again = await b.get_tiktok_profile("@Alice")
        assert again.raw == first.raw and server.charged == {"alice": 1}
        names = [name.decode() async for name in redis_client.scan_iter()]
        await asyncio.sleep(0.35)
        await b.get_tiktok_profile("alice")
    assert server.charged == {"alice": 2}
    assert names and all(n.startswith(key_namespace(KEY) + ":cache:") for n in names), names
    assert not any(KEY in n or "alice" in n for n in names)


async def test_a_not_found_is_handed_over_but_never_cached(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    """Clients asking an unknown handle at once share one request and each raise the
    not-found; it is kept only for the handover, not as a cached answer."""
    async with (
        FakeDumplingServer(latency=0.3) as server,
        _cache(redis_server, handover=0.5) as one,
        _cache(redis_server, handover=0.5) as two,
        AsyncDumplingClient(KEY, base_url=server.url, cache=one) as a,
        AsyncDumplingClient(KEY, base_url=server.url, cache=two) as b,
    ):
        outcomes = await asyncio.gather(
            a.get_tiktok_profile("unknown_zz"),
            b.get_tiktok_profile("unknown_zz"),
            return_exceptions=True,
        )
        names = [name.decode() async for name in redis_client.scan_iter()]
        await asyncio.sleep(0.55)
        with pytest.raises(ProfileNotFoundError):
            await b.get_tiktok_profile("unknown_zz")
    assert all(isinstance(o, ProfileNotFoundError) for o in outcomes), outcomes
    assert all(o.handle == "unknown_zz" for o in outcomes)  # type: ignore[union-attr]
    assert len(server.requests_for("unknown_zz")) == 2  # one shared, one after the handover
    assert names and all(":handover:" in n for n in names), names


async def test_lookups_go_on_uncached_while_redis_is_down(
    redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped mid-run: every lookup still answers (uncached, so paid again), the
    outage is logged once, and the cache is used again once Redis is back."""
    caplog.set_level(logging.INFO, logger="dumpling_async")
    async with (
        FakeDumplingServer() as server,
        _cache(redis_server, retry_redis_after=0.2) as cache,
        AsyncDumplingClient(KEY, base_url=server.url, cache=cache) as client,
    ):
        await client.get_tiktok_profile("alice")
        redis_server.stop()
        started = time.monotonic()
        for handle in ["alice", "bob", "alice"]:
            await client.get_tiktok_profile(handle)
        down = time.monotonic() - started
        redis_server.start()
        await asyncio.sleep(0.25)  # retry_redis_after: asked again only after it
        await client.get_tiktok_profile("carol")
        await client.get_tiktok_profile("carol")
    assert server.charged == {"alice": 3, "bob": 1, "carol": 1}
    events = [r.getMessage() for r in caplog.records]
    assert sum("cache_unavailable" in e for e in events) == 1, events
    assert any("cache_available" in e for e in events), events
    assert down < 1.0  # Redis asked at most every retry_redis_after, each within op_timeout


async def test_bulk_jobs_in_two_clients_pay_each_handle_once(redis_server: RedisProcess) -> None:
    """Two overlapping bulk jobs on one key, each with its own connection to the cache:
    each handle charged once."""
    async with (
        FakeDumplingServer(latency=0.05) as server,
        _cache(redis_server) as one,
        _cache(redis_server) as two,
        AsyncDumplingClient(KEY, base_url=server.url, cache=one) as a,
        AsyncDumplingClient(KEY, base_url=server.url, cache=two) as b,
    ):
        left, right = await asyncio.gather(
            a.gather_profiles(f"user{i}" for i in range(60)),
            b.gather_profiles(f"user{i}" for i in range(30, 90)),
        )
    assert all(r.ok for r in left + right)
    assert len(server.charged) == 90 and set(server.charged.values()) == {1}


async def test_videos_are_single_flight_across_clients_but_not_cached(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    """Any single-object endpoint shares a lookup in flight; only profiles are cached."""
    url = "https://www.tiktok.com/@someone/video/7234567890123456789"
    async with (
        FakeDumplingServer(latency=0.3) as server,
        _cache(redis_server) as one,
        _cache(redis_server) as two,
        AsyncDumplingClient(KEY, base_url=server.url, cache=one) as a,
        AsyncDumplingClient(KEY, base_url=server.url, cache=two) as b,
    ):
        first, second = await asyncio.gather(a.get_tiktok_video(url), b.get_tiktok_video(url))
        names = [name.decode() async for name in redis_client.scan_iter()]
    assert first.raw == second.raw
    assert len(server.requests_to("get-tiktok-video")) == 1
    assert names and all(":handover:" in n for n in names), names


async def test_large_bodies_are_compressed_and_oversized_ones_not_cached(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    """A profile's body is stored compressed; past max_entry_bytes it is handed over
    only, never cached."""
    async with (
        FakeDumplingServer() as server,
        _cache(redis_server, compress_over=64) as small,
        _cache(redis_server, max_entry_bytes=64) as tiny,
        AsyncDumplingClient(KEY, base_url=server.url, cache=small) as a,
        AsyncDumplingClient(KEY, base_url=server.url, cache=tiny) as b,
    ):
        profile = await a.get_tiktok_profile("alice")
        (stored,) = [await redis_client.get(n) async for n in redis_client.scan_iter()]
        await b.get_tiktok_profile("bob")
        names = [name.decode() async for name in redis_client.scan_iter()]
    body = json.dumps(profile.raw).encode()
    assert stored[:1] == b"z" and len(stored) < len(body)
    assert sum(":cache:" in n for n in names) == 1 and sum(":handover:" in n for n in names) == 1


async def test_clearing_the_cache_leaves_the_limiter_and_the_budget_alone(
    redis_server: RedisProcess, redis_client: aioredis.Redis
) -> None:
    """clear() forgets cached answers only: the shared quota and budget of the same key
    stay."""
    async with (
        FakeDumplingServer() as server,
        RedisRateLimiter(redis_server.url, api_key=KEY) as limiter,
        RedisCreditBudget(redis_server.url, api_key=KEY, max_credits=1_000) as budget,
        _cache(redis_server) as cache,
        AsyncDumplingClient(
            KEY, base_url=server.url, cache=cache, rate_limiter=limiter, credit_budget=budget
        ) as client,
    ):
        await client.get_tiktok_profile("alice")
        before = {name.decode() async for name in redis_client.scan_iter()}
        await cache.clear()
        after = {name.decode() async for name in redis_client.scan_iter()}
    assert any(":cache:" in name for name in before)
    assert after == {name for name in before if ":cache:" not in name} and after
