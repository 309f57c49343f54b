"""The contenders of ``benchmarks.overhead``: one job each, against a server URL.

Each looks up the given handles once, keeps every parsed result, and returns a
``Measurement`` of its own wall time, ``time.process_time()`` (user + system CPU of this
process, all threads) and ``time.thread_time()`` (the event loop's thread only), all
taken inside the event loop from before the client or session is made until it is
closed. ``measure`` runs one in a fresh event loop (asyncio's or uvloop's) and checks
the server saw every handle charged once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson

from dumpling_async import AsyncDumplingClient, ClientHooks

from ._server import ServerProcess

__all__ = [
    "API_KEY",
    "CONCURRENCY",
    "Contender",
    "Measurement",
    "has_uvloop",
    "measure",
    "run_aiohttp",
    "run_aiohttp_sequential",
    "run_client",
    "run_client_iter",
    "run_client_sequential",
    "run_httpx",
    "run_naive_gather",
]

API_KEY = "bench-key"
PROFILE_PATH = "/api/v1/get-tiktok-profile"
CONCURRENCY = 16
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Measurement:
    requests: int
    ok: int
    wall: float
    cpu: float  # the whole process
    thread_cpu: float  # the event loop's thread alone
    server_cpu: float | None = None  # the server process's CPU during the run

    @property
    def throughput(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu / self.requests

    @property
    def thread_us_per_request(self) -> float:
        """CPU spent outside the event loop's thread (executor threads), per request."""
        return 1e6 * max(0.0, self.cpu - self.thread_cpu) / self.requests

    @property
    def server_us_per_request(self) -> float | None:
        return None if self.server_cpu is None else 1e6 * self.server_cpu / self.requests


Contender = Callable[[str, list[str]], Coroutine[Any, Any, Measurement]]


class _Clock:
    """Wall and CPU time since it was made."""

    def __init__(self) -> None:
        self.thread, self.cpu = time.thread_time(), time.process_time()
        self.wall = time.perf_counter()

    def measurement(self, requests: int, ok: int) -> Measurement:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return Measurement(requests, ok, wall, cpu, time.thread_time() - self.thread)


def _client(url: str) -> AsyncDumplingClient:
    return AsyncDumplingClient(API_KEY, base_url=url, max_concurrency=CONCURRENCY)


# -- this client -----------------------------------------------------------------------------


async def run_client(url: str, handles: list[str]) -> Measurement:
    """``gather_profiles(handles)``: typed results in input order."""
    clock = _Clock()
    async with _client(url) as client:
        results = await client.gather_profiles(handles)
    return clock.measurement(len(handles), sum(1 for r in results if r.ok))


class _CountingHooks(ClientHooks):
    """Hooks that do what a metrics hook does (count), on every event."""

    def __init__(self) -> None:
        self.events = 0

    def _count(self, event: object) -> None:
        self.events += 1

    on_request = on_response = on_retry = on_throttle = on_pause = on_credits = _count


async def run_client_hooks(url: str, handles: list[str]) -> Measurement:
    """``gather_profiles(handles)`` with hooks on every event (what hooks cost when used;
    unused, the plain ``gather_profiles`` row is what they cost)."""
    clock = _Clock()
    hooks = _CountingHooks()
    client = AsyncDumplingClient(API_KEY, base_url=url, max_concurrency=CONCURRENCY, hooks=hooks)
    async with client:
        results = await client.gather_profiles(handles)
    assert hooks.events >= 3 * len(handles)  # request, response, credits
    return clock.measurement(len(handles), sum(1 for r in results if r.ok))


async def run_client_iter(url: str, handles: list[str]) -> Measurement:
    """``async for result in iter_profiles(handles)``, keeping every result."""
    clock = _Clock()
    results = []
    async with _client(url) as client:
        async for result in client.iter_profiles(handles):
            results.append(result)
    return clock.measurement(len(handles), sum(1 for r in results if r.ok))


async def run_client_sequential(url: str, handles: list[str]) -> Measurement:
    """One coroutine awaiting ``get_tiktok_profile(handle)`` for each handle in turn."""
    clock = _Clock()
    profiles = []
    async with _client(url) as client:
        for handle in handles:
            profiles.append(await client.get_tiktok_profile(handle))
    return clock.measurement(len(handles), len(profiles))


# -- bare aiohttp ----------------------------------------------------------------------------


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))


async def run_aiohttp(url: str, handles: list[str]) -> Measurement:
    """16 worker coroutines pulling handles from a queue; POST, read, ``orjson.loads``."""
    clock = _Clock()
    endpoint = url + PROFILE_PATH
    queue: asyncio.Queue[str] = asyncio.Queue()
    for handle in handles:
        queue.put_nowait(handle)
    results: list[Any] = []
    async with _session() as session:

        async def worker() -> None:
            while not queue.empty():
                handle = queue.get_nowait()
                body = orjson.dumps({"handle": handle})
                async with session.post(endpoint, data=body, headers=HEADERS) as response:
                    data = await response.read()
                    if response.status == 200:
                        results.append(orjson.loads(data))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return clock.measurement(len(handles), len(results))


async def run_naive_gather(url: str, handles: list[str]) -> Measurement:
    """``asyncio.gather`` of one task per handle, each behind a ``Semaphore(16)``."""
    clock = _Clock()
    endpoint = url + PROFILE_PATH
    semaphore = asyncio.Semaphore(CONCURRENCY)
    async with _session() as session:

        async def one(handle: str) -> Any:
            async with semaphore:
                body = orjson.dumps({"handle": handle})
                async with session.post(endpoint, data=body, headers=HEADERS) as response:
                    data = await response.read()
                    return orjson.loads(data) if response.status == 200 else None

        results = await asyncio.gather(*(one(handle) for handle in handles))
    return clock.measurement(len(handles), sum(1 for r in results if r is not None))


async def run_aiohttp_sequential(url: str, handles: list[str]) -> Measurement:
    """One coroutine: POST, read, ``orjson.loads`` for each handle in turn."""
    clock = _Clock()
    endpoint = url + PROFILE_PATH
    results: list[Any] = []
    async with _session() as session:
        for handle in handles:
            body = orjson.dumps({"handle": handle})
            async with session.post(endpoint, data=body, headers=HEADERS) as response:
                data = await response.read()
                if response.status == 200:
                    results.append(orjson.loads(data))
    return clock.measurement(len(handles), len(results))


# -- httpx -----------------------------------------------------------------------------------


async def run_httpx(url: str, handles: list[str]) -> Measurement:
    """16 workers as for bare aiohttp, on ``httpx.AsyncClient`` (16 connections)."""
    clock = _Clock()
    endpoint = url + PROFILE_PATH
    queue: asyncio.Queue[str] = asyncio.Queue()
    for handle in handles:
        queue.put_nowait(handle)
    results: list[Any] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    # trust_env=False: never pick up a proxy from the environment; traffic stays local.
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def worker() -> None:
            while not queue.empty():
                handle = queue.get_nowait()
                body = orjson.dumps({"handle": handle})
                response = await client.post(endpoint, content=body, headers=HEADERS)
                if response.status_code == 200:
                    results.append(orjson.loads(response.content))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return clock.measurement(len(handles), len(results))


# -- running one -----------------------------------------------------------------------------


def has_uvloop() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``"asyncio"`` -> None (asyncio's default loop), ``"uvloop"`` -> uvloop's."""
    if loop == "asyncio":
        return None
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    raise ValueError(f"unknown loop {loop!r}")


def _server_cpu(server: ServerProcess) -> float | None:
    """User + system CPU seconds of the server process so far (None without psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    if server.pid is None:
        return None
    times = psutil.Process(server.pid).cpu_times()
    return float(times.user + times.system)


def check_server(server: ServerProcess, handles: int, ok: int) -> None:
    """Raise unless all *handles* were answered and each charged once by the server."""
    stats = server.stats()
    if ok != handles or stats.unique_charged != handles:
        raise RuntimeError(
            f"run incomplete: {ok} ok, server charged {stats.unique_charged} "
            f"of {handles} (statuses {stats.statuses})"
        )


def measure(
    server: ServerProcess, contender: Contender, handles: list[str], loop: str = "asyncio"
) -> Measurement:
    """One run in a fresh event loop, after a full collection; checks the server's view."""
    server.reset()
    gc.collect()
    before = _server_cpu(server)
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        result = runner.run(contender(server.url, handles))
    after = _server_cpu(server)
    check_server(server, len(handles), result.ok)
    if before is not None and after is not None:
        result = dataclasses.replace(result, server_cpu=after - before)
    return result
