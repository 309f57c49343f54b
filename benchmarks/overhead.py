"""Client overhead without a rate limit: this client vs bare aiohttp (and httpx), and
the command line vs the library.

    .venv/bin/python -m benchmarks.overhead             # 3 interleaved runs each, ~3 min
    .venv/bin/python -m benchmarks.overhead --quick     # 1 run each, fewer handles, ~1 min
    .venv/bin/python -m benchmarks.overhead --profile   # + the raw cProfile listing

One unlimited ``FakeDumplingServer`` runs in its own process (``ServerProcess``); every
contender looks up unique handles ``user0 .. user{N-1}`` (unique, since this client
dedupes) and keeps every parsed result. Three tables, all measured in the same run:

asyncio, 16 in flight (N = 20,000; ``--count``):

* ``gather_profiles``: ``AsyncDumplingClient(max_concurrency=16).gather_profiles(handles)``
  (normalises and dedupes handles, structures typed ``TikTokProfile`` models);
* ``iter_profiles``: the same client consumed with ``async for`` (results kept in a list);
* ``bare aiohttp`` (the baseline): 16 worker coroutines pulling handles from a queue, one
  ``ClientSession`` with a 16-connection connector, an orjson-encoded body,
  ``orjson.loads`` of the response;
* ``naive gather``: ``asyncio.gather`` of one task per handle (N tasks) over the same
  session, each behind a shared ``asyncio.Semaphore(16)``;
* ``httpx``: the 16 workers on ``httpx.AsyncClient(limits=Limits(max_connections=16))``, on
  4,000 handles (``--httpx-count``): httpcore's pool rescans every connection for every
  queued request (encode/httpx#3215), ~10x aiohttp's CPU per request. Per-request
  figures do not depend on the count.

asyncio, sequential (4,000 handles; ``--sequential-count``): one coroutine awaiting
``client.get_tiktok_profile(handle)`` for each handle in turn, against the baseline of one
coroutine awaiting a bare aiohttp POST + ``orjson.loads`` for each in turn.

uvloop, 16 in flight (when uvloop is importable): ``gather_profiles`` and bare aiohttp
again, both on ``asyncio.Runner(loop_factory=uvloop.new_event_loop)``. The library never
installs a loop policy; this benchmark makes each loop explicitly.

Measured per run, in this (client) process only: wall time -> requests/s, and
``time.process_time()`` (user + system CPU of this process) -> CPU us per request (and
the part of it outside the event loop's thread). A warm-up runs every contender once on
a few handles and fills the server's per-handle body cache with all N handles, so no
measured run pays the server's first-time cost. Runs are interleaved in rotating order,
the median run of each contender is reported, with ratios against the baseline of the
same table and the same run.

Then, unless ``--no-breakdown``: where a lookup's CPU goes. One more ``gather_profiles``
run (and one bare aiohttp run) of 5,000 handles under cProfile on the thread CPU clock;
every function's own time grouped by where it lives (aiohttp, event loop, parse,
structure, limiter, budget, bulk engine, pipeline+transport, other), each group's share
times the unprofiled CPU per lookup of the table above (``benchmarks._overhead_breakdown``).

Then, unless ``--no-cli``: the command line's overhead. ``dumpling-async profiles INPUT -o
OUT.jsonl --base-url URL --concurrency 16 -q`` as a subprocess on N handles (5,000 with
``--quick``; ``--cli-count``), its whole wall time against ``iter_profiles`` on the same
handles in this process, once with ``DUMPLINGAI_EVENT_LOOP=asyncio`` and once at the
command line's default loop (uvloop when installed), each against the library on the
same loop (``benchmarks._overhead_cli``).

Targets (printed met / NOT met): ``gather_profiles`` and ``iter_profiles`` CPU per lookup
<= 1.25x bare aiohttp and throughput >= 0.8x (asyncio; the uvloop pair is judged the same
way); the sequential ``get_tiktok_profile`` CPU per lookup <= 1.25x the sequential bare
aiohttp; the command line's throughput >= 0.85x ``iter_profiles`` on each loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import pstats
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ._overhead_breakdown import Breakdown, profile
from ._overhead_cli import CliRun, measure_cli
from ._overhead_contenders import (
    Contender,
    Measurement,
    has_uvloop,
    measure,
    run_aiohttp,
    run_aiohttp_sequential,
    run_client,
    run_client_hooks,
    run_client_iter,
    run_client_sequential,
    run_httpx,
    run_naive_gather,
)
from ._overhead_report import (
    Table,
    Target,
    median_run,
    print_breakdown,
    print_cli,
    print_notes,
    print_table,
)
from ._server import ServerProcess


@dataclass(frozen=True)
class Entry:
    """One contender as run here: on which loop, on how many handles."""

    label: str
    run: Contender
    loop: str = "asyncio"
    size: str = "count"  # which count: "count", "httpx" or "sequential"


ENTRIES: dict[str, Entry] = {
    "gather": Entry("dumpling_async gather_profiles", run_client),
    "iter": Entry("dumpling_async iter_profiles (async for)", run_client_iter),
    "hooks": Entry("dumpling_async gather_profiles, hooks on every event", run_client_hooks),
    "aiohttp": Entry("bare aiohttp (16 workers)", run_aiohttp),
    "naive": Entry("naive gather: aiohttp tasks + Semaphore(16)", run_naive_gather),
    "httpx": Entry("httpx (16 workers)", run_httpx, size="httpx"),
    "get": Entry(
        "dumpling_async get_tiktok_profile loop", run_client_sequential, size="sequential"
    ),
    "aiohttp-seq": Entry(
        "bare aiohttp POST + orjson.loads loop", run_aiohttp_sequential, size="sequential"
    ),
    "uvloop-gather": Entry("dumpling_async gather_profiles", run_client, loop="uvloop"),
    "uvloop-aiohttp": Entry("bare aiohttp (16 workers)", run_aiohttp, loop="uvloop"),
}
TABLES = (
    Table(
        "asyncio: unique lookups, 16 in flight, no rate limit",
        "aiohttp",
        ("gather", "iter", "hooks", "aiohttp", "naive", "httpx"),
        (Target("gather"), Target("iter")),
    ),
    Table(
        "asyncio: sequential, one lookup awaited at a time",
        "aiohttp-seq",
        ("get", "aiohttp-seq"),
        (Target("get", rate=None),),
    ),
    Table(
        "uvloop: unique lookups, 16 in flight, no rate limit",
        "uvloop-aiohttp",
        ("uvloop-gather", "uvloop-aiohttp"),
        (Target("uvloop-gather"),),
    ),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="one measured run per contender, fewer handles")
    add("-n", "--count", type=int, default=20_000, help="unique handles per run")
    add("--httpx-count", type=int, help="handles per httpx run (4000; 2000 with --quick)")
    add(
        "--sequential-count",
        type=int,
        help="handles per sequential run (4000; 2000 with --quick)",
    )
    add("--cli-count", type=int, help="handles for the command line (N; 5000 with --quick)")
    add("--breakdown-count", type=int, default=5_000, help="handles per profiled run")
    add("--repeats", type=int, help="measured runs per contender (default 3; 1 with --quick)")
    add("--warmup", type=int, default=1_000, help="handles per warm-up run")
    add("--contender", action="append", choices=tuple(ENTRIES), help="repeatable")
    add("--no-uvloop", action="store_true", help="skip the uvloop table")
    add("--no-breakdown", action="store_true", help="skip the profiled CPU breakdown")
    add("--no-cli", action="store_true", help="skip the command-line runs")
    add(
        "--profile",
        nargs="?",
        type=int,
        const=25,
        metavar="TOP",
        help="also print the TOP functions of the client's profiled run (default 25)",
    )
    return parser.parse_args(argv)


def _sizes(args: argparse.Namespace) -> dict[str, int]:
    quick = args.quick
    return {
        "count": args.count,
        "httpx": min(args.count, args.httpx_count or (2_000 if quick else 4_000)),
        "sequential": min(args.count, args.sequential_count or (2_000 if quick else 4_000)),
        "cli": min(args.count, args.cli_count or (5_000 if quick else args.count)),
        "breakdown": min(args.count, args.breakdown_count),
    }


def _selected(args: argparse.Namespace) -> list[str]:
    keys = [key for key in ENTRIES if not args.contender or key in args.contender]
    if args.no_uvloop or not has_uvloop():
        keys = [key for key in keys if ENTRIES[key].loop != "uvloop"]
    return keys


def measure_rounds(
    server: ServerProcess, keys: list[str], handles: list[str], sizes: dict[str, int], repeats: int
) -> dict[str, list[Measurement]]:
    """*repeats* rounds of every contender, each round in a rotated order."""
    runs: dict[str, list[Measurement]] = {key: [] for key in keys}
    for round_ in range(repeats):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            entry = ENTRIES[key]
            result = measure(server, entry.run, handles[: sizes[entry.size]], entry.loop)
            runs[key].append(result)
            print(
                f"run {round_ + 1}/{repeats} {key}: {result.requests} in {result.wall:.2f}s, "
                f"{result.cpu_us_per_request:.0f} us CPU/request",
                file=sys.stderr,
            )
    return runs


def _profiled(
    server: ServerProcess, contender: Contender, handles: list[str]
) -> tuple[Breakdown, pstats.Stats]:
    """One asyncio run of *contender* under cProfile: (breakdown, stats)."""
    server.reset()
    gc.collect()
    return profile(lambda: asyncio.run(contender(server.url, handles)), len(handles))


def run_breakdown(
    server: ServerProcess,
    handles: list[str],
    runs: dict[str, list[Measurement]],
    top: int | None,
) -> None:
    if not runs.get("gather"):
        print("breakdown: skipped (needs the gather_profiles contender)")
        return
    print(f"profiling gather_profiles on {len(handles)} handles", file=sys.stderr)
    client, stats = _profiled(server, run_client, handles)
    base = base_run = None
    if runs.get("aiohttp"):
        base, _ = _profiled(server, run_aiohttp, handles)
        base_run = median_run(runs["aiohttp"])
    print_breakdown(client, median_run(runs["gather"]), base, base_run)
    if top:
        print(f"\ncProfile of gather_profiles on {len(handles)} handles (thread CPU clock):")
        stats.stream = sys.stdout  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)


def run_cli(server: ServerProcess, handles: list[str]) -> list[CliRun]:
    results = []
    for loop in ("asyncio", None):
        print(f"command line on {loop or 'its default loop'}: {len(handles)}", file=sys.stderr)
        results.append(measure_cli(server, handles, loop))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    keys, sizes = _selected(args), _sizes(args)
    handles = [f"user{i}" for i in range(args.count)]
    started = time.perf_counter()
    with ServerProcess(None) as server:
        print("warm-up (and filling the server's body cache)", file=sys.stderr)
        for key in keys:
            measure(server, ENTRIES[key].run, handles[: args.warmup], ENTRIES[key].loop)
        measure(server, run_aiohttp, handles)
        runs = measure_rounds(server, keys, handles, sizes, repeats)
        labels = {key: entry.label for key, entry in ENTRIES.items()}
        for table in TABLES:
            print_table(table, labels, runs)
        print_notes("httpx" in runs and importlib.util.find_spec("sniffio") is None)
        if not args.no_breakdown or args.profile:
            run_breakdown(server, handles[: sizes["breakdown"]], runs, args.profile)
        if not args.no_cli:
            print_cli(run_cli(server, handles[: sizes["cli"]]))
    print(f"total benchmark time {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
