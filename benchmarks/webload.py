"""A web tier of four uvicorn workers on one API key, one Redis: cache, max_wait, lanes.

    python -m benchmarks.webload [--quick] [--parts 1234] [--workers 4] [--bulk 1000]
                                 [--requests 2000] [--handles 500] [--answer-time 0.5]
                                 [--spread 0.5] [--algorithm fixed]

The web tier is ``examples/fastapi_workers.py`` served by ``uvicorn --factory --workers
4`` (a RedisRateLimiter per worker, and a RedisCache unless ``DUMPLING_SHARED_CACHE=0``);
the fake API runs in its own process and answers in ``AnswerTime(mean=--answer-time,
spread=--spread)`` (uniform 0.25-0.75 s by default) unless said otherwise. Every
server binds 127.0.0.1 only; a throwaway redis-server (on PATH) is started on a free
loopback port for each part that needs one, so no two runs share a cache or a quota.

1. Shared cache. A load generator (aiohttp, ``--concurrency`` 50 at once) sends
   ``--requests`` 2,000 ``GET /profiles/{handle}``, handles drawn (seeded) from a Zipf-like
   popularity over ``--handles`` 500 (weight 1 / rank ** 1.1). Run with the shared cache
   and again without any cache (``DUMPLING_SHARED_CACHE=0``: each worker has only its
   in-process single flight). The fake API reports its charges per handle. Target: with
   the shared cache, no handle is charged twice (the app's TTL, 600 s, outlasts the run).
2. Cache hit latency, in-process: ``--hits`` 2,000 sequential ``get_tiktok_profile`` calls
   for a handle already cached, with a RedisCache and with the in-memory ProfileCache.
   The shared cache's added latency on a hit is the difference. Target: added p99 <= 1 ms.
3. max_wait accuracy, in-process: a client runs ``gather_profiles`` of ``--probe-bulk`` 400
   handles against ``RateLimitRule(40, 2.0, "token_bucket")``; meanwhile ``--probes`` 30
   times, 0.3 s apart, ``get_tiktok_profile(handle, max_wait=0.01)``. When it raises
   ``MaxWaitExceededError``, how long it took to raise and its ``retry_after`` are kept and
   the same handle is asked again at once with ``max_wait=math.inf``; the actual wait is
   from that call until the fake server (in this process) recorded the request. This
   part's server answers at once (answer time 0), so that record is the moment the
   request arrived; the wait the limiter imposed is the actual wait less the same call's
   time when nothing holds it (measured before the bulk job; both are printed). Targets:
   raised in < 10 ms (max); |retry_after - imposed| / imposed <= 20 % (p95).
4. Interactive ahead of bulk, across processes: the fake API limits the key to
   ``RateLimitRule(--limit 40, --window 2.0, --algorithm fixed)``; one bulk process (its
   own client and RedisRateLimiter on the same key and Redis as the web tier) runs
   ``gather_profiles`` of ``--bulk`` 1,000 handles; once it is under way the load generator
   sends ``--interactive`` 40 requests to the web tier, one every 0.5 s, each for a new
   handle. The web tier answers 429 when the quota would hold a request past its
   MAX_WAIT (2 s); those are counted, and the latencies are of the 200s. The peer run
   sends the same interactive stream to the idle tier after the bulk job ended.
   Targets: interactive p95 <= the unit refill time (window / limit, 50 ms) + the mean
   answer time (with a spread of answer times, the answer time's own p95 is above that:
   the idle tier's column shows that floor, ``--spread 0`` makes the target exact);
   bulk efficiency >= 0.90, where
   efficiency = bulk handles delivered / (units offered - interactive units), units
   offered = limit + (limit / window) * (bulk elapsed - mean answer time) (the first
   window's burst, then the refill until the bulk job's last request could be sent),
   interactive units = interactive 200s sent while the bulk job ran.

``--quick`` runs everything smaller (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from benchmarks._server import ServerProcess
from dumpling_async import AsyncDumplingClient, MaxWaitExceededError, ProfileCache
from dumpling_async.testing import ALGORITHMS, AnswerTime, FakeDumplingServer, RateLimitRule

HOST = "127.0.0.1"
KEY = "webload-bench-key"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "fastapi_workers:app"
MAX_WAIT = 2.0  # the web tier's bound on a request's wait (examples/fastapi_workers.py)
START_TIMEOUT = 60.0  # seconds for every uvicorn worker to finish its startup


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


QUICK = {
    "requests": 500,
    "handles": 200,
    "hits": 500,
    "probes": 12,
    "probe_bulk": 200,
    "bulk": 300,
    "interactive": 16,
}


# -- the printed table ---------------------------------------------------------------------


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


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def print_table(sections: Sequence[Section], header: str) -> None:
    heads = ("measure", "value", "peer", "ratio")
    rows = [r for s in sections for r in s.rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(heads)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "-" * len(line(heads))
    print(header)
    print(rule)
    print(line(heads))
    for section in sections:
        print(rule)
        print(section.title)
        peer = f"; peer: {section.peer}" if section.peer else ""
        setup = f"{section.setup} (value: {section.value}{peer})"
        print(textwrap.fill(setup, width=100, initial_indent="  ", subsequent_indent="  "))
        for r in section.rows:
            print(line(r))
        for note in section.notes:
            print(
                textwrap.fill(
                    f"note: {note}", width=100, initial_indent="  ", subsequent_indent="    "
                )
            )
        for target, met in section.targets:
            print(f"  target {target}: {'met' if met else 'NOT met'}")
    print(rule)


# -- statistics ----------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The nearest-rank *q* quantile (0 < q <= 1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> float:
    return seconds * 1000


def zipf_handles(*, handles: int, requests: int, exponent: float, seed: int) -> list[str]:
    """*requests* handles drawn from *handles* with weight 1 / rank ** *exponent*."""
    names = [f"fan{rank}" for rank in range(1, handles + 1)]
    weights = [1 / rank**exponent for rank in range(1, handles + 1)]
    return random.Random(seed).choices(names, weights, k=requests)


# -- processes: redis-server, uvicorn, the fake API ----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def _stop(proc: subprocess.Popen[Any], *, group: bool = False, timeout: float = 20.0) -> None:
    """Terminate *proc* (and, with *group*, whatever is left of the session it leads)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the workers, had any outlived it


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, no persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--dir", tmp]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(port)
            yield f"redis://{HOST}:{port}/0"
        finally:
            _stop(proc, timeout=10.0)


class _StartupWatch:
    """Reads uvicorn's log: counts the workers whose startup completed, passes on what is
    not routine, keeps the last lines for an error message."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._ready = 0
        self._changed = threading.Condition()
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self._thread = threading.Thread(target=self._read, name="uvicorn-log", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._stream:
            text = raw.rstrip("\n")
            self.tail.append(text)
            if "Application startup complete" in text:
                with self._changed:
                    self._ready += 1
                    self._changed.notify_all()
            elif not text.startswith("INFO:"):
                print(f"  [web tier] {text}", file=sys.stderr, flush=True)
        with self._changed:
            self._changed.notify_all()

    def wait(self, workers: int, proc: subprocess.Popen[Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._ready < workers:
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    tail = "\n".join(self.tail)
                    raise RuntimeError(f"{self._ready}/{workers} workers started:\n{tail}")
                self._changed.wait(min(left, 0.2))

    def join(self) -> None:
        self._thread.join(timeout=5.0)


@contextlib.contextmanager
def web_tier(env: dict[str, str], *, workers: int) -> Iterator[str]:
    """``uvicorn fastapi_workers:app --factory --workers N``, once every worker's startup
    has completed; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", APP, "--factory", "--app-dir", str(EXAMPLES)]
    command += ["--workers", str(workers), "--host", HOST, "--port", str(port)]
    command += ["--log-level", "info", "--no-access-log"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("DUMPLING")}
    proc = subprocess.Popen(
        command,
        env={**base, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the workers go with it
    )
    watch = _StartupWatch(proc.stderr)
    try:
        watch.wait(workers, proc, START_TIMEOUT)
        wait_for_port(port)
        yield f"http://{HOST}:{port}"
    finally:
        _stop(proc, group=True)
        watch.join()


def _tier_env(api_url: str, redis_url: str, *, shared_cache: bool) -> dict[str, str]:
    return {
        "DUMPLINGAI_API_KEY": KEY,
        "DUMPLINGAI_API_URL": api_url,
        "DUMPLING_REDIS_URL": redis_url,
        "DUMPLING_SHARED_CACHE": "1" if shared_cache else "0",
    }


def _charges_child(conn: Connection, latency: AnswerTime | float, seed: int) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_charges(conn, latency, seed))
    conn.close()


async def _serve_charges(conn: Connection, latency: AnswerTime | float, seed: int) -> None:
    async with FakeDumplingServer(latency=latency, latency_seed=seed, host=HOST) as api:
        conn.send(api.url)
        loop = asyncio.get_running_loop()
        while True:
            try:
                command = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):
                return  # the parent went away
            if command != "charged":
                return
            conn.send((dict(api.charged), api.requests))


class ChargingApi:
    """The fake API (no rate limit) in its own process, which says what it charged per
    handle (``ServerProcess`` reports only the most charges of any one handle)."""

    def __init__(self, *, latency: AnswerTime | float, seed: int) -> None:
        self._latency = latency
        self._seed = seed
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self.url = ""

    def charged(self) -> tuple[Counter[str], int]:
        """Charges by handle, and every request the server saw."""
        assert self._conn is not None
        self._conn.send("charged")
        charged, requests = self._conn.recv()
        return Counter(charged), int(requests)

    def __enter__(self) -> Self:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._conn = parent
        self._process = ctx.Process(
            target=_charges_child, args=(child, self._latency, self._seed), daemon=True
        )
        self._process.start()
        child.close()
        try:
            if not parent.poll(30.0):
                raise RuntimeError("the fake API process did not start in time")
            self.url = str(parent.recv())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            with contextlib.suppress(OSError, ValueError):
                conn.send("stop")
            conn.close()
        if process is not None:
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join(5.0)


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
        ChargingApi(latency=cfg.answer, seed=cfg.seed) as api,
        redis_server() as redis_url,
        web_tier(
            _tier_env(api.url, redis_url, shared_cache=shared_cache), workers=cfg.workers
        ) as url,
    ):
        started = time.monotonic()
        statuses = asyncio.run(_load(url, handles, cfg.concurrency))
        elapsed = time.monotonic() - started
        charged, api_requests = api.charged()
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


async def _hits(redis_url: str, n: int) -> tuple[list[float], list[float], int]:
    from dumpling_async.redis import RedisCache

    async with FakeDumplingServer() as api:
        async with RedisCache(redis_url, api_key=KEY, prefix="webload-hits") as shared:
            redis_times = await _hit_latencies(api.url, shared, n)
        memory_times = await _hit_latencies(api.url, ProfileCache(), n)
        return redis_times, memory_times, sum(api.charged.values())


def part_hits(cfg: Config) -> Section:
    with redis_server() as redis_url:
        redis_times, memory_times, charges = asyncio.run(_hits(redis_url, cfg.hits))
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
    section.row("charges (one per client, to fill it)", charges)
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


async def _probes(cfg: Config) -> tuple[list[Probe], int, float, float]:
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
            results = await bulk
        finally:
            bulk.cancel()
        ok = sum(r.ok for r in results)
        return probes, ok, time.monotonic() - started, pct(transits, 0.5)


def part_max_wait(cfg: Config) -> Section:
    probes, bulk_ok, elapsed, transit = asyncio.run(_probes(cfg))
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
    section.row("|retry_after - actual| / actual p50", pct(errors, 0.5))
    section.row("|retry_after - actual| / actual p95", pct(errors, 0.95))
    section.row("|retry_after - actual| / actual max", pct(errors, 1.0))
    section.row("the same p50, the unheld call's time taken off", pct(net, 0.5))
    section.row("the same p95, the unheld call's time taken off", pct(net, 0.95))
    section.row(f"bulk handles delivered (of {cfg.probe_bulk})", bulk_ok)
    late = sum(not p.bulk_running for p in probes)
    if late:
        section.notes.append(f"{late} probes came after the bulk job ended (no contention)")
    if not raised:
        section.notes.append("no probe raised: nothing to measure")
    section.targets.append(("raised in < 10 ms (max)", bool(raised) and max(raised_in) < 0.010))
    section.targets.append(
        (
            "retry_after within 20 % of the wait imposed (p95, unheld call's time off)",
            bool(net) and pct(net, 0.95) <= 0.2,
        )
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
    p95 = pct(ok_loaded, 0.95)
    section.targets.append(
        (f"interactive p95 <= refill + mean answer ({ms(goal):.0f} ms)", p95 <= goal)
    )
    section.targets.append(("bulk efficiency >= 0.90", efficiency >= 0.9))
    return section


# -- main ----------------------------------------------------------------------------------


def _progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Config()
    parser.add_argument("--quick", action="store_true", help="a smaller run of everything")
    parser.add_argument("--parts", default=defaults.parts, help="which parts, e.g. 14")
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument(
        "--answer-time",
        type=float,
        default=defaults.answer_time,
        metavar="SECONDS",
        help="the fake API's mean answer time (parts 1, 4)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=defaults.spread,
        help="the answer time's spread around its mean (AnswerTime.spread)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--requests", type=int, help=f"part 1 (default {defaults.requests})")
    parser.add_argument("--handles", type=int, help=f"part 1 (default {defaults.handles})")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--hits", type=int, help=f"part 2 (default {defaults.hits})")
    parser.add_argument("--probes", type=int, help=f"part 3 (default {defaults.probes})")
    parser.add_argument("--probe-bulk", type=int, help=f"part 3 (default {defaults.probe_bulk})")
    parser.add_argument("--bulk", type=int, help=f"part 4 (default {defaults.bulk})")
    parser.add_argument("--interactive", type=int, help=f"part 4 (default {defaults.interactive})")
    parser.add_argument("--limit", type=int, default=defaults.limit, help="parts 3, 4")
    parser.add_argument("--window", type=float, default=defaults.window, help="parts 3, 4")
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default=defaults.algorithm,
        help="part 4's server algorithm",
    )
    args = parser.parse_args(argv)
    if set(args.parts) - set("1234"):
        parser.error("--parts takes digits 1 to 4")
    if args.answer_time < 0 or args.workers < 1 or args.concurrency < 1:
        parser.error("--answer-time must be >= 0, --workers and --concurrency >= 1")
    if not 0 <= args.spread <= 1:
        parser.error("--spread must be between 0 and 1")
    sizes: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in ("requests", "handles", "hits", "probes", "probe_bulk", "bulk", "interactive"):
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    if any(v < 1 for v in sizes.values()):
        parser.error("sizes must be >= 1")
    return replace(
        defaults,
        parts=args.parts,
        workers=args.workers,
        answer_time=args.answer_time,
        spread=args.spread,
        seed=args.seed,
        concurrency=args.concurrency,
        limit=args.limit,
        window=args.window,
        algorithm=args.algorithm,
        **sizes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.monotonic()
    runs = {"1": part_cache, "2": part_hits, "3": part_max_wait, "4": part_lanes}
    sections = [runs[p](cfg) for p in "1234" if p in cfg.parts]
    header = (
        f"benchmarks.webload: examples/fastapi_workers.py under uvicorn, fake API and Redis "
        f"on {HOST}; {time.monotonic() - started:.0f} s in all"
    )
    print_table(sections, header)
    return 0 if all(met for s in sections for _, met in s.targets) else 1


if __name__ == "__main__":
    sys.exit(main())
