"""What every part of ``benchmarks.webload`` takes and gives, and the two parts measured in
this process: ``Config`` (one run's sizes, keyword-only), ``Section`` (one part's rows and
target verdicts for the printed table), the statistics the parts share (``pct``, ``ms``)
and ``_progress`` (a line on stderr); then part 2, the cache hit latency of a RedisCache
against the in-memory ProfileCache (``part_hits``), and part 3, the max_wait accuracy
beside a bulk job (``part_max_wait``). Parts 1 and 4, which run the web tier, are in
``_webload_parts_tier``.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dumpling_async import AsyncDumplingClient, MaxWaitExceededError, ProfileCache
from dumpling_async.testing import AnswerTime, FakeDumplingServer, RateLimitRule

from ._webload_procs import HOST, KEY, redis_server

__all__ = ["Config", "Section", "_progress", "ms", "part_hits", "part_max_wait", "pct"]


@dataclass(frozen=True, kw_only=True)
class Config:
    """One run's sizes (``--quick`` shrinks them)."""

    parts: str = "1234"
    workers: int = 4
    answer_time: float = 0.5
    spread: float = 0.5
    seed: int = 1
    # 1. shared cache
    requests: int = 2000
    handles: int = 500
    zipf: float = 1.1
    concurrency: int = 50
    # 2. hit latency
    hits: int = 2000
    # 3. max_wait
    probes: int = 30
    probe_spacing: float = 0.3
    probe_bulk: int = 400
    # 4. lanes
    bulk: int = 1000
    interactive: int = 40
    interactive_spacing: float = 0.5
    limit: int = 40
    window: float = 2.0
    algorithm: str = "fixed"

    @property
    def answer(self) -> AnswerTime | float:
        if not self.answer_time:
            return 0.0
        return AnswerTime(mean=self.answer_time, spread=self.spread)

    @property
    def answers(self) -> str:
        return f"AnswerTime(mean={self.answer_time:g}, spread={self.spread:g})"


# -- a part's rows in the printed table ---------------------------------------------------


@dataclass
class Section:
    """One part of the table: rows of (measure, value, peer, ratio) and the verdicts."""

    title: str
    setup: str  # how it was measured, printed under the title
    value: str  # what the value column holds here
    peer: str  # what the peer column holds here ("" when there is no peer run)
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, bool]] = field(default_factory=list)

    def row(self, measure: str, value: object, peer: object = "", ratio: object = "") -> None:
        self.rows.append((measure, _cell(value), _cell(peer), _cell(ratio)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# -- statistics ----------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The nearest-rank *q* quantile (0 < q <= 1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> float:
    return seconds * 1000


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# -- 2. cache hit latency ------------------------------------------------------------------


async def _hit_latencies(api_url: str, cache: Any, n: int) -> list[float]:
    """*n* sequential lookups of one handle already in *cache*; seconds each."""
    async with AsyncDumplingClient(KEY, base_url=api_url, cache=cache) as client:
        await client.get_tiktok_profile("cachedhandle")  # the one charge: now it is cached
        for _ in range(min(200, n)):  # warm-up, untimed
            await client.get_tiktok_profile("cachedhandle")
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await client.get_tiktok_profile("cachedhandle")
            times.append(time.perf_counter() - started)
    return times


async def _round_trips(redis_url: str, n: int) -> list[float]:
    """*n* bare redis-py MGETs of two keys, as a hit reads them: the round trip alone."""
    import redis.asyncio as aioredis

    bare = aioredis.Redis.from_url(redis_url)
    try:
        await bare.set("webload-bare:a", b"p" + b"x" * 1500)
        for _ in range(min(200, n)):  # warm-up, untimed
            await bare.mget("webload-bare:a", "webload-bare:b")
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await bare.mget("webload-bare:a", "webload-bare:b")
            times.append(time.perf_counter() - started)
        return times
    finally:
        await bare.aclose()


async def _hits(redis_url: str, n: int) -> tuple[list[float], list[float], list[float], int]:
    from dumpling_async.redis import RedisCache

    async with FakeDumplingServer() as api:
        async with RedisCache(redis_url, api_key=KEY, prefix="webload-hits") as shared:
            redis_times = await _hit_latencies(api.url, shared, n)
        memory_times = await _hit_latencies(api.url, ProfileCache(), n)
        bare_times = await _round_trips(redis_url, n)
        return redis_times, memory_times, bare_times, sum(api.charged.values())


def part_hits(cfg: Config) -> Section:
    with redis_server() as redis_url:
        redis_times, memory_times, bare, charges = asyncio.run(_hits(redis_url, cfg.hits))
    _progress(f"2. cache hits: {2 * cfg.hits} lookups")
    section = Section(
        "2. cache hit latency, in-process",
        f"{cfg.hits} sequential get_tiktok_profile of a cached handle, one client, Redis on {HOST}",
        "RedisCache",
        "ProfileCache (in-memory); ratio: added by the shared cache",
    )
    added = {}
    for q, name in ((0.5, "p50"), (0.99, "p99"), (1.0, "max")):
        shared, memory = ms(pct(redis_times, q)), ms(pct(memory_times, q))
        added[name] = shared - memory
        section.row(f"hit {name} ms", shared, memory, f"+{shared - memory:.3f} ms")
    for q, name in ((0.5, "p50"), (0.99, "p99")):
        shared, trip = ms(pct(redis_times, q)), ms(pct(bare, q))
        section.row(
            f"bare redis-py MGET {name} ms (ratio: the hit less it)",
            trip,
            "",
            f"+{shared - trip:.3f} ms",
        )
    section.row("charges (one per client, to fill it)", charges)
    section.notes.append(
        "a hit is one MGET round trip to Redis: where the bare round trip's own p99 is near "
        "1 ms (a slow loopback), the added p99 cannot be under it"
    )
    section.targets.append((f"added p99 <= 1 ms (+{added['p99']:.3f} ms)", added["p99"] <= 1.0))
    return section


# -- 3. max_wait accuracy ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Probe:
    raised: bool
    raised_in: float = math.nan
    retry_after: float | None = None
    actual: float = math.nan
    bulk_running: bool = True


async def _lateness(into: list[float]) -> None:
    """Forever: how late the event loop wakes a 1 ms timer (its own floor, this run)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        into.append(time.perf_counter() - started - 0.001)


async def _probes(cfg: Config) -> tuple[list[Probe], int, float, float, list[float]]:
    rule = RateLimitRule(cfg.limit, cfg.window, "token_bucket")
    async with (
        FakeDumplingServer(rate_limit=rule) as api,
        AsyncDumplingClient(KEY, base_url=api.url) as client,
    ):
        transits = []  # a call until the API's record of it, with nothing to wait for
        for n in range(5):
            asked = time.monotonic()
            await client.get_tiktok_profile(f"first{n}")
            transits.append(api.requests_for(f"first{n}")[0].at - asked)
        bulk_handles = [f"bulk{i}" for i in range(cfg.probe_bulk)]
        started = time.monotonic()
        bulk = asyncio.ensure_future(client.gather_profiles(bulk_handles))
        probes = []
        late: list[float] = []
        watch = asyncio.ensure_future(_lateness(late))
        try:
            await asyncio.sleep(cfg.window)  # the burst is gone: the bulk job waits on refills
            for n in range(cfg.probes):
                handle = f"vip{n}"
                asked = time.monotonic()
                try:
                    await client.get_tiktok_profile(handle, max_wait=0.01)
                except MaxWaitExceededError as exc:
                    raised_in = time.monotonic() - asked
                    again = time.monotonic()
                    await client.get_tiktok_profile(handle, max_wait=math.inf)
                    seen = [r.at for r in api.requests_for(handle) if r.status == 200]
                    probes.append(
                        Probe(
                            raised=True,
                            raised_in=raised_in,
                            retry_after=exc.retry_after,
                            actual=seen[0] - again if seen else math.nan,
                            bulk_running=not bulk.done(),
                        )
                    )
                else:
                    probes.append(Probe(raised=False, bulk_running=not bulk.done()))
                await asyncio.sleep(cfg.probe_spacing)
            watch.cancel()
            results = await bulk
        finally:
            bulk.cancel()
            watch.cancel()
        ok = sum(r.ok for r in results)
        return probes, ok, time.monotonic() - started, pct(transits, 0.5), late


def part_max_wait(cfg: Config) -> Section:
    probes, bulk_ok, elapsed, transit, late = asyncio.run(_probes(cfg))
    _progress(f"3. max_wait: {len(probes)} probes, bulk {bulk_ok} in {elapsed:.1f} s")
    raised = [p for p in probes if p.raised]
    said = [p for p in raised if p.retry_after is not None and p.actual > 0]
    errors = [abs(p.retry_after - p.actual) / p.actual for p in said if p.retry_after is not None]
    # The wait the limiter imposed: the actual time less what the same call takes unheld.
    net = [
        abs(p.retry_after - (p.actual - transit)) / (p.actual - transit)
        for p in said
        if p.retry_after is not None and p.actual > transit
    ]
    raised_in = [p.raised_in for p in raised]
    section = Section(
        "3. max_wait accuracy, in-process",
        f"gather_profiles({cfg.probe_bulk}) + {cfg.probes} probes with max_wait=0.01 s, "
        f"{cfg.probe_spacing:g} s apart, RateLimitRule({cfg.limit}, {cfg.window:g}, "
        "token_bucket); the API answers at once here; actual wait: the call until the API's "
        "record of the request; imposed: that less the same call's time unheld",
        "measured",
        "",
    )
    section.row("probes / raised MaxWaitExceededError", f"{len(probes)} / {len(raised)}")
    section.row("raised with retry_after None", sum(p.retry_after is None for p in raised))
    section.row("raised_in p50 ms", ms(pct(raised_in, 0.5)))
    section.row("raised_in max ms", ms(pct(raised_in, 1.0)))
    section.row("retry_after p50 ms", ms(pct([p.retry_after for p in said if p.retry_after], 0.5)))
    section.row("actual wait p50 ms", ms(pct([p.actual for p in said], 0.5)))
    late_by = [p.actual - p.retry_after for p in said if p.retry_after is not None]
    section.row("actual - retry_after p50 ms (+: later than said)", ms(pct(late_by, 0.5)))
    section.row(
        "actual - retry_after min / max ms",
        f"{ms(min(late_by, default=math.nan)):.2f} / {ms(max(late_by, default=math.nan)):.2f}",
    )
    section.row("call to API record, nothing to wait for, ms", ms(transit))
    section.row(
        "the loop's own lateness, a 1 ms timer, p50 / p99 / max ms",
        " / ".join(f"{ms(pct(late, q)):.2f}" for q in (0.5, 0.99, 1.0)),
    )
    section.row("|retry_after - actual| / actual p50", pct(errors, 0.5))
    section.row("|retry_after - actual| / actual p95", pct(errors, 0.95))
    section.row("|retry_after - actual| / actual max", pct(errors, 1.0))
    section.row("the same p50, the unheld call's time taken off", pct(net, 0.5))
    section.row("the same p95, the unheld call's time taken off", pct(net, 0.95))
    section.row(f"bulk handles delivered (of {cfg.probe_bulk})", bulk_ok)
    after = sum(not p.bulk_running for p in probes)
    if after:
        section.notes.append(f"{after} probes came after the bulk job ended (no contention)")
    if not raised:
        section.notes.append("no probe raised: nothing to measure")
    section.notes.append(
        "a wait ends on an event-loop timer: the loop's own lateness (above, measured beside "
        "the probes) is in every wait imposed, and a stall of the loop in any raise"
    )
    section.targets.append(("raised in < 10 ms (max)", bool(raised) and max(raised_in) < 0.010))
    section.targets.append(
        (
            "retry_after within 20 % of the wait imposed (p95, unheld call's time off)",
            bool(net) and pct(net, 0.95) <= 0.2,
        )
    )
    return section
