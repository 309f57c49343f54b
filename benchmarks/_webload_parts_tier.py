"""The two parts of ``benchmarks.webload`` that run the uvicorn web tier on one API key and
one Redis: part 1, the shared cache across workers, a Zipf-like load with the RedisCache
and with no cache, charges counted per handle (``part_cache``); and part 4, interactive
requests to the tier beside a bulk job in a process of its own on the same key, against
the same requests to the idle tier (``part_lanes``); with what only they use (the load
generators, the bulk process, ``zipf_handles``, ``_ratio``).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from dumpling_async import AsyncDumplingClient
from dumpling_async.testing import RateLimitRule

from ._server import ServerProcess
from ._webload_parts import Config, Section, _progress, ms, pct
from ._webload_procs import KEY, MAX_WAIT, _tier_env, redis_server, web_tier

__all__ = ["part_cache", "part_lanes", "zipf_handles"]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def zipf_handles(*, handles: int, requests: int, exponent: float, seed: int) -> list[str]:
    """*requests* handles drawn from *handles* with weight 1 / rank ** *exponent*."""
    names = [f"fan{rank}" for rank in range(1, handles + 1)]
    weights = [1 / rank**exponent for rank in range(1, handles + 1)]
    return random.Random(seed).choices(names, weights, k=requests)


# -- 1. shared cache -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CacheRun:
    requests: int
    distinct: int
    statuses: Counter[int]
    charged: Counter[str]
    api_requests: int
    elapsed: float

    @property
    def charges(self) -> int:
        return sum(self.charged.values())

    @property
    def max_charges(self) -> int:
        return max(self.charged.values(), default=0)

    @property
    def charged_twice(self) -> int:
        return sum(1 for n in self.charged.values() if n > 1)


async def _load(base: str, handles: Sequence[str], concurrency: int) -> Counter[int]:
    """GET /profiles/{handle} for each of *handles*, *concurrency* at once; the statuses."""
    statuses: Counter[int] = Counter()
    todo = iter(handles)
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as http:

        async def runner() -> None:
            for handle in todo:
                try:
                    async with http.get(f"/profiles/{handle}") as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1  # no answer

        await asyncio.gather(*(runner() for _ in range(concurrency)))
    return statuses


def _cache_run(cfg: Config, handles: Sequence[str], *, shared_cache: bool) -> CacheRun:
    with (
        ServerProcess(options={"latency": cfg.answer, "latency_seed": cfg.seed}) as api,
        redis_server() as redis_url,
        web_tier(
            _tier_env(api.url, redis_url, shared_cache=shared_cache), workers=cfg.workers
        ) as url,
    ):
        started = time.monotonic()
        statuses = asyncio.run(_load(url, handles, cfg.concurrency))
        elapsed = time.monotonic() - started
        stats = api.stats()
        charged, api_requests = Counter(stats.charged), stats.requests
    return CacheRun(
        requests=len(handles),
        distinct=len(set(handles)),
        statuses=statuses,
        charged=charged,
        api_requests=api_requests,
        elapsed=elapsed,
    )


def part_cache(cfg: Config) -> Section:
    handles = zipf_handles(
        handles=cfg.handles, requests=cfg.requests, exponent=cfg.zipf, seed=cfg.seed
    )
    shared = _cache_run(cfg, handles, shared_cache=True)
    _progress(f"1. shared cache: {shared.requests} requests in {shared.elapsed:.1f} s")
    none = _cache_run(cfg, handles, shared_cache=False)
    _progress(f"1. no cache: {none.requests} requests in {none.elapsed:.1f} s")
    section = Section(
        "1. shared cache across workers",
        f"{cfg.requests} GET /profiles/{{handle}}, {cfg.concurrency} at once, Zipf "
        f"{cfg.zipf:g} over {cfg.handles} handles, {cfg.workers} uvicorn workers, one Redis, "
        f"API answers {cfg.answers}",
        "RedisCache (DUMPLING_SHARED_CACHE=1)",
        "no cache (=0, in-process single flight only)",
    )
    section.row("requests", shared.requests, none.requests)
    section.row("distinct handles requested", shared.distinct, none.distinct)
    section.row("total charges", shared.charges, none.charges, _ratio(none.charges, shared.charges))
    section.row("max charges per handle", shared.max_charges, none.max_charges)
    section.row("handles charged more than once", shared.charged_twice, none.charged_twice)
    section.row("answered 200", shared.statuses[200], none.statuses[200])
    section.row("answered 429 by the web tier", shared.statuses[429], none.statuses[429])
    for run, name in ((shared, "shared"), (none, "no cache")):
        other = {s: n for s, n in sorted(run.statuses.items()) if s not in (200, 429)}
        if other:
            section.notes.append(f"{name}: other answers (0: none): {other}")
    section.row("elapsed s", shared.elapsed, none.elapsed, _ratio(none.elapsed, shared.elapsed))
    section.targets.append(
        ("each handle charged at most once (shared cache)", shared.max_charges <= 1)
    )
    section.targets.append(
        ("every request answered 200 (shared cache)", shared.statuses[200] == shared.requests)
    )
    return section


# -- 4. interactive ahead of bulk ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BulkJob:
    api_url: str
    redis_url: str
    handles: list[str]
    start_at: float  # time.monotonic(), comparable across processes on Linux


@dataclass(frozen=True, kw_only=True)
class BulkOutcome:
    ok: int
    errors: Counter[str]
    started: float
    ended: float
    client_429s: int


def _bulk_ready() -> int:
    """Run in the bulk process once, so that it has imported everything before it starts."""
    import dumpling_async.redis  # noqa: F401

    return os.getpid()


def _bulk_worker(job: BulkJob) -> BulkOutcome:
    return asyncio.run(_bulk(job))


async def _bulk(job: BulkJob) -> BulkOutcome:
    from dumpling_async.redis import RedisRateLimiter

    async with (
        RedisRateLimiter(job.redis_url, api_key=KEY) as limiter,
        AsyncDumplingClient(KEY, base_url=job.api_url, rate_limiter=limiter) as client,
    ):
        await asyncio.sleep(max(0.0, job.start_at - time.monotonic()))
        started = time.monotonic()
        results = await client.gather_profiles(job.handles)
        ended = time.monotonic()
        errors = Counter(type(r.error).__name__ for r in results if not r.ok)
        return BulkOutcome(
            ok=sum(r.ok for r in results),
            errors=errors,
            started=started,
            ended=ended,
            client_429s=client.rate_limit.rate_limited,
        )


@dataclass(frozen=True, kw_only=True)
class Hit:
    sent: float  # time.monotonic()
    latency: float
    status: int


async def _interactive(
    base: str, handles: Sequence[str], spacing: float, start_at: float
) -> list[Hit]:
    """One GET /profiles/{handle} every *spacing* seconds from *start_at*, not waiting
    for the previous answer."""
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base, timeout=timeout) as http:

        async def one(handle: str, at: float) -> Hit:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            sent = time.monotonic()
            try:
                async with http.get(f"/profiles/{handle}") as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            return Hit(sent=sent, latency=time.monotonic() - sent, status=status)

        return await asyncio.gather(
            *(one(h, start_at + i * spacing) for i, h in enumerate(handles))
        )


def part_lanes(cfg: Config) -> Section:
    rule = RateLimitRule(cfg.limit, cfg.window, cfg.algorithm)  # type: ignore[arg-type]
    options = {"latency": cfg.answer, "latency_seed": cfg.seed}
    rate = cfg.limit / cfg.window
    lead = 1.5 * cfg.window  # the bulk job's burst is spent, it waits on the quota
    ctx = multiprocessing.get_context("spawn")
    with (
        ServerProcess(rule, options=options) as api,
        redis_server() as redis_url,
        web_tier(_tier_env(api.url, redis_url, shared_cache=True), workers=cfg.workers) as url,
        ctx.Pool(1) as pool,
    ):
        pool.apply(_bulk_ready)
        # Every worker's connections opened, and the limit learned, before the bulk job.
        warm = [f"warm{i}" for i in range(2 * cfg.workers)]
        asyncio.run(_interactive(url, warm, 0.0, time.monotonic()))
        time.sleep(cfg.window + 0.2)  # the quota is whole again
        api.reset()
        start_at = time.monotonic() + 0.2
        job = BulkJob(
            api_url=api.url,
            redis_url=redis_url,
            handles=[f"bulk{i}" for i in range(cfg.bulk)],
            start_at=start_at,
        )
        pending = pool.apply_async(_bulk_worker, (job,))
        web = [f"web{i}" for i in range(cfg.interactive)]
        loaded = asyncio.run(_interactive(url, web, cfg.interactive_spacing, start_at + lead))
        bulk: BulkOutcome = pending.get(timeout=60 + 3 * cfg.bulk / rate)
        stats = api.stats()
        _progress(f"4. lanes: bulk {bulk.ok} in {bulk.ended - bulk.started:.1f} s")
        time.sleep(cfg.window + 0.2)
        idle_handles = [f"idle{i}" for i in range(cfg.interactive)]
        idle = asyncio.run(
            _interactive(url, idle_handles, cfg.interactive_spacing, time.monotonic() + 0.1)
        )
        arrived = api.stats().arrived  # both runs' interactive requests, as the API read them
    _progress("4. lanes: idle tier done")

    elapsed = bulk.ended - bulk.started
    during = [h for h in loaded if bulk.started <= h.sent <= bulk.ended]
    interactive_units = sum(h.status == 200 for h in during)
    offered = cfg.limit + rate * max(0.0, elapsed - cfg.answer_time)
    efficiency = bulk.ok / (offered - interactive_units) if offered > interactive_units else 0.0
    refill = cfg.window / cfg.limit
    goal = refill + cfg.answer_time

    section = Section(
        "4. interactive ahead of bulk, across processes",
        f"RateLimitRule({cfg.limit}, {cfg.window:g}, {cfg.algorithm}), API answers "
        f"{cfg.answers}; a bulk process gather_profiles({cfg.bulk}) and {cfg.workers} uvicorn "
        f"workers on one key and one Redis, {cfg.interactive} web requests "
        f"{cfg.interactive_spacing:g} s apart, each a new handle",
        "with the bulk job",
        "idle tier (no bulk job)",
    )
    ok_loaded = [h.latency for h in loaded if h.status == 200]
    ok_idle = [h.latency for h in idle if h.status == 200]
    section.row(
        "interactive requests / 200",
        f"{len(loaded)} / {len(ok_loaded)}",
        f"{len(idle)} / {len(ok_idle)}",
    )
    section.row(
        f"interactive 429 (web tier, MAX_WAIT {MAX_WAIT:g} s)",
        sum(h.status == 429 for h in loaded),
        sum(h.status == 429 for h in idle),
    )
    other = Counter(h.status for h in loaded + idle if h.status not in (200, 429))
    if other:
        section.notes.append(f"other interactive answers (0: none): {dict(other)}")
    for q, name in ((0.5, "p50"), (0.95, "p95"), (1.0, "max")):
        a, b = ms(pct(ok_loaded, q)), ms(pct(ok_idle, q))
        section.row(f"interactive {name} ms", a, b, _ratio(a, b))
    section.row("refill (window / limit) + mean answer, ms", ms(goal))
    # Before the API read it: the web tier's hop and the quota's wait, no answer time.
    held_loaded = [
        arrived[h] - hit.sent for h, hit in zip(web, loaded, strict=True) if h in arrived
    ]
    held_idle = [
        arrived[h] - hit.sent for h, hit in zip(idle_handles, idle, strict=True) if h in arrived
    ]
    for q, name in ((0.5, "p50"), (0.95, "p95"), (1.0, "max")):
        a, b = ms(pct(held_loaded, q)), ms(pct(held_idle, q))
        section.row(f"interactive wait before the API {name} ms", a, b, _ratio(a, b))
    section.row("refill (window / limit), ms", ms(refill))
    section.row(f"bulk handles delivered (of {cfg.bulk})", bulk.ok)
    section.row("bulk elapsed s", elapsed)
    section.row("bulk handles / s", bulk.ok / elapsed if elapsed else math.nan)
    section.row("units offered during the bulk run", offered)
    section.row("interactive units during the bulk run", interactive_units)
    section.row("bulk efficiency", efficiency)
    section.row(
        "API 429s (bulk run) / bulk client saw", f"{stats.rate_limited} / {bulk.client_429s}"
    )
    section.row("API max charges per handle", stats.max_charges_per_handle)
    slowest = cfg.answer_time * (1 + cfg.spread) + 0.25  # past any answer time, and then some
    held = [h for h in loaded if h.status != 200 or h.latency > slowest]
    if held:
        when = ", ".join(f"{h.sent - bulk.started:.1f}" for h in held)
        section.notes.append(
            f"{len(held)} interactive requests took over {ms(slowest):.0f} ms or were refused, "
            f"sent at {when} s into the bulk run"
        )
    waited = [
        (hit.sent - bulk.started, arrived[h] - hit.sent)
        for h, hit in zip(web, loaded, strict=True)
        if h in arrived and arrived[h] - hit.sent > refill
    ]
    if waited:
        when = ", ".join(f"{at:.1f} s ({ms(wait):.0f} ms)" for at, wait in waited)
        section.notes.append(
            f"{len(waited)} interactive requests waited over the refill before the API, sent at "
            f"(waited): {when} into the bulk run"
        )
    if bulk.errors:
        section.notes.append(f"bulk errors: {dict(bulk.errors)}")
    if loaded and loaded[-1].sent > bulk.ended:
        section.notes.append(
            f"{sum(h.sent > bulk.ended for h in loaded)} interactive requests came after the "
            "bulk job ended (use a larger --bulk)"
        )
    if cfg.spread and cfg.answer_time:
        low, high = cfg.answer_time * (1 - cfg.spread), cfg.answer_time * (1 + cfg.spread)
        section.notes.append(
            f"the API's answer time alone is {ms(low):.0f}-{ms(high):.0f} ms (its p95 "
            f"{ms(low + 0.95 * (high - low)):.0f} ms), so the latency target can only be met "
            "with --spread 0; the idle tier's latencies are that floor"
        )
    # A request the tier refused (429) or that never reached the API waited too long.
    unreached = [math.inf for h, hit in zip(web, loaded, strict=True) if h not in arrived]
    held_p95 = pct(held_loaded + unreached, 0.95)
    section.targets.append(
        (
            f"interactive p95 wait before the API <= refill ({ms(refill):.0f} ms; refused "
            "ones count as over): each request's latency about refill + its own answer time",
            bool(held_loaded) and held_p95 <= refill,
        )
    )
    section.targets.append(("bulk efficiency >= 0.90", efficiency >= 0.9))
    return section
