"""The live progress of a run on stderr: a rich bar on a terminal, a plain line every
PLAIN_PROGRESS_EVERY seconds otherwise.

One ``Reporter`` does the showing for every kind of run; a small view says what to show:
``BulkView`` (lookups, rate, credits, the limiter, ETA) for ``profiles`` and ``demo``,
``ListingView`` (items, pages, credits) for the listing commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column

if TYPE_CHECKING:
    from ._bulk_report import RunStats

__all__ = [
    "PLAIN_PROGRESS_EVERY",
    "BulkView",
    "ListingCounts",
    "ListingView",
    "ProgressMode",
    "ProgressView",
    "Reporter",
    "progress_mode",
]

PLAIN_PROGRESS_EVERY: Final = 2.0  # seconds between progress lines when stderr is no TTY
_BAR_EVERY: Final = 0.25  # seconds between updates of the rich bar

ProgressMode = Literal["bar", "plain", "off"]


def progress_mode(quiet: bool, console: Console, *, to_stdout: bool) -> ProgressMode:
    if quiet:
        return "off"
    if console.is_terminal:
        # A live bar and results on the same terminal would garble each other.
        return "off" if to_stdout and sys.stdout.isatty() else "bar"
    return "plain"


class ProgressView(Protocol):
    """What one kind of run shows: the bar's columns, task and fields, and the plain line."""

    @property
    def description(self) -> str:
        """The bar task's description."""

    @property
    def expand(self) -> bool:
        """Whether the bar spans the whole width."""

    @property
    def total(self) -> int | None:
        """The bar's total (None: unknown)."""

    @property
    def completed(self) -> int:
        """The bar's count so far."""

    def columns(self, console: Console) -> list[ProgressColumn]: ...

    def fields(self) -> dict[str, Any]:
        """The task fields the columns show; read once per update."""

    def plain_line(self, fields: dict[str, Any]) -> str:
        """The line printed instead of the bar, from this update's *fields*."""


class Reporter:
    """Progress on stderr: a rich bar on a TTY, a plain line every ~2 s otherwise."""

    def __init__(self, mode: ProgressMode, console: Console, view: ProgressView) -> None:
        self.mode = mode
        self.console = console
        self.view = view
        self._task: asyncio.Task[None] | None = None
        self._progress: Progress | None = None
        self._bar: TaskID | None = None

    async def __aenter__(self) -> Reporter:
        view = self.view
        if self.mode == "bar":
            self._progress = Progress(
                *view.columns(self.console),
                console=self.console,
                refresh_per_second=8,
                redirect_stdout=False,
                redirect_stderr=True,
                expand=view.expand,
            )
            self._bar = self._progress.add_task(view.description, total=view.total, **view.fields())
            self._progress.start()
        if self.mode != "off":
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

    def _update(self) -> None:
        fields = self.view.fields()
        if self._progress is not None and self._bar is not None:
            self._progress.update(self._bar, completed=self.view.completed, **fields)
            return
        self.console.print(self.view.plain_line(fields), markup=False)

    async def _tick(self) -> None:
        every = _BAR_EVERY if self.mode == "bar" else PLAIN_PROGRESS_EVERY
        while True:
            await asyncio.sleep(every)
            self._update()


# -- the views -------------------------------------------------------------------------------


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds + 0.5)
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


class BulkView:
    """A bulk run: entries done of the total, the lookup rate (over the last ~5 s),
    credits, the rate limiter's state and the ETA."""

    description = "lookups"
    expand = True

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), stats.lookups)])

    @property
    def total(self) -> int | None:
        return self.stats.total

    @property
    def completed(self) -> int:
        return self.stats.done

    def columns(self, console: Console) -> list[ProgressColumn]:
        total = self.stats.total
        counts = len(f"{total}/{total}") if total is not None else 9
        label = [TextColumn("[bold cyan]lookups")] if console.width >= 100 else []
        return [
            *label,
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=5)),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=counts)),
            TextColumn("{task.fields[rate]}"),
            TextColumn("credits [bold]{task.fields[credits]}"),
            TextColumn("remaining {task.fields[remaining]}"),
            TextColumn("throttled {task.fields[throttled]}"),
            TextColumn("ETA {task.fields[eta]}"),
        ]

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

    def fields(self) -> dict[str, Any]:
        stats = self.stats
        client = stats.client
        credits = str(client.credits_spent) if client is not None else "0"
        if client is not None and client.credits_uncertain:
            credits += f" (+{client.credits_uncertain}?)"  # maybe charged: sent, no answer
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
            "credits": credits,
            "remaining": remaining,
            "throttled": f"{limit.throttled_seconds:.1f}s" if limit else "0.0s",
            "eta": _fmt_duration(eta) if stats.total is not None else "-",
            "rate_limited": str(limit.rate_limited if limit else 0),
        }

    def plain_line(self, fields: dict[str, Any]) -> str:
        stats = self.stats
        total = f"/{stats.total}" if stats.total is not None else ""
        return (
            f"[{stats.elapsed:6.1f}s] {stats.done}{total} done · {fields['rate']} · "
            f"credits {fields['credits']} · remaining {fields['remaining']} · "
            f"throttled {fields['throttled']} · 429s {fields['rate_limited']} · "
            f"ETA {fields['eta']}"
        )


class ListingCounts(Protocol):
    """What a listing view shows of its run (the listing run's stats)."""

    @property
    def written(self) -> int: ...
    @property
    def pages(self) -> int: ...
    @property
    def credits(self) -> int: ...
    @property
    def elapsed(self) -> float: ...


class ListingView:
    """A listing run: items written, pages fetched and credits, under the listing's
    *label* (command and subject)."""

    total = None  # a listing's length is unknown until it ends
    expand = False

    def __init__(self, label: str, stats: ListingCounts) -> None:
        self.label = label
        self.stats = stats

    @property
    def description(self) -> str:
        return self.label[:60]

    @property
    def completed(self) -> int:
        return self.stats.written

    def columns(self, console: Console) -> list[ProgressColumn]:
        return [
            SpinnerColumn(),
            TextColumn("[bold cyan]{task.description}"),
            TextColumn("{task.completed} items"),
            TextColumn("pages {task.fields[pages]}"),
            TextColumn("credits [bold]{task.fields[credits]}"),
            TimeElapsedColumn(),
        ]

    def fields(self) -> dict[str, Any]:
        return {"pages": self.stats.pages, "credits": self.stats.credits}

    def plain_line(self, fields: dict[str, Any]) -> str:
        stats = self.stats
        return (
            f"[{stats.elapsed:6.1f}s] {self.label}: {stats.written} items · {fields['pages']} "
            f"pages · credits {fields['credits']}"
        )
