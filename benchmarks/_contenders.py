"""The contenders of ``benchmarks.ratelimit``: one bulk job each, against a server URL.

* ``dumpling_async``: this client at its defaults, ``gather_profiles(handles)``, told
  nothing about the limit, the window or the answer time;
* ``naive gather``: ``asyncio.gather`` + a semaphore + plain aiohttp, retrying a 429 with
  exponential backoff (0.05 s doubling, x0.5-1.5 jitter, 8 attempts) and ignoring every
  header;
* ``aiolimiter``: the same, behind ``AsyncLimiter(limit, window)``: the true starting
  rate, known in advance (which a real client rarely knows), but static (a token bucket
  that refills only N per window gets ``AsyncLimiter(limit, limit x window / N)``: the
  same bucket at the same rate).

The peers' in-flight count must never be what holds them back when the server answers
slowly: they get ``peer_in_flight(rate, mean answer time)`` = max(16, ceil(2 x rate x
mean)) requests in flight (twice what the rate needs, by Little's law), and a connection
pool as large. They never read a header, so what a server says about its quota cannot
change their runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiolimiter import AsyncLimiter

from dumpling_async import AsyncDumplingClient

__all__ = [
    "CONTENDERS",
    "PEERS",
    "Contender",
    "Job",
    "RunResult",
    "Sample",
    "peer_in_flight",
    "run_client",
    "run_naive",
]

API_KEY = "bench-key"
PROFILE_PATH = "/api/v1/get-tiktok-profile"
NAIVE_CONCURRENCY = 16
BACKOFF_BASE, MAX_ATTEMPTS = 0.05, 8
_POLL_SECONDS = 0.25  # how often the client's chosen concurrency is read

Sample = tuple[float, int, int | None]  # (perf_counter at response, status, remaining)


def peer_in_flight(rate: float, mean_answer: float) -> int:
    """The peers' in-flight count: max(16, ceil(2 x rate x mean answer time))."""
    return max(NAIVE_CONCURRENCY, math.ceil(2 * rate * mean_answer))


@dataclass(frozen=True)
class Job:
    """What a contender is told: the server, the handles, and (the peers only) the true
    starting rate and how many requests to keep in flight."""

    url: str
    handles: list[str]
    limit: int  # aiolimiter: AsyncLimiter(limit, window)
    window: float  # limit / the sustainable rate
    in_flight: int = NAIVE_CONCURRENCY
    seed: int = 0


@dataclass
class RunResult:
    elapsed: float
    ok: int
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0  # perf_counter at the start of the job
    note: str = ""
    concurrency: int | None = None  # the client's chosen concurrency, the most seen
    in_flight: int | None = None  # the peers' fixed in-flight count


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _traced_session(samples: list[Sample]) -> aiohttp.ClientSession:
    """A session like the client's own (16 connections) that logs every response."""

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: object,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        response = params.response
        remaining = _int_header(response.headers.get("X-RateLimit-Remaining"))
        samples.append((time.perf_counter(), response.status, remaining))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    connector = aiohttp.TCPConnector(limit=16, limit_per_host=16)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace])


def _concurrency(client: AsyncDumplingClient) -> int | None:
    """``client.rate_limit.concurrency`` where the client has it (None before)."""
    try:
        value = getattr(client.rate_limit, "concurrency", None)
    except Exception:  # the limiter under development may not report yet
        return None
    return value if isinstance(value, int) else None


async def _watch_concurrency(client: AsyncDumplingClient, seen: list[int]) -> None:
    while True:
        value = _concurrency(client)
        if value is not None:
            seen.append(value)
        await asyncio.sleep(_POLL_SECONDS)


async def run_client(url: str, handles: list[str], *, trace: bool = False) -> RunResult:
    """This client at its defaults (with a tracing session only when plotting)."""
    samples: list[Sample] = []
    seen: list[int] = []
    session = _traced_session(samples) if trace else None
    started = time.perf_counter()
    try:
        async with AsyncDumplingClient(API_KEY, base_url=url, session=session) as client:
            watch = asyncio.ensure_future(_watch_concurrency(client, seen))
            try:
                results = await client.gather_profiles(handles)
            finally:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            elapsed = time.perf_counter() - started
            note = _state_note(client)
            last = _concurrency(client)
    finally:
        if session is not None:
            await session.close()
    ok = sum(1 for result in results if result.ok)
    errors = Counter(type(r.error).__name__ for r in results if r.error is not None)
    first = {type(r.error).__name__: str(r.error) for r in reversed(results) if r.error}
    if first:  # what each kind of failure said, once
        said = "; ".join(f"{name}: {text[:200]}" for name, text in sorted(first.items()))
        note = f"{note}; first failures: {said}"
    chosen = max(seen + ([last] if last is not None else []), default=None)
    return RunResult(elapsed, ok, errors, samples, started, note, concurrency=chosen)


def _state_note(client: AsyncDumplingClient) -> str:
    """What the client says it saw and learned (never fails the run)."""
    try:
        state = client.rate_limit
        window = f"{state.window:.3f}s" if state.window is not None else "-"
        return (
            f"client saw {state.rate_limited} 429s, learned window {window}, "
            f"throttled {state.throttled_seconds:.1f}s"
        )
    except Exception as exc:  # the limiter under development may not report yet
        return f"client.rate_limit unavailable: {exc!r}"


async def _post_with_backoff(
    session: aiohttp.ClientSession,
    url: str,
    handle: str,
    rng: random.Random,
    samples: list[Sample],
    limiter: AsyncLimiter | None,
) -> str | None:
    """POST one handle, retrying 429 blindly; None on success, else an error name."""
    body = {"handle": handle}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if limiter is not None:
            await limiter.acquire()
        try:
            async with session.post(url, json=body, headers=headers) as response:
                status = response.status
                remaining = _int_header(response.headers.get("X-RateLimit-Remaining"))
                samples.append((time.perf_counter(), status, remaining))
                data = await response.read()
                if status == 200:
                    orjson.loads(data)
                    return None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__
        if status != 429:
            return f"HTTP {status}"
        if attempt < MAX_ATTEMPTS:
            await asyncio.sleep(BACKOFF_BASE * 2 ** (attempt - 1) * rng.uniform(0.5, 1.5))
    return "HTTP 429 (gave up)"


async def _run_plain(
    url: str, handles: list[str], *, limiter: AsyncLimiter | None, seed: int, in_flight: int
) -> RunResult:
    endpoint = url + PROFILE_PATH
    rng = random.Random(seed)
    samples: list[Sample] = []
    semaphore = asyncio.Semaphore(in_flight)
    connector = aiohttp.TCPConnector(limit=in_flight, limit_per_host=in_flight)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(handle: str) -> str | None:
            async with semaphore:
                return await _post_with_backoff(session, endpoint, handle, rng, samples, limiter)

        outcomes = await asyncio.gather(*(one(handle) for handle in handles))
    elapsed = time.perf_counter() - started
    errors = Counter(outcome for outcome in outcomes if outcome is not None)
    return RunResult(
        elapsed, len(handles) - errors.total(), errors, samples, started, in_flight=in_flight
    )


async def run_naive(
    url: str, handles: list[str], *, seed: int = 0, in_flight: int = NAIVE_CONCURRENCY
) -> RunResult:
    return await _run_plain(url, handles, limiter=None, seed=seed, in_flight=in_flight)


async def run_aiolimiter(
    url: str,
    handles: list[str],
    limit: int,
    window: float,
    *,
    seed: int = 0,
    in_flight: int = NAIVE_CONCURRENCY,
) -> RunResult:
    limiter = AsyncLimiter(limit, window)
    return await _run_plain(url, handles, limiter=limiter, seed=seed, in_flight=in_flight)


Contender = Callable[[Job], Coroutine[Any, Any, RunResult]]
CONTENDERS: dict[str, Contender] = {
    "dumpling_async": lambda job: run_client(job.url, job.handles),
    "naive gather": lambda job: run_naive(
        job.url, job.handles, seed=job.seed, in_flight=job.in_flight
    ),
    "aiolimiter": lambda job: run_aiolimiter(
        job.url, job.handles, job.limit, job.window, seed=job.seed, in_flight=job.in_flight
    ),
}
PEERS = ("naive gather", "aiolimiter")  # they never read headers
