"""What a bulk run (``profiles``, ``demo``) did and says at its end: its counters
(``RunStats``), which the live progress (``_progress``) also reads, the exit status, the
resume note, the closing summary and the demo's closing story.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import attrs
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._core.budget import CreditBudget
from ._output import ResumeState
from ._run_stats import Stats
from ._simulated import SIMULATED_LIMIT

if TYPE_CHECKING:  # imported when needed: aiohttp.web is slow to import
    from ..testing import FakeDumplingServer
    from ._shard import Shard

__all__ = [
    "RunStats",
    "print_demo_story",
    "print_report",
    "print_resume",
    "print_stop_reason",
    "print_summary",
]


@attrs.define(slots=True)
class RunStats(Stats):
    """What a bulk run did (``written``: results)."""

    total: int | None = None  # input entries, when known in advance
    lookups: int = 0  # results that went to the API (not invalid handles)
    skipped_ok: int = 0  # entries already answered ok in OUT
    skipped_errors: int = 0  # entries that ended in an error in OUT, not retried
    duplicates: int = 0  # repeats of an entry earlier in the input
    unanswered_retried: int = 0  # sent by the last run, never answered: bought again
    outcomes: Counter[str] = attrs.field(factory=Counter)
    stop_reason: str | None = None
    aborted: bool = False
    input_exhausted: bool = False
    input_error: str | None = None  # malformed input met while streaming
    server: FakeDumplingServer | None = None
    resume: ResumeState | None = None
    shard: Shard | None = None
    shared_budget: CreditBudget | None = None  # the budget all --redis-url workers share

    @property
    def done(self) -> int:
        return self.written + self.skipped_ok + self.skipped_errors + self.duplicates

    @property
    def not_attempted(self) -> int | None:
        if self.total is not None:
            return max(0, self.total - self.done)
        return None if not self.input_exhausted else 0

    def failed(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")

    def ending(self) -> tuple[bool, bool]:
        unfinished = self.not_attempted
        unfinished_or_failed = bool(
            self.failed() or self.skipped_errors or unfinished is None or unfinished > 0
        )
        return self.aborted, unfinished_or_failed


def print_resume(console: Console, name: str, state: ResumeState, retry_errors: bool) -> None:
    parts = [f"{state.kept_ok} ok"]
    if state.kept_errors:
        why = "not retryable" if retry_errors else "--retry-errors retries 404s and failures"
        parts.append(f"{state.kept_errors} errors kept ({why})")
    if state.dropped:
        parts.append(f"{state.dropped} to look up again")
    if state.torn:
        parts.append("a torn last line removed")
    if state.unanswered:
        parts.append(
            f"{state.unanswered} unanswered (sent by a run that died before the answer: maybe "
            "charged, kept; --retry-unanswered buys them again)"
        )
    console.print(f"resuming {name}: " + ", ".join(parts), markup=False)


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
    unanswered = stats.resume.unanswered if stats.resume is not None else 0
    if unanswered:
        note = "(sent by a run that died before the answer: maybe charged, not bought again)"
        grid.add_row("unanswered", str(unanswered), note)
    if stats.unanswered_retried:
        note = "(sent by a run that died before the answer: looked up again)"
        grid.add_row("unanswered, retried", str(stats.unanswered_retried), note)
    unfinished = stats.not_attempted
    if unfinished:
        grid.add_row("not attempted", str(unfinished), "(rerun to continue)")
    elif unfinished is None:
        grid.add_row("not attempted", "?", "(input not read to the end; rerun to continue)")
    client = stats.client
    limit = client.rate_limit if client is not None else None
    grid.add_row("credits spent", str(client.credits_spent if client else 0), "")
    if client is not None and client.credits_uncertain:
        note = "(sent, never answered: the server may have charged them)"
        grid.add_row("credits uncertain", str(client.credits_uncertain), note)
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


def print_report(console: Console, stats: RunStats, *, quiet: bool) -> None:
    """What ``profiles`` prints at its end: the summary, or with --quiet only why the run
    ended early."""
    if quiet:
        print_stop_reason(console, stats)
    else:
        print_summary(console, stats)


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
