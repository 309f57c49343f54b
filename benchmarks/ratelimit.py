"""Bulk jobs against rate-limited servers that answer slowly: this client vs a naive
gather vs aiolimiter.

    .venv/bin/python -m benchmarks.ratelimit                 # the default matrix, see below
    .venv/bin/python -m benchmarks.ratelimit --jobs 8        # the same in about half the time
    .venv/bin/python -m benchmarks.ratelimit --quick         # a small subset, about a minute
    .venv/bin/python -m benchmarks.ratelimit --dry-run       # the cells and a time estimate
    .venv/bin/python -m benchmarks.ratelimit --scenario fixed --latency 1 --runs 1
    .venv/bin/python -m benchmarks.ratelimit --reset-form x-seconds --reset-form ietf
    .venv/bin/python -m benchmarks.ratelimit --long-window   # + 30 per 60 s, ~10 min more
    .venv/bin/python -m benchmarks.ratelimit --json out.json --plot   # + docs/ratelimit-latency.png
    .venv/bin/python -m benchmarks.ratelimit --timeline      # + docs/ratelimit.png (two more runs)

The default matrix is 414 cells, about 4.3 hours of cells: about 65 minutes at
``--jobs 4``, 33 at ``--jobs 8`` (``--dry-run`` prints the estimate; the CPU stays mostly
idle, under 1 CPU second per 30 s cell, and the cells start one at a time).

The vendor counts a request against the quota when it arrives and answers it 0.3-5 s
later; so does every server here: ``AnswerTime(mean, spread=0.5)`` (uniform 0.5-1.5 x
the mean; ``1-tail``: one answer in 20, at random, 10 times slower). Answer times
(``--latency``, repeatable): ``0`` (at once), ``0.3``, ``1``, ``3``, ``1-tail`` or any
seconds. Quota 40 per 2 s (20/s), 600 unique handles, unless said. Scenarios
(``--scenario``, repeatable), each server in its own process (``benchmarks._server``),
fresh for every run:

* ``fixed``, ``sliding`` (log), ``sliding_counter``, ``token_bucket``, ``gcra``: the fake
  server's algorithms at every answer time, each with no reset header (Limit, Remaining,
  429 + Retry-After, as the vendor documents) and with ``x-unix`` (a whole-second Unix
  time, the common middleware form); ``--reset-form`` adds more forms;
* ``upstash``: a sliding window counter aligned to Unix time that, after one denial,
  refuses everything (uncounted) until the reset, and reports the end of the fixed window
  as the reset (``x-unix-ms``), as serverless Redis limiters do;
* ``fixed-aligned``: a fixed window aligned to Unix time, reset ``x-unix``;
* ``bucket-size``: a token bucket of 40 that gets only 10 tokens back per 2 s;
* ``floored-ra``: fixed, with ``Retry-After`` rounded down (0 allowed), no milliseconds;
* ``halving``: fixed, whose limit halves once half the handles were charged (no reset
  header and ``x-unix``);
* ``limits:fixed``, ``limits:moving``, ``limits:sliding_counter``: an aiohttp app on the
  third-party ``limits`` package (``benchmarks._limits_server``), Limit and Remaining from
  its window stats and 429 + whole-second ``Retry-After``.

The extras run at ``0`` and ``1`` s unless ``--latency`` says otherwise. Where windows
are aligned to Unix time (``upstash``, ``fixed-aligned``, ``limits:sliding_counter``) the
runs start at different phases of the window in Unix time (0.1, 0.5, 0.9 of it with 3
runs); with ``x-unix`` otherwise, at those phases of a second (where a whole-second
reset's rounding falls depends on it).
``--quick``: fixed and token_bucket, no reset header, answer times 0 and 1 s, 200 handles
at 40 per 0.5 s. ``--long-window``: 30 per 60 s, fixed, 120 handles, none and ``x-unix``,
at 1 s (with 121 requests one 429 is already 0.8 %).

Contenders (``benchmarks._contenders``): this client at its defaults, a naive gather and
aiolimiter at the true starting rate; the peers get max(16, ceil(2 x rate x mean answer
time)) requests in flight, so that their concurrency never holds them back. They never
read headers, so they run only without a reset header (and not on ``floored-ra``: their
``fixed`` rows stand for it).

Every row runs ``--runs`` times (3; the server's answer-time seed and the peers' backoff
seed differ per run), ``--jobs`` cells at a time (4), each cell in a fresh process:
progress on stderr, then the table: min-max over the runs. Efficiency is (ideal + mean
answer time) / elapsed with ideal = (handles - limit) / rate: every server lets a full
quota through at once, and that free first window is not counted; the last answer
still takes the answer time. For ``halving`` the ideal is per phase: (handles charged
before the change - limit) / rate + (the rest) / (rate / 2). When lookups failed,
``handles`` is the number delivered (giving up is not faster). ``best`` is a perfect
client's: (ideal + mean) / (perfect + mean), perfect = when the last request would go if
each went at the first instant the server's algorithm allows it (simulated with the
server's own algorithm and start phase): about 1.0, less on a sliding window counter,
which gives the first window's burst and then holds back the rest of that window, more
on an aligned fixed window whose first window is short. The 429 share is of all
requests the server saw. Targets: efficiency >= 0.95 (sliding_counter: >= 0.97 x best)
and 429s <= 0.5 % in every run, and no lookup lost to the rate limit.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._contenders import CONTENDERS
from ._ratelimit_matrix import (
    QUOTAS,
    RESET_FORMS,
    SCENARIOS,
    TARGET_429,
    TARGET_EFFICIENCY,
    TARGET_RELATIVE,
    Latency,
    Quota,
    Scenario,
    build_matrix,
    parse_latency,
)
from ._ratelimit_report import group_rows, print_table, verdict, write_json
from ._ratelimit_run import Cell, estimate, handle_names, run_cells

DEFAULT_PLOT = "docs/ratelimit-latency.png"
DEFAULT_TIMELINE = "docs/ratelimit.png"
QUICK_SCENARIOS, QUICK_LATENCIES = ("fixed", "token_bucket"), ("0", "1")


def _latency(text: str) -> Latency:
    try:
        return parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ratelimit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="a small subset at 40 per 0.5 s, 200 handles")
    add("--rate", choices=("standard", "fast"), default="standard", help="40 per 2 or 0.5 s")
    add("--handles", type=int, help="unique handles per run")
    add("--latency", action="append", type=_latency, help="mean answer time (repeatable)")
    add("--scenario", action="append", choices=SCENARIOS, help="repeatable")
    add("--reset-form", action="append", choices=RESET_FORMS[1:], default=[], help="repeatable")
    add("--long-window", action="store_true", help="add 30 per 60 s (fixed, 120 handles)")
    add("--contender", action="append", choices=tuple(CONTENDERS), help="repeatable")
    add("--runs", type=int, default=3, help="runs per row (default 3)")
    add("--jobs", type=int, default=4, help="cells at once (default 4)")
    add("--json", type=Path, metavar="PATH", help="write the raw rows as JSON")
    add("--dry-run", action="store_true", help="list the cells and estimate the time")
    add(
        "--plot",
        nargs="?",
        const=DEFAULT_PLOT,
        metavar="PATH",
        help=f"efficiency vs answer time, fixed window (default {DEFAULT_PLOT}; matplotlib)",
    )
    add(
        "--timeline",
        nargs="?",
        const=DEFAULT_TIMELINE,
        metavar="PATH",
        help=f"requests/s over time, two more runs (default {DEFAULT_TIMELINE}; matplotlib)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.jobs < 1:
        parser.error("--runs and --jobs must be >= 1")
    return args


def scenarios_of(args: argparse.Namespace) -> list[Scenario]:
    quota = QUOTAS["quick" if args.quick else args.rate]
    if args.handles:
        quota = Quota(quota.name, quota.limit, quota.window, args.handles)
    latencies = args.latency
    if args.quick:
        names = args.scenario or list(QUICK_SCENARIOS)
        latencies = latencies or [parse_latency(k) for k in QUICK_LATENCIES]
        return build_matrix(names, quota, latencies, args.reset_form, base_resets=("none",))
    names = args.scenario or list(SCENARIOS)
    return build_matrix(names, quota, latencies, args.reset_form, long_window=args.long_window)


def cells_of(scenarios: Sequence[Scenario], contenders: Sequence[str], runs: int) -> list[Cell]:
    """Every contender on every scenario, *runs* times; the peers only where they run."""
    cells = []
    for scenario in scenarios:
        for name in contenders:
            if name != "dumpling_async" and not scenario.runs_peers:
                continue
            cells += [Cell(scenario, name, run, runs) for run in range(runs)]
    return cells


def _clock(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    contenders = [k for k in CONTENDERS if not args.contender or k in args.contender]
    scenarios = scenarios_of(args)
    cells = cells_of(scenarios, contenders, args.runs)
    expected = [cell.scenario.expected_seconds() for cell in cells]
    guess, busy = estimate(expected, args.jobs), sum(expected)
    print(
        f"{len(cells)} cells ({len(scenarios)} scenarios), ~{_clock(busy)} of cells, "
        f"~{_clock(guess)} at --jobs {args.jobs}",
        file=sys.stderr,
        flush=True,
    )
    if args.dry_run:
        for cell, seconds in zip(cells, expected, strict=True):
            print(f"  {cell.describe()}  ~{seconds:.0f} s")
        return 0
    started = time.perf_counter()
    records = run_cells(cells, args.jobs)
    wall = time.perf_counter() - started
    rows = group_rows(records)
    print_table(rows)
    _, message = verdict(rows)
    print(message)
    if args.json:
        meta = {
            "argv": sys.argv[1:] if argv is None else list(argv),
            "jobs": args.jobs,
            "runs": args.runs,
            "wall_seconds": wall,
            "targets": {
                "efficiency": TARGET_EFFICIENCY,
                "sliding_counter_x_best": TARGET_RELATIVE,
                "share_429": TARGET_429,
            },
        }
        write_json(args.json, records, rows, meta)
    if args.plot:
        from ._plot import plot_latency

        plot_latency(Path(args.plot), rows)
    if args.timeline:
        from ._plot import plot_timeline

        fixed = next((s for s in scenarios if s.name == "fixed"), None)
        if fixed is None:
            print("--timeline needs a fixed-window scenario", file=sys.stderr)
        else:
            handles = handle_names(fixed.quota.handles)
            plot_timeline(Path(args.timeline), fixed.rule, handles, fixed.ideal_seconds())
    print(f"total benchmark time {wall:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
