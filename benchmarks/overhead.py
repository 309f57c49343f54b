"""Client overhead without a rate limit: this client vs bare aiohttp vs httpx.

    .venv/bin/python -m benchmarks.overhead             # 20,000 lookups x 3 runs, ~2 min
    .venv/bin/python -m benchmarks.overhead --quick     # 20,000 lookups x 1 run, ~1 min
    .venv/bin/python -m benchmarks.overhead --profile   # + cProfile of this client's run

One unlimited ``FakeDumplingServer`` runs in its own process; every contender looks up
the same N unique handles ``user0 .. user{N-1}`` (unique, since this client dedupes)
with at most 16 requests in flight and keeps every parsed result:

* ``dumpling_async``: ``AsyncDumplingClient(max_concurrency=16).gather_profiles(handles)``
  (normalises and dedupes handles, structures typed ``TikTokProfile`` models);
* ``bare aiohttp``: 16 worker coroutines pulling handles from a queue (the 16 workers
  are the bound), one ``ClientSession`` with a 16-connection connector, an
  orjson-encoded body, ``orjson.loads`` of the response;
* ``httpx``: the same with ``httpx.AsyncClient(limits=Limits(max_connections=16))``, on
  4,000 handles by default (``--httpx-count``): httpcore's pool rescans every connection
  for every queued request (encode/httpx#3215), ~10x aiohttp's CPU per request, so a
  20,000-handle httpx run alone would take about a minute. Per-request figures do not
  depend on the count.

Measured per run, in this (client) process only: wall time -> requests/s, and
``time.process_time()`` (user + system CPU of this process) -> CPU us per request. A
warm-up runs each contender once on a few handles and fills the server's per-handle body
cache with all N handles, so no measured run pays the server's first-time cost. Runs are
interleaved in rotating order and the median run of each contender is reported.
Targets: CPU per request <= 1.25x bare aiohttp, throughput >= 0.8x bare aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson

from dumpling_async import AsyncDumplingClient

from ._server import ServerProcess

API_KEY = "bench-key"
PROFILE_PATH = "/api/v1/get-tiktok-profile"
CONCURRENCY = 16
TARGET_CPU_RATIO, TARGET_THROUGHPUT_RATIO = 1.25, 0.8
BASELINE = "bare aiohttp"
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Measurement:
    requests: int
    ok: int
    wall: float
    cpu: float
    server_cpu: float | None = None  # the server process's CPU during the run

    @property
    def throughput(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us_per_request(self) -> float:
        return 1e6 * self.cpu / self.requests

    @property
    def server_us_per_request(self) -> float | None:
        return None if self.server_cpu is None else 1e6 * self.server_cpu / self.requests


# -- contenders ----------------------------------------------------------------------------


async def run_client(url: str, handles: list[str]) -> Measurement:
    cpu, wall = time.process_time(), time.perf_counter()
    async with AsyncDumplingClient(API_KEY, base_url=url, max_concurrency=CONCURRENCY) as client:
        results = await client.gather_profiles(handles)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Measurement(len(handles), sum(1 for r in results if r.ok), wall, cpu)


async def run_aiohttp(url: str, handles: list[str]) -> Measurement:
    cpu, wall = time.process_time(), time.perf_counter()
    endpoint = url + PROFILE_PATH
    queue: asyncio.Queue[str] = asyncio.Queue()
    for handle in handles:
        queue.put_nowait(handle)
    results: list[Any] = []
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                handle = queue.get_nowait()
                body = orjson.dumps({"handle": handle})
                async with session.post(endpoint, data=body, headers=HEADERS) as response:
                    data = await response.read()
                    if response.status == 200:
                        results.append(orjson.loads(data))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Measurement(len(handles), len(results), wall, cpu)


async def run_httpx(url: str, handles: list[str]) -> Measurement:
    cpu, wall = time.process_time(), time.perf_counter()
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
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Measurement(len(handles), len(results), wall, cpu)


Contender = Callable[[str, list[str]], Coroutine[Any, Any, Measurement]]
CONTENDERS: dict[str, Contender] = {
    "dumpling_async": run_client,
    BASELINE: run_aiohttp,
    "httpx": run_httpx,
}


# -- running -------------------------------------------------------------------------------


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


def measure(server: ServerProcess, contender: Contender, handles: list[str]) -> Measurement:
    """One run in a fresh event loop, after a full collection; checks the server's view."""
    server.reset()
    gc.collect()
    before = _server_cpu(server)
    result = asyncio.run(contender(server.url, handles))
    after = _server_cpu(server)
    stats = server.stats()
    if result.ok != len(handles) or stats.unique_charged != len(handles):
        raise RuntimeError(
            f"run incomplete: {result.ok} ok, server charged {stats.unique_charged} "
            f"of {len(handles)} (statuses {stats.statuses})"
        )
    if before is not None and after is not None:
        result = dataclasses.replace(result, server_cpu=after - before)
    return result


def profile_client(server: ServerProcess, handles: list[str], top: int) -> None:
    """cProfile this client's run; print where its CPU goes."""
    import cProfile
    import pstats

    server.reset()
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run_client(server.url, handles))
    profiler.disable()
    print(f"\ncProfile of dumpling_async on {len(handles)} handles (inflated by profiling):")
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def _sniffio_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("sniffio") is None


def print_table(runs: dict[str, list[Measurement]], repeats: int) -> bool:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    def median_of(name: str) -> tuple[float, float]:
        measurements = runs[name]
        return (
            statistics.median(m.cpu_us_per_request for m in measurements),
            statistics.median(m.throughput for m in measurements),
        )

    table = Table(
        title=f"Client overhead: unique lookups, {CONCURRENCY} in flight, no rate limit "
        f"(median of {repeats} run{'s' if repeats > 1 else ''})",
        box=box.SIMPLE,
    )
    table.add_column("contender", no_wrap=True)
    for column in (
        "lookups",
        "wall s",
        "req/s",
        "CPU s",
        "CPU us/req",
        "min-max",
        "server us/req",
        f"CPU vs {BASELINE}",
        f"req/s vs {BASELINE}",
    ):
        table.add_column(column, justify="right")
    base_cpu, base_rate = median_of(BASELINE) if BASELINE in runs else (math.nan, math.nan)
    for name, measurements in runs.items():
        cpu_us, rate = median_of(name)
        cpus = [m.cpu_us_per_request for m in measurements]
        servers = [m.server_us_per_request for m in measurements]
        server = [x for x in servers if x is not None]
        table.add_row(
            name,
            f"{measurements[0].requests:,}",
            f"{statistics.median(m.wall for m in measurements):.2f}",
            f"{rate:,.0f}",
            f"{statistics.median(m.cpu for m in measurements):.2f}",
            f"{cpu_us:.0f}",
            f"{min(cpus):.0f}-{max(cpus):.0f}",
            f"{statistics.median(server):.0f}" if server else "-",
            f"{cpu_us / base_cpu:.2f}x",
            f"{rate / base_rate:.2f}x",
        )
    console = Console(width=200, highlight=False)
    console.print(table)
    console.print(
        "CPU = time.process_time() of this (client) process; server us/req = CPU of the "
        "fake server's own process (psutil).\nWhen server us/req is close to wall/request "
        "the single-process server is the throughput ceiling, and CPU/request is the "
        "sharper measure."
    )
    if "httpx" in runs and _sniffio_missing():
        console.print(
            "note: sniffio is not installed; httpcore 1.0.x then retries `import sniffio` "
            "(a failed filesystem search) on every request, which inflates httpx's CPU."
        )
    if "dumpling_async" not in runs or BASELINE not in runs:
        print("targets: not evaluated (needs dumpling_async and bare aiohttp)")
        return False
    cpu_us, rate = median_of("dumpling_async")
    cpu_ratio, rate_ratio = cpu_us / base_cpu, rate / base_rate
    cpu_ok, rate_ok = cpu_ratio <= TARGET_CPU_RATIO, rate_ratio >= TARGET_THROUGHPUT_RATIO
    print(
        f"target CPU/request <= {TARGET_CPU_RATIO}x bare aiohttp: {cpu_ratio:.2f}x -> "
        f"{'met' if cpu_ok else 'NOT met'}"
    )
    print(
        f"target throughput >= {TARGET_THROUGHPUT_RATIO}x bare aiohttp: {rate_ratio:.2f}x -> "
        f"{'met' if rate_ok else 'NOT met'}"
    )
    return cpu_ok and rate_ok


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="one measured run per contender")
    parser.add_argument("-n", "--count", type=int, default=20_000, help="unique handles per run")
    parser.add_argument(
        "--httpx-count",
        type=int,
        default=4_000,
        help="unique handles per httpx run (httpx costs ~10x aiohttp per request; its "
        "per-request numbers do not depend on the count; default 4000)",
    )
    parser.add_argument("--repeats", type=int, help="measured runs per contender (default 3)")
    parser.add_argument("--warmup", type=int, default=1_000, help="handles per warm-up run")
    parser.add_argument(
        "--contender", action="append", choices=tuple(CONTENDERS), help="repeatable"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        type=int,
        const=25,
        metavar="TOP",
        help="also cProfile this client's run and print the TOP functions (default 25)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    names = [name for name in CONTENDERS if not args.contender or name in args.contender]
    handles = [f"user{i}" for i in range(args.count)]
    sizes = {name: args.count for name in names}
    if "httpx" in sizes:
        sizes["httpx"] = min(args.count, args.httpx_count)
    started = time.perf_counter()
    runs: dict[str, list[Measurement]] = {name: [] for name in names}
    with ServerProcess(None) as server:
        print("warm-up (and filling the server's body cache)", file=sys.stderr)
        for name in names:
            measure(server, CONTENDERS[name], handles[: args.warmup])
        measure(server, run_aiohttp, handles)
        for round_ in range(repeats):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                result = measure(server, CONTENDERS[name], handles[: sizes[name]])
                runs[name].append(result)
                print(
                    f"run {round_ + 1}/{repeats} {name}: {result.requests} in "
                    f"{result.wall:.2f}s, {result.cpu_us_per_request:.0f} us CPU/request",
                    file=sys.stderr,
                )
        print_table(runs, repeats)
        if args.profile:
            profile_client(server, handles, args.profile)
    print(f"total benchmark time {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
