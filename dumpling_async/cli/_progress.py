"""What a bulk run shows: its counters (``RunStats``), the live progress on stderr (a rich
bar on a terminal, a plain line every ~2 s otherwise) and the closing summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Column, Table
from rich.text import Text

from .._client import AsyncDumplingClient
from .._core.budget import CreditBudget
from ._files import ResumeState
from ._support import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    SIMULATED_LIMIT,
)

if TYPE_CHECKING:  # imported when needed: aiohttp.web is slow to import
    from ..testing import FakeDumplingServer
    from ._shard import Shard

__all__ = [
    "ProgressMode",
    "Reporter",
    "RunStats",
    "final_code",
    "print_demo_story",
    "print_resume",
    "print_stop_reason",
    "print_summary",
    "progress_mode",
]

PLAIN_PROGRESS_EVERY: Final = 2.0  # seconds between progress lines when stderr is no TTY

ProgressMode = Literal["bar", "plain", "off"]


@dataclass(slots=True)
class RunStats:
    """What a bulk run did; read by the progress display, the summary and the exit code."""

    total: int | None = None  # input entries, when known in advance
    written: int = 0  # results written this run
    lookups: int = 0  # results that went to the API (not invalid handles)
    skipped_ok: int = 0  # entries already answered ok in OUT
    skipped_errors: int = 0  # entries that ended in an error in OUT, not retried
    duplicates: int = 0  # repeats of an entry earlier in the input
    outcomes: Counter[str] = field(default_factory=Counter)
    stop_reason: str | None = None
    aborted: bool = False
    input_exhausted: bool = False
    interrupted: str | None = None
    input_error: str | None = None  # malformed input met while streaming
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    client: AsyncDumplingClient | None = None
    server: FakeDumplingServer | None = None
    resume: ResumeState | None = None
    output: str = "<stdout>"
    shard: Shard | None = None
    shared_budget: CreditBudget | None = None  # the budget all --redis-url workers share

    @property
    def done(self) -> int:
        return self.written + self.skipped_ok + self.skipped_errors + self.duplicates

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def not_attempted(self) -> int | None:
        if self.total is not None:
            return max(0, self.total - self.done)
        return None if not self.input_exhausted else 0

    def failed(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")

    def exit_code(self) -> int:
        if self.aborted:
            return EXIT_ABORTED
        unfinished = self.not_attempted
        if self.failed() or self.skipped_errors or unfinished is None or unfinished > 0:
            return EXIT_FAILED
        return EXIT_OK


def final_code(stats: RunStats) -> int:
    if stats.interrupted == "SIGTERM":
        return EXIT_SIGTERM
    if stats.interrupted is not None:
        return EXIT_SIGINT
    return stats.exit_code()


def progress_mode(quiet: bool, console: Console, *, to_stdout: bool) -> ProgressMode:
    if quiet:
        return "off"
    if console.is_terminal:
        # A live bar and results on the same terminal would garble each other.
        return "off" if to_stdout and sys.stdout.isatty() else "bar"
    return "plain"


def print_resume(console: Console, name: str, state: ResumeState, retry_errors: bool) -> None:
    parts = [f"{state.kept_ok} ok"]
    if state.kept_errors:
        why = "not retryable" if retry_errors else "--retry-errors retries 404s and failures"
        parts.append(f"{state.kept_errors} errors kept ({why})")
    if state.dropped:
        parts.append(f"{state.dropped} to look up again")
    if state.torn:
        parts.append("a torn last line removed")
    console.print(f"resuming {name}: " + ", ".join(parts), markup=False)


# -- progress --------------------------------------------------------------------------------


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


class Reporter:
    """Progress on stderr: a rich bar on a TTY, a plain line every ~2 s otherwise."""

    def __init__(self, mode: ProgressMode, console: Console, stats: RunStats) -> None:
        self.mode = mode
        self.console = console
        self.stats = stats
        self._samples: deque[tuple[float, int]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._progress: Progress | None = None
        self._bar: TaskID | None = None

    async def __aenter__(self) -> Reporter:
        if self.mode == "bar":
            total = self.stats.total
            counts = len(f"{total}/{total}") if total is not None else 9
            label = [TextColumn("[bold cyan]lookups")] if self.console.width >= 100 else []
            self._progress = Progress(
                *label,
                BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
                MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=counts)),
                TextColumn("{task.fields[rate]}"),
                TextColumn("credits [bold]{task.fields[credits]}"),
                TextColumn("remaining {task.fields[remaining]}"),
                TextColumn("throttled {task.fields[throttled]}"),
                TextColumn("ETA {task.fields[eta]}"),
                console=self.console,
                refresh_per_second=8,
                redirect_stdout=False,
                redirect_stderr=True,
                expand=True,
            )
            self._bar = self._progress.add_task("lookups", total=self.stats.total, **self._fields())
            self._progress.start()
        if self.mode != "off":
            self._samples.append((time.monotonic(), self.stats.lookups))
            self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._progress is not None:
            self._update()
            self._progress.stop()

    def _rate(self) -> float | None:
        now = time.monotonic()
        self._samples.append((now, self.stats.lookups))
        while len(self._samples) > 2 and now - self._samples[1][0] >= 5.0:
            self._samples.popleft()
        first_time, first_count = self._samples[0]
        span = now - first_time
        if span < 0.5:
            return None
        return (self.stats.lookups - first_count) / span

    def _fields(self) -> dict[str, Any]:
        stats = self.stats
        client = stats.client
        credits = client.credits_spent if client is not None else 0
        limit = client.rate_limit if client is not None else None
        rate = self._rate()
        remaining = "-"
        if limit is not None and limit.remaining is not None:
            remaining = f"{limit.remaining}/{limit.limit}" if limit.limit else str(limit.remaining)
        eta: float | None = None
        if stats.total is not None and rate:
            eta = max(0, stats.total - stats.done) / rate
        return {
            "rate": "-/s" if rate is None else f"{rate:.1f}/s",
            "credits": str(credits),
            "remaining": remaining,
            "throttled": f"{limit.throttled_seconds:.1f}s" if limit else "0.0s",
            "eta": _fmt_duration(eta) if stats.total is not None else "-",
            "rate_limited": str(limit.rate_limited if limit else 0),
        }

    def _update(self) -> None:
        fields = self._fields()
        if self._progress is not None and self._bar is not None:
            self._progress.update(self._bar, completed=self.stats.done, **fields)
            return
        stats = self.stats
        total = f"/{stats.total}" if stats.total is not None else ""
        self.console.print(
            f"[{stats.elapsed:6.1f}s] {stats.done}{total} done · {fields['rate']} · "
            f"credits {fields['credits']} · remaining {fields['remaining']} · "
            f"throttled {fields['throttled']} · 429s {fields['rate_limited']} · "
            f"ETA {fields['eta']}",
            markup=False,
        )

    async def _tick(self) -> None:
        every = 0.25 if self.mode == "bar" else PLAIN_PROGRESS_EVERY
        while True:
            await asyncio.sleep(every)
            self._update()


# -- summary -----------------------------------------------------------------------------------

_LABELS: Final = {
    "ok": "ok",
    "ProfileNotFoundError": "not found (404)",
    "InvalidHandleError": "invalid handle",
}


def print_summary(console: Console, stats: RunStats) -> None:
    """Counts by outcome, credits, time and the rate-limit figures, on stderr."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    grid.add_column()
    outcomes = stats.outcomes
    grid.add_row("ok", str(outcomes.get("ok", 0)), "")
    for name in ("ProfileNotFoundError", "InvalidHandleError"):
        if outcomes.get(name):
            grid.add_row(_LABELS[name], str(outcomes[name]), "")
    for name, count in sorted(outcomes.items()):
        if name not in _LABELS:
            note = "(not sent: credit budget)" if name == "BudgetExceededError" else "error"
            grid.add_row(name, str(count), note)
    if stats.skipped_ok or stats.skipped_errors:
        note = f"({stats.skipped_errors} of them errors)" if stats.skipped_errors else ""
        grid.add_row("already in output", str(stats.skipped_ok + stats.skipped_errors), note)
    if stats.duplicates:
        grid.add_row("duplicates", str(stats.duplicates), "(looked up once)")
    unfinished = stats.not_attempted
    if unfinished:
        grid.add_row("not attempted", str(unfinished), "(rerun to continue)")
    elif unfinished is None:
        grid.add_row("not attempted", "?", "(input not read to the end; rerun to continue)")
    client = stats.client
    limit = client.rate_limit if client is not None else None
    grid.add_row("credits spent", str(client.credits_spent if client else 0), "")
    shared = stats.shared_budget
    if shared is not None:
        ceiling = f" of {shared.max_credits}" if shared.max_credits is not None else ""
        grid.add_row("shared credits", f"{shared.spent}{ceiling}", "(all --redis-url workers)")
    grid.add_row("elapsed", f"{stats.elapsed:.1f}s", "")
    if limit is not None:
        grid.add_row("throttled", f"{limit.throttled_seconds:.1f}s", "(held back by the limiter)")
        note = "(all --redis-url workers)" if shared is not None else ""
        grid.add_row("429s seen", str(limit.rate_limited), note)
    if stats.shard is not None:
        grid.add_row("shard", str(stats.shard), "(this worker's share of the input)")
    grid.add_row("output", stats.output, "")
    console.print(Panel(grid, title="summary", title_align="left", expand=False, box=box.ROUNDED))
    print_stop_reason(console, stats)


def print_stop_reason(console: Console, stats: RunStats) -> None:
    """Why the run ended early, if it did (printed even with --quiet)."""
    if stats.stop_reason is not None:
        console.print(Text(stats.stop_reason, style="bold red"))
    if stats.interrupted is not None:
        console.print(
            f"interrupted ({stats.interrupted}); run the same command again to resume",
            markup=False,
        )


def print_demo_story(console: Console, stats: RunStats, top: list[tuple[int, str, str]]) -> None:
    """The demo's closing story: the most followed profiles and what the limiter did."""
    if top:
        table = Table(title="most followed", box=box.SIMPLE, title_justify="left")
        table.add_column("handle")
        table.add_column("nickname")
        table.add_column("followers", justify="right")
        for followers, handle, nickname in sorted(top, reverse=True):
            table.add_row(f"@{handle}", nickname, f"{followers:,}")
        console.print(table)
    client, server = stats.client, stats.server
    if client is None:
        return
    limit = client.rate_limit
    server_429 = server.rate_limited if server is not None else 0
    console.print(
        f"rate limit: the server allows {SIMULATED_LIMIT[0]} requests per "
        f"{SIMULATED_LIMIT[1]:g}s; the client learned limit={limit.limit} from the "
        f"X-RateLimit headers and held requests back for {limit.throttled_seconds:.1f}s "
        f"in total before the quota ran out; 429 answers seen: {limit.rate_limited} (the "
        f"server counted {server_429}). {stats.duplicates} repeated handles were looked up "
        f"once; {client.credits_spent} credits spent.",
        markup=False,
    )
