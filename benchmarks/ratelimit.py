"""Bulk jobs against rate-limited servers: this client vs a naive gather vs aiolimiter.

    .venv/bin/python -m benchmarks.ratelimit                   # both quotas, ~25 minutes
    .venv/bin/python -m benchmarks.ratelimit --rate standard   # 40 per 2 s only, ~18 min
    .venv/bin/python -m benchmarks.ratelimit --quick           # under 2 minutes
    .venv/bin/python -m benchmarks.ratelimit --long-window     # + a 60 s window, ~11 min more
    .venv/bin/python -m benchmarks.ratelimit --reset-form ietf # the reset header to try
    .venv/bin/python -m benchmarks.ratelimit --plot            # + docs/ratelimit.png

Servers, each in its own process (``benchmarks._server``), fresh for every run:

* the fake server (``FakeDumplingServer``) with each algorithm: ``fixed``, ``sliding``
  (log), ``sliding_counter``, ``token_bucket``, ``gcra``, and ``halving`` (fixed window
  whose limit halves once half of the job's handles were charged); each once with no
  reset header (``X-RateLimit-Limit`` / ``-Remaining`` and 429 + ``Retry-After`` only,
  as the vendor documents) and once with the reset header of ``--reset-form``
  (``x-seconds`` by default);
* ``limits:fixed``, ``limits:moving``, ``limits:sliding_counter``: an aiohttp app on the
  third-party ``limits`` package (``benchmarks._limits_server``), with its Limit and
  Remaining from ``limits``' window stats and 429 + whole-second ``Retry-After``.

Quotas: ``standard`` is 40 per 2 s (20/s), ``fast`` 40 per 0.5 s (80/s), 600 unique
handles each; ``--quick`` is 200 handles at 40 per 0.5 s; ``--long-window`` adds 120
handles at 30 per 60 s (fixed window, this client with and without reset headers and
both peers; about 11 minutes, not for CI; with 121 requests one 429 is already 0.8 %).
Contenders: ``benchmarks._contenders``. The peers never read headers, so they run once
per algorithm and their rows stand for the reset-header variant too (``vs naive`` of a
reset row uses the naive row of its algorithm).

Efficiency is ideal / elapsed with ideal = (handles - limit) / rate: every server lets a
full quota through at once at the start, and that free first window is not counted.
For ``halving`` the ideal is per phase: (handles charged before the change - limit) /
rate + (the rest) / (rate / 2); the second phase gets no free window, because the fixed
window keeps its count across the change. When lookups failed, ``handles`` is the
number delivered (giving up is not faster). ``best`` is the efficiency of a perfect
client (each request at the first instant the server allows it, no latency), simulated
with the server's own algorithm: about 1.0, but less on a sliding window counter, which
gives the first window's burst and then holds back the rest of that window (best
(N - L) / N when windows start at the first request; the ``limits`` one aligns them to
Unix time, so its best depends on when the job starts), and on ``halving`` when the
change falls mid-window.
The 429 share is of all requests the server saw. Targets: efficiency >= 0.95 and 429s
<= 0.5 % without reset headers, >= 0.97 and <= 0.5 % with one.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dumpling_async.testing import RateLimitRule
from dumpling_async.testing._quota import Algorithm, Window

from ._contenders import CONTENDERS, PEERS, Contender, RunResult
from ._server import ServerProcess, ServerStats

TARGETS = {False: (0.95, 0.005), True: (0.97, 0.005)}  # by "sends a reset header"
RESET_FORMS = ("x-seconds", "x-unix", "ietf", "ietf-structured")
FAKE = ("fixed", "sliding", "sliding_counter", "token_bucket", "gcra", "halving")
LIMITS = ("limits:fixed", "limits:moving", "limits:sliding_counter")
# The fake algorithm each limits strategy runs (to simulate the perfect client).
_LIMITS_AS: dict[str, Algorithm] = {
    "limits:fixed": "fixed",
    "limits:moving": "sliding",
    "limits:sliding_counter": "sliding_counter",
}
DEFAULT_PLOT = "docs/ratelimit.png"


@dataclass(frozen=True)
class Quota:
    name: str
    limit: int
    window: float
    handles: int

    def describe(self) -> str:
        return f"{self.limit}/{self.window:g}s"


QUOTAS = {
    "standard": Quota("standard", 40, 2.0, 600),
    "fast": Quota("fast", 40, 0.5, 600),
    "quick": Quota("quick", 40, 0.5, 200),
    "long": Quota("long", 30, 60.0, 120),
}


@dataclass(frozen=True)
class Scenario:
    server: str  # a name in FAKE or LIMITS
    quota: Quota
    reset: str = "none"  # the fake server's reset_headers

    @property
    def rule(self) -> RateLimitRule:
        algorithm = _LIMITS_AS.get(self.server, self.server)
        if algorithm == "halving":
            algorithm = "fixed"
        return RateLimitRule(self.quota.limit, self.quota.window, algorithm)  # type: ignore[arg-type]

    @property
    def handles(self) -> int:
        return self.quota.handles

    @property
    def halve_after(self) -> int | None:
        return self.handles // 2 if self.server == "halving" else None

    @property
    def backend(self) -> str:
        return "limits-" + self.server.split(":")[1] if self.server in LIMITS else "fake"

    @property
    def targets(self) -> tuple[float, float]:
        return TARGETS[self.reset != "none"]

    def ideal_seconds(self, delivered: int | None = None) -> float:
        """(delivered - limit) / rate, per phase when the limit halves."""
        n = self.handles if delivered is None else delivered
        limit, window = self.quota.limit, self.quota.window
        rate = limit / window
        first = n if self.halve_after is None else min(n, self.halve_after)
        seconds = max(0, first - limit) / rate
        if self.halve_after is not None and n > self.halve_after:
            seconds += (n - self.halve_after) / (max(1, limit // 2) / window)
        return seconds

    def perfect_seconds(self, phase: float = 0.0) -> float:
        """When a perfect client would be done: every request at the first instant the
        server's algorithm allows it, no latency. *phase*: how far into its first window
        the job starts (the limits sliding counter aligns windows to Unix time)."""
        window = Window(self.rule, -phase)
        now = 0.0
        for i in range(self.handles):
            if i == self.halve_after:
                window.set_limit(max(1, self.quota.limit // 2))
            while (wait := window.take(now)) is not None:
                now += wait
        return now


def make_scenarios(quota: Quota, reset_form: str, servers: Sequence[str]) -> list[Scenario]:
    """Each fake algorithm without and with *reset_form*, then the limits servers."""
    scenarios = []
    for server in servers:
        scenarios.append(Scenario(server, quota))
        if server in FAKE:
            scenarios.append(Scenario(server, quota, reset_form))
    return scenarios


def handle_names(count: int) -> list[str]:
    return [f"user{i}" for i in range(count)]


# -- running -------------------------------------------------------------------------------


@dataclass
class Row:
    scenario: Scenario
    contender: str
    result: RunResult
    stats: ServerStats

    @property
    def efficiency(self) -> float:
        return self.scenario.ideal_seconds(self.result.ok) / self.result.elapsed

    @property
    def best(self) -> float:
        phase = 0.0
        if self.scenario.server == "limits:sliding_counter" and self.stats.first_request_wall:
            phase = self.stats.first_request_wall % self.scenario.quota.window
        perfect = self.scenario.perfect_seconds(phase)
        return self.scenario.ideal_seconds() / perfect if perfect > 0 else float("inf")

    @property
    def share_429(self) -> float:
        return self.stats.rate_limited_share

    def meets_targets(self) -> bool:
        efficiency, share = self.scenario.targets
        failed = self.result.ok < self.scenario.handles
        return not failed and self.efficiency >= efficiency and self.share_429 <= share


def run_one(scenario: Scenario, name: str, contender: Contender) -> Row:
    """One contender against a fresh server process."""
    handles = handle_names(scenario.handles)
    options = {"reset_headers": scenario.reset} if scenario.backend == "fake" else {}
    with ServerProcess(
        scenario.rule,
        halve_after_charged=scenario.halve_after,
        options=options,
        backend=scenario.backend,
    ) as server:
        result = asyncio.run(contender(server.url, handles, scenario.rule))
        stats = server.stats()
    return Row(scenario, name, result, stats)


def run_all(scenarios: Sequence[Scenario], contenders: Sequence[str]) -> list[Row]:
    """Every contender on every scenario; the peers skip the reset-header variants (they
    never read headers, so their run would be the same)."""
    rows = []
    for scenario in scenarios:
        for name in contenders:
            if name in PEERS and scenario.reset != "none":
                continue
            shown = f"{scenario.server} {scenario.quota.describe()} reset={scenario.reset}"
            print(f"running {shown} / {name}", file=sys.stderr, flush=True)
            rows.append(run_one(scenario, name, CONTENDERS[name]))
    return rows


# -- reporting -------------------------------------------------------------------------------


def _naive_for(row: Row, rows: Sequence[Row]) -> Row | None:
    for other in rows:
        same = other.scenario.server == row.scenario.server
        if (
            other.contender == "naive gather"
            and same
            and other.scenario.quota == row.scenario.quota
        ):
            return other
    return None


def print_table(rows: Sequence[Row]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Bulk jobs under a rate limit", box=box.SIMPLE)
    for column in ("quota", "server", "reset", "contender"):
        table.add_column(column, no_wrap=True)
    for column in ("elapsed s", "ideal s", "efficiency", "best", "vs naive", "429s %"):
        table.add_column(column, justify="right", no_wrap=True)
    for column in ("requests", "ok", "max paid", "targets"):
        table.add_column(column, justify="right", no_wrap=True)
    previous = None
    for row in rows:
        scenario = row.scenario
        if previous is not None and previous != (scenario.quota, scenario.server):
            table.add_section()
        previous = (scenario.quota, scenario.server)
        peer = _naive_for(row, rows)
        table.add_row(
            f"{scenario.quota.describe()} x{scenario.handles}",
            scenario.server,
            scenario.reset,
            row.contender,
            f"{row.result.elapsed:.2f}",
            f"{scenario.ideal_seconds(row.result.ok):.2f}",
            f"{row.efficiency:.3f}",
            f"{row.best:.3f}",
            f"{peer.result.elapsed / row.result.elapsed:.2f}x" if peer else "-",
            f"{100 * row.share_429:.2f}",
            str(row.stats.requests),
            f"{row.result.ok}/{scenario.handles}",
            str(row.stats.max_charges_per_handle),
            "met" if row.meets_targets() else "missed",
        )
    console = Console(width=200, highlight=False)
    console.print(table)
    console.print(
        "efficiency = ideal / elapsed, ideal = (handles - limit) / rate (the free first "
        "window not counted; per phase for halving; handles = those delivered);\n"
        "best = a perfect client's efficiency on that algorithm; 429s % of all requests "
        "the server saw; vs naive = naive elapsed / this elapsed;\n"
        "targets: efficiency >= 0.95 and 429s <= 0.5 % without a reset header, >= 0.97 and "
        "<= 0.5 % with one, every lookup delivered."
    )
    for row in rows:
        label = f"  {row.scenario.quota.describe()} {row.scenario.server} {row.scenario.reset}"
        if row.result.errors:
            errors = ", ".join(f"{k}: {v}" for k, v in row.result.errors.most_common())
            console.print(f"{label} / {row.contender}: failed lookups: {errors}")
        if row.result.note:
            console.print(f"{label} / {row.contender}: {row.result.note}")


def verdict(rows: Sequence[Row]) -> tuple[bool, str]:
    ours = [row for row in rows if row.contender == "dumpling_async"]
    if not ours:
        return False, "dumpling_async was not run: no verdict."
    misses = []
    for row in ours:
        if row.meets_targets():
            continue
        text = (
            f"{row.scenario.quota.describe()} {row.scenario.server} reset={row.scenario.reset} "
            f"(efficiency {row.efficiency:.3f}, 429s {100 * row.share_429:.2f}%"
        )
        if row.best < row.scenario.targets[0]:
            text += f"; no client can reach the target here, best {row.best:.3f}"
        misses.append(text + ")")
    if misses:
        return False, (
            f"dumpling_async missed the targets on {len(misses)} of {len(ours)} runs: "
            + "; ".join(misses)
        )
    return True, f"dumpling_async met the targets on all {len(ours)} runs."


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="200 handles at 40 per 0.5 s")
    parser.add_argument("--rate", choices=("standard", "fast", "both"), default="both")
    parser.add_argument("--handles", type=int, help="unique handles per run")
    parser.add_argument("--reset-form", choices=RESET_FORMS, default="x-seconds")
    parser.add_argument("--long-window", action="store_true", help="add a 60 s window run")
    parser.add_argument(
        "--scenario", action="append", choices=FAKE + LIMITS, help="only this server (repeatable)"
    )
    parser.add_argument(
        "--contender", action="append", choices=tuple(CONTENDERS), help="repeatable"
    )
    parser.add_argument(
        "--plot",
        nargs="?",
        const=DEFAULT_PLOT,
        metavar="PATH",
        help=f"also plot the first fixed-window scenario (default {DEFAULT_PLOT}; matplotlib)",
    )
    return parser.parse_args(argv)


def _scenarios(args: argparse.Namespace) -> list[Scenario]:
    if args.quick:
        quotas = [QUOTAS["quick"]]
    else:
        quotas = [QUOTAS[n] for n in ("standard", "fast") if args.rate in (n, "both")]
    if args.handles:
        quotas = [Quota(q.name, q.limit, q.window, args.handles) for q in quotas]
    servers = args.scenario or FAKE + LIMITS
    scenarios = [s for q in quotas for s in make_scenarios(q, args.reset_form, servers)]
    if args.long_window:
        scenarios += make_scenarios(QUOTAS["long"], args.reset_form, ["fixed"])
    return scenarios


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    contenders = [k for k in CONTENDERS if not args.contender or k in args.contender]
    started = time.perf_counter()
    scenarios = _scenarios(args)
    rows = run_all(scenarios, contenders)
    print_table(rows)
    _, message = verdict(rows)
    print(message)
    if args.plot:
        from ._plot import plot

        fixed = next((s for s in scenarios if s.server == "fixed"), None)
        if fixed is None:
            print("--plot needs a fixed-window scenario", file=sys.stderr)
        else:
            plot(Path(args.plot), fixed.rule, handle_names(fixed.handles), fixed.ideal_seconds())
    print(f"total benchmark time {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
