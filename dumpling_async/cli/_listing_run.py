"""The run behind the listing commands: fetch a listing one page at a time through the
client's ``Pager``, write each page's items not in OUTPUT yet, then advance the state file
(``_listing_files``), so a rerun continues at the first page not completely written; stop
gracefully on SIGINT/SIGTERM; show progress (``_progress.ListingView``), the summary and
why a run stopped early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._client import AsyncDumplingClient
from .._core.paging import Pager
from .._errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    DumplingError,
    InsufficientCreditsError,
    InvalidInputError,
    NotFoundError,
)
from ._files import OutputError
from ._listing_database import ListingDatabase
from ._listing_files import ListingSink, ListingState, open_listing_output
from ._listing_items import ItemShape, ListingFormat
from ._progress import ListingView, ProgressMode, Reporter
from ._run_stats import Stats
from ._signals import stop_on_signals
from ._simulated import simulated_server
from ._support import (
    EXIT_OK,
    CLIError,
    Connection,
    make_client,
    run_job,
)

__all__ = [
    "Listing",
    "ListingJob",
    "ListingStats",
    "PagerArgs",
    "execute_listing",
    "print_outcome",
    "print_summary",
]


@attrs.frozen
class PagerArgs:
    start_cursor: str | None
    page_size: int | None
    trim: bool


@attrs.frozen
class Listing:
    """One listing command: its argument, how it is checked and paged, its items' shape."""

    command: str
    metavar: str
    summary: str  # the help's first line
    normalize: Callable[[str], str]  # the canonical subject; InvalidInputError if bad
    open: Callable[[AsyncDumplingClient, str, PagerArgs], Pager[Any]]
    shape: ItemShape
    has_page_size: bool = True  # else --trim (videos)


@attrs.define(slots=True)
class ListingJob:
    """One listing run, as the options describe it."""

    listing: Listing
    subject: str  # canonical
    output: str | None
    fmt: ListingFormat
    limit: int | None
    args: PagerArgs
    max_credits: int | None
    resume: bool
    progress: ProgressMode


@attrs.define(slots=True)
class ListingStats(Stats):
    """What a listing run did (``written``: items)."""

    existing: int = 0  # items OUTPUT held before
    repeats: int = 0  # items skipped: already in OUTPUT, or sent twice by the API
    pages: int = 0  # pages fetched (and paid for) this run
    cursor: str | None = None  # where the listing continues
    complete: bool = False  # the listing ended
    limited: bool = False  # stopped because OUTPUT holds --limit items
    note: str | None = None  # why nothing was fetched
    error: DumplingError | None = None
    resumable: bool = False  # a state file records the cursor

    def ending(self) -> tuple[bool, bool]:
        aborted = isinstance(self.error, AuthenticationError | InsufficientCreditsError)
        return aborted, self.error is not None

    def exit_code(self) -> int:
        if self.complete:  # a signal that came as the last page arrived stopped nothing
            return EXIT_OK
        return super().exit_code()


# -- the run -------------------------------------------------------------------------------


async def _copy(
    pager: Pager[Any], job: ListingJob, out: ListingSink, stats: ListingStats, room: int | None
) -> None:
    """Write the pager's items not in OUTPUT yet; advance the state after each page."""
    shape = job.listing.shape
    page = pager.page_cursor  # the cursor of the page being written
    try:
        async for item in pager:
            stats.pages = pager.pages
            key = shape.key(item.raw)
            if key is not None and key in out.keys:
                stats.repeats += 1
            else:
                out.add(item, key)
                if key is not None:
                    out.keys.add(key)
                stats.written += 1
            stats.limited = room is not None and stats.written >= room
            if pager.page_cursor != page or pager.ended or stats.limited:
                # A new page starts with the next item: this one is completely written (or
                # the limit is reached, and the rest of it is fetched again to continue).
                page = stats.cursor = pager.page_cursor
                stats.complete = pager.ended
                out.save(page, finished=pager.ended)
                if stats.limited or stats.interrupted is not None:
                    break
        else:  # the listing ended (maybe after empty pages, or with no item at all)
            stats.cursor, stats.complete = pager.page_cursor, pager.ended
            out.save(pager.page_cursor, finished=pager.ended)
    except DumplingError as error:
        stats.error = error
        stats.cursor = error.cursor
        out.save(error.cursor, finished=False)
    finally:
        stats.pages = pager.pages


def _open_pager(client: AsyncDumplingClient, job: ListingJob, cursor: str | None) -> Pager[Any]:
    args = PagerArgs(cursor, job.args.page_size, job.args.trim)
    return job.listing.open(client, job.subject, args)


async def _listing(
    client: AsyncDumplingClient, job: ListingJob, stats: ListingStats, console: Console
) -> None:
    try:
        pager = _open_pager(client, job, job.args.start_cursor)
    except InvalidInputError as exc:
        raise CLIError(f"invalid --start-cursor: {exc}") from None
    wanted = ListingState(job.listing.command, job.subject, job.fmt, job.args.start_cursor)
    out: ListingSink
    if job.fmt == "sqlite":
        assert job.output is not None  # the command refuses a database on stdout
        out = ListingDatabase(job.output, wanted, resume=job.resume)
    else:
        out = open_listing_output(
            job.output, job.fmt, job.listing.shape, wanted=wanted, resume=job.resume
        )
    try:
        stats.output, stats.existing = out.name, out.existing
        stats.resumable = out.state is not None
        stats.cursor = job.args.start_cursor
        state = out.state
        if out.resumed and state is not None:
            if job.progress != "off":
                _print_resume(console, out, state)
            if job.args.start_cursor is None:  # an explicit cursor overrides the saved one
                stats.cursor, stats.complete = state.cursor, state.finished
                if state.finished:
                    stats.note = f"the listing is complete in {out.name}; nothing to fetch"
                    return
                try:
                    pager = _open_pager(client, job, state.cursor)
                except InvalidInputError:
                    raise OutputError(
                        f"{out.state_path} holds an invalid cursor; pass --overwrite to start "
                        "afresh"
                    ) from None
        room = None if job.limit is None else job.limit - out.existing
        if room is not None and room <= 0:
            stats.note = f"{out.name} already holds --limit {job.limit} items; nothing to fetch"
            return
        out.save(stats.cursor, finished=False)
        stats.started = time.monotonic()
        with stop_on_signals(stats, console, "writing the page in flight"):
            view = ListingView(f"{job.listing.command} {job.subject}", stats)
            async with Reporter(job.progress, console, view):
                await _copy(pager, job, out, stats, room)
    finally:
        stats.finished = stats.finished or time.monotonic()
        out.close()


async def _run(conn: Connection, job: ListingJob, stats: ListingStats, console: Console) -> None:
    async with simulated_server(conn.simulate) as server:
        url = server.url if server is not None else None
        client = make_client(conn, base_url=url, max_concurrency=1, max_credits=job.max_credits)
        stats.client = client
        async with client:
            await _listing(client, job, stats, console)


def execute_listing(conn: Connection, job: ListingJob, console: Console) -> ListingStats:
    """Run the job; interruptions go into the stats, I/O failures become a CLIError."""
    stats = ListingStats()
    run_job(_run(conn, job, stats, console), stats)
    stats.finished = stats.finished or time.monotonic()
    return stats


# -- summary -------------------------------------------------------------------------------


def _print_resume(console: Console, out: ListingSink, state: ListingState) -> None:
    if state.finished:
        where = "the listing is complete"
    else:
        where = "from " + ("the first page" if state.cursor is None else f"cursor {state.cursor}")
    torn = ", a torn last line removed" if out.torn else ""
    console.print(f"resuming {out.name}: {out.existing} items, {where}{torn}", markup=False)


def print_summary(console: Console, stats: ListingStats) -> None:
    rows = [("items written", str(stats.written), "")]
    if stats.existing:
        rows.append(("already in output", str(stats.existing), "(from earlier runs)"))
    if stats.repeats:
        rows.append(("skipped", str(stats.repeats), "(already written)"))
    rows.append(("pages", str(stats.pages), ""))
    rows.append(("credits spent", str(stats.credits), ""))
    uncertain = stats.client.credits_uncertain if stats.client is not None else 0
    if uncertain:
        rows.append(("credits uncertain", str(uncertain), "(sent, never answered)"))
    rows.append(("elapsed", f"{stats.elapsed:.1f}s", ""))
    if stats.complete:
        rows.append(("listing", "complete", ""))
    else:
        shown = "(first page)" if stats.cursor is None else stats.cursor
        rows.append(("next cursor", shown, "(--limit reached)" if stats.limited else ""))
    rows.append(("output", stats.output, ""))
    # An all-empty notes column would make rich measure the grid too narrow.
    notes = any(note for _, _, note in rows)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(justify="right", overflow="fold")
    if notes:
        grid.add_column()
    for row in rows:
        grid.add_row(*(row if notes else row[:2]))
    console.print(Panel(grid, title="summary", title_align="left", expand=False, box=box.ROUNDED))


def _resume_hint(stats: ListingStats) -> str:
    cursor = stats.cursor
    flag = f"--start-cursor {cursor}" if cursor is not None else ""
    if stats.resumable:
        return "run the same command again to resume there" + (f" (or pass {flag})" if flag else "")
    return f"pass {flag} to resume there" if flag else "run the command again"


def print_outcome(console: Console, stats: ListingStats) -> None:
    """Why the run stopped early, if it did (printed even with --quiet)."""
    error = stats.error
    if error is not None:
        if isinstance(error, BudgetExceededError):
            console.print(Text(f"stopped: {error}", style="bold red"))
        elif isinstance(error, AuthenticationError | InsufficientCreditsError):
            console.print(Text(f"aborted: {error}", style="bold red"))
        elif isinstance(error, NotFoundError | BadRequestError):  # a rerun cannot help
            label = "not found" if isinstance(error, NotFoundError) else "refused"
            console.print(Text(f"{label}: {error}", style="bold red"))
            return
        else:
            where = "the first page" if error.cursor is None else f"the page at {error.cursor}"
            console.print(
                Text(f"{where} failed: {type(error).__name__}: {error}", style="bold red")
            )
        console.print(f"{stats.written} items written; {_resume_hint(stats)}", markup=False)
    if stats.interrupted is not None and not stats.complete:
        console.print(
            f"interrupted ({stats.interrupted}) after {stats.written} items; {_resume_hint(stats)}",
            markup=False,
        )
