"""The tables and target verdicts of ``benchmarks.overhead``."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table as RichTable

from ._overhead_breakdown import GROUP_NOTES, GROUPS, Breakdown
from ._overhead_cli import TARGET_CLI_RATIO, CliRun
from ._overhead_contenders import Measurement

__all__ = ["Table", "Target", "median_run", "print_breakdown", "print_cli", "print_table"]

CONSOLE = Console(width=200, highlight=False)


@dataclass(frozen=True)
class Target:
    """A row that must stay within *cpu* x the baseline's CPU per lookup and reach
    *rate* x its throughput (None: no throughput target)."""

    key: str
    cpu: float = 1.25
    rate: float | None = 0.8


@dataclass(frozen=True)
class Table:
    title: str
    baseline: str  # the key of the row the ratios are against
    rows: tuple[str, ...]  # contender keys, in print order
    targets: tuple[Target, ...] = ()


def median_run(measurements: Sequence[Measurement]) -> Measurement:
    """The run of median CPU per request (the lower middle one for an even count)."""
    ordered = sorted(measurements, key=lambda m: m.cpu_us_per_request)
    return ordered[(len(ordered) - 1) // 2]


def _medians(measurements: Sequence[Measurement]) -> tuple[float, float]:
    return (
        statistics.median(m.cpu_us_per_request for m in measurements),
        statistics.median(m.throughput for m in measurements),
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_table(
    table: Table, labels: Mapping[str, str], runs: Mapping[str, Sequence[Measurement]]
) -> bool:
    """Print one table and its targets' verdicts; True if all its targets are met."""
    rows = [key for key in table.rows if runs.get(key)]
    if not rows:
        return True
    repeats = max(len(runs[key]) for key in rows)
    out = RichTable(
        title=f"{table.title} (median of {repeats} run{'s' if repeats > 1 else ''})",
        box=box.SIMPLE,
    )
    out.add_column("contender", no_wrap=True)
    columns = ["lookups", "wall s", "req/s", "CPU s", "CPU us/req", "min-max"]
    columns += ["threads us/req", "server us/req", "CPU vs base", "req/s vs base"]
    for column in columns:
        out.add_column(column, justify="right")
    has_base = bool(runs.get(table.baseline))
    base_cpu, base_rate = _medians(runs[table.baseline]) if has_base else (0.0, 0.0)
    for key in rows:
        measurements = runs[key]
        cpu_us, rate = _medians(measurements)
        cpus = [m.cpu_us_per_request for m in measurements]
        servers = [s for m in measurements if (s := m.server_us_per_request) is not None]
        out.add_row(
            labels[key] + (" (base)" if key == table.baseline else ""),
            f"{measurements[0].requests:,}",
            f"{statistics.median(m.wall for m in measurements):.2f}",
            f"{rate:,.0f}",
            f"{statistics.median(m.cpu for m in measurements):.2f}",
            f"{cpu_us:.0f}",
            f"{min(cpus):.0f}-{max(cpus):.0f}",
            f"{statistics.median(m.thread_us_per_request for m in measurements):.0f}",
            f"{statistics.median(servers):.0f}" if servers else "-",
            f"{cpu_us / base_cpu:.2f}x" if has_base else "-",
            f"{rate / base_rate:.2f}x" if has_base else "-",
        )
    CONSOLE.print(out)
    return _print_targets(table, labels, runs, base_cpu, base_rate) if has_base else True


def _print_targets(
    table: Table,
    labels: Mapping[str, str],
    runs: Mapping[str, Sequence[Measurement]],
    base_cpu: float,
    base_rate: float,
) -> bool:
    all_ok = True
    base = labels[table.baseline]
    for target in table.targets:
        if not runs.get(target.key):
            continue
        cpu_us, rate = _medians(runs[target.key])
        cpu_ratio, rate_ratio = cpu_us / base_cpu, rate / base_rate
        ok = cpu_ratio <= target.cpu
        line = (
            f"target {labels[target.key]}: CPU/lookup <= {target.cpu}x {base}: "
            f"{cpu_ratio:.2f}x -> {_verdict(ok)}"
        )
        if target.rate is not None:
            rate_ok = rate_ratio >= target.rate
            line += f"; req/s >= {target.rate}x: {rate_ratio:.2f}x -> {_verdict(rate_ok)}"
            ok = ok and rate_ok
        CONSOLE.print(line)
        all_ok = all_ok and ok
    return all_ok


def print_notes(sniffio_missing: bool) -> None:
    CONSOLE.print(
        "CPU = time.process_time() of this (client) process, all threads; threads us/req = "
        "the part spent outside the event loop's thread (executor threads);\nserver us/req "
        "= CPU of the fake server's own process (psutil). When server us/req is close to "
        "wall/request the single-process server is the\nthroughput ceiling, and "
        "CPU/request is the sharper measure."
    )
    if sniffio_missing:
        CONSOLE.print(
            "note: sniffio is not installed; httpcore 1.0.x then retries `import sniffio` "
            "(a failed filesystem search) on every request, which inflates httpx's CPU."
        )


def print_breakdown(
    client: Breakdown,
    client_run: Measurement,
    base: Breakdown | None,
    base_run: Measurement | None,
) -> None:
    """Each group's share of the profiled own time and its estimated us per lookup."""
    out = RichTable(
        title=f"Where a lookup's CPU goes: cProfile (thread CPU clock) of gather_profiles on "
        f"{client.requests:,} handles, asyncio; us = share x unprofiled CPU of the "
        "event loop's thread",
        box=box.SIMPLE,
    )
    out.add_column("group", no_wrap=True)
    out.add_column("where")
    for column in ("client %", "client us/lookup"):
        out.add_column(column, justify="right")
    if base is not None:
        for column in ("bare aiohttp %", "bare us/req", "client - bare us"):
            out.add_column(column, justify="right")
    loop_us = 1e6 * client_run.thread_cpu / client_run.requests
    base_us = 1e6 * base_run.thread_cpu / base_run.requests if base_run else 0.0
    for group in GROUPS:
        row = [group, GROUP_NOTES[group], f"{client.share(group):.1%}"]
        row.append(f"{client.share(group) * loop_us:.1f}")
        if base is not None:
            delta = client.share(group) * loop_us - base.share(group) * base_us
            row += [f"{base.share(group):.1%}", f"{base.share(group) * base_us:.1f}"]
            row.append(f"{delta:+.1f}")
        out.add_row(*row)
    threads = ["other threads", "executor threads (not profiled)", "", ""]
    threads[3] = f"{client_run.thread_us_per_request:.1f}"
    total = ["total", "time.process_time()", "", f"{client_run.cpu_us_per_request:.1f}"]
    if base is not None and base_run is not None:
        base_threads = base_run.thread_us_per_request
        threads += [
            "",
            f"{base_threads:.1f}",
            f"{client_run.thread_us_per_request - base_threads:+.1f}",
        ]
        total += ["", f"{base_run.cpu_us_per_request:.1f}"]
        total.append(f"{client_run.cpu_us_per_request - base_run.cpu_us_per_request:+.1f}")
    out.add_row(*threads)
    out.add_row(*total)
    CONSOLE.print(out)
    total_seconds = client.total or 1.0
    other = ", ".join(f"{name} {s / total_seconds:.1%}" for name, s in client.other_files)
    CONSOLE.print(f"largest parts of the client's 'other': {other or '-'}")
    inflation = 1e6 * client.total / client.requests / loop_us if loop_us else 0.0
    CONSOLE.print(
        "Built-ins (len, dict.get, socket send/recv...) count for the group of their "
        f"caller. Profiled, the event loop's thread took {inflation:.1f}x its unprofiled "
        "CPU, and the profiler\ninflates many small Python calls more than a few long C "
        "ones: the us are estimates."
    )


def print_cli(runs: Sequence[CliRun]) -> bool:
    """The command line vs the library, per loop; True if every target is met."""
    if not runs:
        return True
    out = RichTable(
        title="The command line (dumpling-async profiles -o OUT.jsonl, a subprocess) vs "
        "iter_profiles in this process",
        box=box.SIMPLE,
    )
    out.add_column("event loop", no_wrap=True)
    columns = ["handles", "library s", "library req/s", "CLI s", "CLI req/s"]
    columns += ["CLI start+exit s", "CLI vs library", "same, less start+exit"]
    for column in columns:
        out.add_column(column, justify="right")
    for run in runs:
        out.add_row(
            run.loop,
            f"{run.handles:,}",
            f"{run.library.wall:.2f}",
            f"{run.library.throughput:,.0f}",
            f"{run.wall:.2f}",
            f"{run.handles / run.wall:,.0f}",
            f"{run.startup:.2f}",
            f"{run.ratio:.2f}x",
            f"{run.ratio_without_startup:.2f}x",
        )
    CONSOLE.print(out)
    all_ok = True
    for run in runs:
        ok = run.ratio >= TARGET_CLI_RATIO
        CONSOLE.print(
            f"target command line on {run.loop}: throughput >= {TARGET_CLI_RATIO}x "
            f"iter_profiles: {run.ratio:.2f}x -> {_verdict(ok)} "
            f"({run.ratio_without_startup:.2f}x less start+exit)"
        )
        all_ok = all_ok and ok
    return all_ok
