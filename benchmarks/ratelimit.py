"""Bulk jobs against a rate-limited server: this client vs a naive gather vs aiolimiter.

    .venv/bin/python -m benchmarks.ratelimit            # ~2.5 minutes
    .venv/bin/python -m benchmarks.ratelimit --quick    # ~1 minute
    .venv/bin/python -m benchmarks.ratelimit --plot     # also writes docs/ratelimit.png

Every run gets a fresh ``FakeDumplingServer`` in its own process (``benchmarks._server``)
with ``RateLimitRule(limit=40, window=0.5)`` (80 requests/s) by algorithm ``fixed``,
``sliding`` or ``token_bucket``; scenario ``halving`` is the fixed window whose limit
drops to 20 once half of the job's handles were charged. Contenders:

* ``dumpling_async``: this client at its defaults, ``gather_profiles(handles)``;
* ``naive gather``: ``asyncio.gather`` + ``Semaphore(16)`` + plain aiohttp, retrying a
  429 with exponential backoff (0.05 s doubling, x0.5-1.5 jitter, 8 attempts) and
  ignoring every header;
* ``aiolimiter``: the same, behind ``AsyncLimiter(40, 0.5)``: the true starting rate,
  known in advance (which a real client rarely knows), but static.

Efficiency is ideal elapsed / actual, ideal = handles / true rate (summed over the two
phases for ``halving``). A fixed window, a sliding window and a full token bucket all
grant one extra burst of ``limit`` at the start, so a perfect client can slightly
exceed 1.0 (at most by one window: 0.5 s over a 7.5 s job).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiolimiter import AsyncLimiter

from dumpling_async import AsyncDumplingClient
from dumpling_async.testing import RateLimitRule

from ._server import ServerProcess, ServerStats

API_KEY = "bench-key"
PROFILE_PATH = "/api/v1/get-tiktok-profile"
LIMIT, WINDOW = 40, 0.5
NAIVE_CONCURRENCY = 16
BACKOFF_BASE, MAX_ATTEMPTS = 0.05, 8
TARGET_EFFICIENCY, TARGET_429_SHARE = 0.90, 0.01
DEFAULT_PLOT = "docs/ratelimit.png"

Sample = tuple[float, int, int | None]  # (perf_counter at response, status, remaining)


# -- scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    rule: RateLimitRule
    handles: int
    halve_after_charged: int | None = None  # halving: the limit halves at this many charged

    @property
    def rate(self) -> float:
        return self.rule.limit / self.rule.window

    def ideal_seconds(self) -> float:
        """Handles / true rate, per phase when the limit halves."""
        if self.halve_after_charged is None:
            return self.handles / self.rate
        first = self.halve_after_charged
        second_rate = max(1, self.rule.limit // 2) / self.rule.window
        return first / self.rate + (self.handles - first) / second_rate

    def bound_seconds(self) -> float:
        """The tight lower bound: all three algorithms grant the first ``limit`` requests
        at once (a full window or bucket), so a perfect client finishes one window early."""
        return max(0.0, self.ideal_seconds() - self.rule.window)

    def describe(self) -> str:
        rule = self.rule
        text = f"{rule.algorithm} {rule.limit}/{rule.window:g}s, {self.handles} handles"
        if self.halve_after_charged is not None:
            text += f", limit -> {rule.limit // 2} after {self.halve_after_charged}"
        return text


def make_scenarios(windows: int) -> list[Scenario]:
    """``windows`` windows' worth of handles per algorithm; halving: 2/3 of that per
    phase, i.e. ``windows * 2/3`` full-rate windows then ``windows * 4/3`` halved ones."""
    size = windows * LIMIT
    half = max(LIMIT, round(size * 2 / 3))
    scenarios = [
        Scenario(algorithm, RateLimitRule(LIMIT, WINDOW, algorithm), size)
        for algorithm in ("fixed", "sliding", "token_bucket")
    ]
    scenarios.append(
        Scenario("halving", RateLimitRule(LIMIT, WINDOW, "fixed"), 2 * half, half),
    )
    return scenarios


def handle_names(count: int) -> list[str]:
    return [f"user{i}" for i in range(count)]


# -- contenders ----------------------------------------------------------------------------


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
            state = client.rate_limit
    finally:
        if session is not None:
            await session.close()
    elapsed = time.perf_counter() - started
    ok = sum(1 for result in results if result.ok)
    errors = Counter(type(r.error).__name__ for r in results if r.error is not None)
    window = f"{state.window:.3f}s" if state.window is not None else "-"
    note = (
        f"client saw {state.rate_limited} 429s, learned window {window}, "
        f"throttled {state.throttled_seconds:.1f}s"
    )
    return RunResult(elapsed, ok, errors, samples, started, note)


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


async def run_aiolimiter(url: str, handles: list[str], *, seed: int = 0) -> RunResult:
    return await _run_plain(url, handles, limiter=AsyncLimiter(LIMIT, WINDOW), seed=seed)


Contender = Callable[[str, list[str]], Coroutine[Any, Any, RunResult]]
CONTENDERS: dict[str, Contender] = {
    "dumpling_async": lambda url, handles: run_client(url, handles),
    "naive gather": lambda url, handles: run_naive(url, handles),
    "aiolimiter": lambda url, handles: run_aiolimiter(url, handles),
}


# -- running -------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: Scenario
    contender: str
    result: RunResult
    stats: ServerStats

    @property
    def efficiency(self) -> float:
        return self.scenario.ideal_seconds() / self.result.elapsed

    @property
    def efficiency_vs_bound(self) -> float:
        return self.scenario.bound_seconds() / self.result.elapsed

    @property
    def share_429(self) -> float:
        return self.stats.rate_limited_share

    @property
    def credits_ratio(self) -> float:
        return self.stats.credits_charged / (self.scenario.handles * 10)

    def meets_targets(self) -> bool:
        return self.efficiency >= TARGET_EFFICIENCY and self.share_429 <= TARGET_429_SHARE


def run_one(scenario: Scenario, name: str, contender: Contender) -> Row:
    """One contender against a fresh server process."""
    handles = handle_names(scenario.handles)
    with ServerProcess(scenario.rule, halve_after_charged=scenario.halve_after_charged) as server:
        result = asyncio.run(contender(server.url, handles))
        stats = server.stats()
    return Row(scenario, name, result, stats)


def print_table(rows: Sequence[Row]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Bulk jobs under a rate limit ({LIMIT} per {WINDOW:g}s = {LIMIT / WINDOW:g}/s)",
        box=box.SIMPLE,
    )
    table.add_column("scenario", no_wrap=True)
    table.add_column("contender", no_wrap=True)
    for column in (
        "elapsed s",
        "ideal s",
        "efficiency",
        "eff/bound",
        "vs naive",
        "429s %",
        "requests",
        "ok",
        "credits ratio",
        "max paid",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    naive = {row.scenario.name: row for row in rows if row.contender == "naive gather"}
    previous = None
    for row in rows:
        if previous is not None and previous != row.scenario.name:
            table.add_section()
        previous = row.scenario.name
        peer = naive.get(row.scenario.name)
        speedup = f"{peer.result.elapsed / row.result.elapsed:.2f}x" if peer else "-"
        table.add_row(
            row.scenario.name,
            row.contender,
            f"{row.result.elapsed:.2f}",
            f"{row.scenario.ideal_seconds():.2f}",
            f"{row.efficiency:.3f}",
            f"{row.efficiency_vs_bound:.3f}",
            speedup,
            f"{100 * row.share_429:.1f}",
            str(row.stats.requests),
            f"{row.result.ok}/{row.scenario.handles}",
            f"{row.credits_ratio:.3f}",
            str(row.stats.max_charges_per_handle),
        )
    console = Console(width=200, highlight=False)
    console.print(table)
    console.print(
        "efficiency = ideal / elapsed (ideal = handles / true rate, per phase for halving); "
        "429s % of requests the server saw;\n"
        "eff/bound = (ideal - one window) / elapsed: the first window's burst is free, "
        "so efficiency can exceed 1;\ncredits ratio = credits charged / (unique handles x 10); "
        "max paid = most charges for one handle; vs naive = naive elapsed / this elapsed."
    )
    for row in rows:
        if row.result.errors:
            errors = ", ".join(f"{k}: {v}" for k, v in row.result.errors.most_common())
            console.print(f"  {row.scenario.name} / {row.contender}: failed lookups: {errors}")
        if row.result.note:
            console.print(f"  {row.scenario.name} / {row.contender}: {row.result.note}")


def verdict(rows: Sequence[Row]) -> tuple[bool, str]:
    ours = [row for row in rows if row.contender == "dumpling_async"]
    misses = [
        f"{row.scenario.name} (efficiency {row.efficiency:.3f}, 429s {100 * row.share_429:.1f}%)"
        for row in ours
        if not row.meets_targets()
    ]
    target = (
        f"efficiency >= {TARGET_EFFICIENCY:.2f} and 429s <= {100 * TARGET_429_SHARE:g}% "
        f"on every scenario ({len(ours)} scenarios run)"
    )
    if not ours:
        return False, "dumpling_async was not run: no verdict."
    if misses:
        return False, f"dumpling_async did NOT meet the targets ({target}); missed: " + "; ".join(
            misses
        )
    return True, f"dumpling_async met the targets: {target}."


# -- plot ------------------------------------------------------------------------------------


def plot(path: Path, scenario: Scenario) -> None:
    """Requests/s and remaining quota over time, this client vs the naive gather."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    handles = handle_names(scenario.handles)
    runs: dict[str, RunResult] = {}
    factories: list[tuple[str, Callable[[str], Coroutine[Any, Any, RunResult]]]] = [
        ("dumpling_async", lambda url: run_client(url, handles, trace=True)),
        ("naive gather", lambda url: run_naive(url, handles)),
    ]
    for name, factory in factories:
        with ServerProcess(scenario.rule) as server:
            runs[name] = asyncio.run(factory(server.url))
        print(f"plot run: {name} {runs[name].elapsed:.2f}s", file=sys.stderr)

    bin_width = 0.1
    horizon = max(run.elapsed for run in runs.values())
    bins = int(horizon / bin_width) + 1
    fig, axes = plt.subplots(3, 2, figsize=(13, 9), sharex=True, sharey="row")
    for col, (name, run) in enumerate(runs.items()):
        times = [(t - run.started, status, rem) for t, status, rem in run.samples]
        ok = [0] * bins
        limited = [0] * bins
        for t, status, _ in times:
            index = min(bins - 1, int(t / bin_width))
            if status == 429:
                limited[index] += 1
            else:
                ok[index] += 1
        x = [i * bin_width for i in range(bins)]
        rate_ok = [n / bin_width for n in ok]
        rate_429 = [n / bin_width for n in limited]
        ax = axes[0][col]
        ax.bar(x, rate_ok, width=bin_width, align="edge", label="200", color="tab:green")
        ax.bar(
            x, rate_429, width=bin_width, align="edge", bottom=rate_ok, label="429", color="tab:red"
        )
        ax.axhline(scenario.rate, color="black", linestyle="--", linewidth=1, label="true rate")
        ax.set_title(f"{name}: {run.elapsed:.2f}s, {sum(limited)} x 429 of {len(times)} responses")
        ax.set_ylabel("responses/s (0.1 s bins)")
        ax.legend(loc="upper right")

        ax = axes[1][col]
        points = [(t, rem) for t, _, rem in times if rem is not None]
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=4, color="tab:blue")
        ax.set_ylabel("X-RateLimit-Remaining")
        ax.set_ylim(-2, scenario.rule.limit + 2)

        ax = axes[2][col]
        done = sorted(t for t, status, _ in times if status == 200)
        ax.plot(done, range(1, len(done) + 1), label="profiles received")
        ideal_end = scenario.ideal_seconds()
        ax.plot([0, ideal_end], [0, scenario.handles], "k--", linewidth=1, label="ideal")
        ax.set_ylabel("cumulative profiles")
        ax.set_xlabel("seconds since job start")
        ax.legend(loc="lower right")
    fig.suptitle(f"Fixed window {scenario.rule.limit} per {scenario.rule.window:g}s")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ratelimit", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="6 windows' worth of handles instead of 15"
    )
    parser.add_argument("--windows", type=int, help="windows' worth of handles per scenario")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=("fixed", "sliding", "token_bucket", "halving"),
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--contender", action="append", choices=tuple(CONTENDERS), help="repeatable"
    )
    parser.add_argument(
        "--plot",
        nargs="?",
        const=DEFAULT_PLOT,
        metavar="PATH",
        help=f"also plot the fixed-window scenario (default path {DEFAULT_PLOT})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    windows = args.windows or (6 if args.quick else 15)
    scenarios = [s for s in make_scenarios(windows) if not args.scenario or s.name in args.scenario]
    contenders = {k: v for k, v in CONTENDERS.items() if not args.contender or k in args.contender}
    rows: list[Row] = []
    started = time.perf_counter()
    for scenario in scenarios:
        for name, contender in contenders.items():
            print(f"running {scenario.name} / {name} ({scenario.describe()})", file=sys.stderr)
            rows.append(run_one(scenario, name, contender))
    print_table(rows)
    _, message = verdict(rows)
    print(message)
    if args.plot:
        fixed = next(s for s in make_scenarios(windows) if s.name == "fixed")
        plot(Path(args.plot), fixed)
    print(f"total benchmark time {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
