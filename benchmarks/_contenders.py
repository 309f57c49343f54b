"""The contenders of ``benchmarks.ratelimit``: one bulk job each, against a server URL.

* ``dumpling_async``: this client at its defaults, ``gather_profiles(handles)``, told
  nothing about the limit or the window;
* ``naive gather``: ``asyncio.gather`` + ``Semaphore(16)`` + plain aiohttp, retrying a
  429 with exponential backoff (0.05 s doubling, x0.5-1.5 jitter, 8 attempts) and
  ignoring every header;
* ``aiolimiter``: the same, behind ``AsyncLimiter(limit, window)``: the true starting
  rate, known in advance (which a real client rarely knows), but static.

The two peers never read a header, so what a server says about its quota cannot change
their runs.
"""

from __future__ import annotations

import asyncio
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
from dumpling_async.testing import RateLimitRule

__all__ = ["CONTENDERS", "PEERS", "Contender", "RunResult", "Sample", "run_client", "run_naive"]

API_KEY = "bench-key"
PROFILE_PATH = "/api/v1/get-tiktok-profile"
NAIVE_CONCURRENCY = 16
BACKOFF_BASE, MAX_ATTEMPTS = 0.05, 8

Sample = tuple[float, int, int | None]  # (perf_counter at response, status, remaining)


@dataclass
class RunResult:
    elapsed: float
    ok: int
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0  # perf_counter at the start of the job
    note: str = ""


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


async def run_client(url: str, handles: list[str], *, trace: bool = False) -> RunResult:
    """This client at its defaults (with a tracing session only when plotting)."""
    samples: list[Sample] = []
    session = _traced_session(samples) if trace else None
    started = time.perf_counter()
    try:
        async with AsyncDumplingClient(API_KEY, base_url=url, session=session) as client:
            results = await client.gather_profiles(handles)
            elapsed = time.perf_counter() - started
            note = _state_note(client)
    finally:
        if session is not None:
            await session.close()
    ok = sum(1 for result in results if result.ok)
    errors = Counter(type(r.error).__name__ for r in results if r.error is not None)
    return RunResult(elapsed, ok, errors, samples, started, note)


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
    url: str, handles: list[str], *, limiter: AsyncLimiter | None, seed: int
) -> RunResult:
    endpoint = url + PROFILE_PATH
    rng = random.Random(seed)
    samples: list[Sample] = []
    semaphore = asyncio.Semaphore(NAIVE_CONCURRENCY)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:

        async def one(handle: str) -> str | None:
            async with semaphore:
                return await _post_with_backoff(session, endpoint, handle, rng, samples, limiter)

        outcomes = await asyncio.gather(*(one(handle) for handle in handles))
    elapsed = time.perf_counter() - started
    errors = Counter(outcome for outcome in outcomes if outcome is not None)
    return RunResult(elapsed, len(handles) - errors.total(), errors, samples, started)


async def run_naive(url: str, handles: list[str], *, seed: int = 0) -> RunResult:
    return await _run_plain(url, handles, limiter=None, seed=seed)


async def run_aiolimiter(
    url: str, handles: list[str], rule: RateLimitRule, *, seed: int = 0
) -> RunResult:
    limiter = AsyncLimiter(rule.limit, rule.window)
    return await _run_plain(url, handles, limiter=limiter, seed=seed)


# (server URL, handles, the server's starting rule) -> the run
Contender = Callable[[str, list[str], RateLimitRule], Coroutine[Any, Any, RunResult]]
CONTENDERS: dict[str, Contender] = {
    "dumpling_async": lambda url, handles, rule: run_client(url, handles),
    "naive gather": lambda url, handles, rule: run_naive(url, handles),
    "aiolimiter": lambda url, handles, rule: run_aiolimiter(url, handles, rule),
}
PEERS = ("naive gather", "aiolimiter")  # they never read headers
