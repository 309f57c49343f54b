"""The ``dumpling-async`` command line.

Commands: ``profiles`` (bulk lookups with resume, progress and a summary), ``profile``
(one lookup), ``fake-server`` (serve the offline fake API) and ``demo`` (a bundled sample
against the in-process fake server, no key needed).

Exit status: 0 all answered ok, 1 some handles failed (or were not attempted), 2 usage,
configuration or input error, 3 aborted by an account-level error (401 invalid key,
403 out of credits), 130/143 interrupted by SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import importlib.resources
import itertools
import logging
import os
import signal
import stat
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, Final, Literal, NoReturn, cast

import click
import orjson
import structlog
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Column, Table
from rich.text import Text

from ._client import AsyncDumplingClient
from ._errors import (
    AuthenticationError,
    BatchAbortedError,
    BudgetExceededError,
    ConfigurationError,
    DumplingError,
    InsufficientCreditsError,
    InvalidHandleError,
    ProfileNotFoundError,
)
from ._handles import normalize_handle
from ._log import LOGGER_NAME
from ._models import ProfileResult, TikTokProfile
from ._output import (
    InputEntry,
    InputError,
    OutputError,
    OutputFile,
    OutputFormat,
    ResumeState,
    async_entries,
    entry_key,
    iter_entries,
    open_output,
    record_bytes,
)
from ._version import __version__

if TYPE_CHECKING:  # imported when needed: aiohttp.web is slow to import
    from .testing import FakeDumplingServer, RateLimitRule

__all__ = ["cli", "main"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_ABORTED: Final = 3
EXIT_SIGINT: Final = 130
EXIT_SIGTERM: Final = 143

SIMULATED_KEY: Final = "simulated-key"  # any key works against the fake server
SIMULATED_LIMIT: Final[tuple[int, float, Literal["sliding"]]] = (50, 1.0, "sliding")
SAMPLE_RESOURCE: Final = "sample_handles.txt"
PLAIN_PROGRESS_EVERY: Final = 2.0  # seconds between progress lines when stderr is no TTY
STOP_GRACE: Final = 10.0  # seconds the lookups in flight get to finish after SIGINT/SIGTERM
_ABORT_ERRORS = (AuthenticationError, InsufficientCreditsError, BatchAbortedError)

ProgressMode = Literal["bar", "plain", "off"]


class CLIError(Exception):
    """A failure the CLI reports as one message (no traceback) and an exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    _stderr().print(Text.assemble(("error: ", "bold red"), message))
    sys.exit(code)


def _warn(message: str) -> None:
    _stderr().print(f"[yellow]warning:[/] {message}")


# -- logging -------------------------------------------------------------------------------


class _CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is now (rich swaps it while a
    progress bar is live, so log lines print above the bar)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _CLIHandler(logging.StreamHandler[_CurrentStderr]):
    """Marks the handler the CLI installed, so configuring twice replaces it."""


def configure_logging(verbose: int, log_format: str) -> None:
    """Route the library's log records (stdlib, keys in ``extra``) to stderr via structlog.

    Only the CLI does this; the library itself stays silent until an application
    configures logging. ``-v`` shows DEBUG, otherwise WARNING and above.
    """
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    handler = _CLIHandler(_CurrentStderr())
    handler.setFormatter(formatter)
    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if isinstance(h, _CLIHandler)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logger.propagate = False


# -- connection options ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how to connect: the key (None: from the environment), the base URL, or
    the in-process fake server."""

    api_key: str | None
    base_url: str | None
    simulate: bool


def _connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--api-key-file",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="Read the API key from this file (its first line).",
        ),
        click.option(
            "--api-key",
            default=None,
            help="The API key (visible in the process list; prefer DUMPLINGAI_API_KEY or "
            "--api-key-file).",
        ),
        click.option(
            "--base-url",
            default=None,
            help="API base URL (default https://app.dumplingai.com, or DUMPLINGAI_API_URL).",
        ),
        click.option(
            "--simulate",
            is_flag=True,
            default=None,
            help="Run against an in-process fake server (50 requests/s); no key needed.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _connection(
    ctx: click.Context,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> Connection:
    """Merge a command's connection options over the group's."""
    group: dict[str, Any] = ctx.find_root().obj or {}
    api_key_file = api_key_file or group.get("api_key_file")
    api_key = api_key or group.get("api_key")
    base_url = base_url or group.get("base_url")
    simulate = bool(simulate or group.get("simulate"))
    if api_key is not None and api_key_file is not None:
        raise click.UsageError("pass --api-key or --api-key-file, not both")
    if api_key is not None:
        _warn(
            "--api-key shows the key in the process list and shell history; prefer "
            "DUMPLINGAI_API_KEY or --api-key-file"
        )
    if api_key_file is not None:
        api_key = _read_key_file(api_key_file)
    if simulate:
        return Connection(SIMULATED_KEY, None, True)
    return Connection(api_key, base_url, False)


def _read_key_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read the API key file {path}: {exc}") from None
    if not key:
        raise CLIError(f"the API key file {path} is empty")
    return key


def _client(conn: Connection, base_url: str | None = None, **options: Any) -> AsyncDumplingClient:
    try:
        return AsyncDumplingClient(conn.api_key, base_url=base_url or conn.base_url, **options)
    except ConfigurationError as exc:
        message = str(exc)
        if message.startswith("no DumplingAI API key"):
            message = (
                "no DumplingAI API key: set DUMPLINGAI_API_KEY (or DUMPLING_API_KEY), pass "
                "--api-key-file PATH, or try --simulate"
            )
        raise CLIError(message) from None


def _simulated_rule() -> RateLimitRule:
    from .testing import RateLimitRule

    limit, window, algorithm = SIMULATED_LIMIT
    return RateLimitRule(limit, window, algorithm)


@contextlib.asynccontextmanager
async def _fake_server(enabled: bool) -> AsyncIterator[FakeDumplingServer | None]:
    if not enabled:
        yield None
        return
    from .testing import FakeDumplingServer

    server = FakeDumplingServer(rate_limit=_simulated_rule())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


# -- the bulk run ----------------------------------------------------------------------------


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


@dataclass(slots=True)
class BulkJob:
    """One ``profiles`` (or ``demo``) run, as the options describe it."""

    input: str
    output: str | None
    fmt: OutputFormat
    column: str | None
    concurrency: int
    max_credits: int | None
    retry_errors: bool
    resume: bool
    progress: ProgressMode
    limit: int | None = None
    observe: Callable[[ProfileResult], None] | None = None


class BulkRun:
    """Feeds the input through ``iter_profiles`` and writes each result as it arrives."""

    def __init__(
        self,
        client: AsyncDumplingClient,
        job: BulkJob,
        out: OutputFile,
        stats: RunStats,
        done: dict[str, bool],
    ) -> None:
        self.client = client
        self.job = job
        self.out = out
        self.stats = stats
        self.done = done
        self.pending: dict[int, InputEntry] = {}  # submitted position -> entry

    async def _plan(self, source: AsyncIterator[object]) -> AsyncIterator[str]:
        """Entries still to look up: skips answered ones and repeats, stops on abort."""
        seen: set[str] = set()
        submitted = 0
        stats = self.stats
        try:
            async for item in source:
                if stats.stop_reason is not None or stats.interrupted is not None:
                    return
                entry = cast(InputEntry, item)
                key = entry_key(entry.text)
                previous = self.done.get(key)
                if previous is not None:
                    if previous:
                        stats.skipped_ok += 1
                    else:
                        stats.skipped_errors += 1
                    continue
                if key in seen:
                    stats.duplicates += 1
                    continue
                seen.add(key)
                self.pending[submitted] = entry
                submitted += 1
                yield entry.text
            stats.input_exhausted = True
        except InputError as exc:
            # Met mid-stream (a pipe; files are checked first): end the input here so the
            # lookups in flight, maybe already charged, are still written.
            stats.input_error = str(exc)
        finally:
            await _aclose(source)

    async def run(self, source: AsyncIterator[object]) -> None:
        stats = self.stats
        results = self.client.iter_profiles(self._plan(source), concurrency=self.job.concurrency)
        try:
            async for result in results:
                entry = self.pending.pop(result.index)
                self.out.write(record_bytes(entry, result, self.job.fmt))
                stats.written += 1
                self._count(result)
                if self.job.observe is not None:
                    self.job.observe(result)
        finally:
            await _aclose(results)

    def _count(self, result: ProfileResult) -> None:
        stats = self.stats
        error = result.error
        if error is None:
            stats.outcomes["ok"] += 1
            stats.lookups += 1
            return
        stats.outcomes[type(error).__name__] += 1
        if not isinstance(error, InvalidHandleError):
            stats.lookups += 1
        if isinstance(error, _ABORT_ERRORS):
            stats.aborted = True
            if stats.stop_reason is None or not stats.stop_reason.startswith("aborted"):
                cause = error.cause if isinstance(error, BatchAbortedError) else error
                stats.stop_reason = f"aborted: {cause}"
        elif isinstance(error, BudgetExceededError) and stats.stop_reason is None:
            stats.stop_reason = f"stopped: {error}"


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def _open_input(job: BulkJob) -> tuple[IO[bytes], int | None, bool]:
    """(stream, total entries or None, read in a thread) for the job's input.

    A regular file is counted (and checked) first in one streaming pass, so the progress
    has a total; a pipe, FIFO or terminal is read in a thread as it comes.
    """
    name = _input_name(job)
    if job.input == "-":
        stream = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    else:
        try:
            stream = open(job.input, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as exc:
            raise InputError(f"cannot read {job.input}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return stream, None, True
        start = stream.tell()
        total = sum(1 for _ in iter_entries(stream, name, job.column))
        stream.seek(start)
    except BaseException:
        stream.close()
        raise
    return stream, total, False


def _limited(entries: Iterator[InputEntry], limit: int | None) -> Iterator[InputEntry]:
    return entries if limit is None else itertools.islice(entries, limit)


async def _run_bulk(conn: Connection, job: BulkJob, stats: RunStats, console: Console) -> None:
    """The whole bulk job inside the event loop; fills *stats* as it goes."""
    async with _fake_server(conn.simulate) as server:
        stats.server = server
        client = _client(
            conn,
            base_url=server.url if server is not None else None,
            max_concurrency=job.concurrency,
            max_credits=job.max_credits,
        )
        stats.client = client
        async with client:
            stream, total, threaded = _open_input(job)
            try:
                if total is not None and job.limit is not None:
                    total = min(total, job.limit)
                stats.total = total
                out, resume = open_output(
                    job.output, job.fmt, resume=job.resume, retry_errors=job.retry_errors
                )
                stats.output = out.name
                stats.resume = resume
                try:
                    if resume.resumed and job.progress != "off":
                        _print_resume(console, out.name, resume, job.retry_errors)
                    entries = _limited(
                        iter_entries(stream, _input_name(job), job.column), job.limit
                    )
                    source = async_entries(entries, threaded=threaded)
                    bulk = BulkRun(client, job, out, stats, resume.done)
                    stats.started = time.monotonic()
                    with _graceful_stop(stats, console):
                        async with Reporter(job.progress, console, stats):
                            await bulk.run(source)
                finally:
                    stats.finished = stats.finished or time.monotonic()
                    out.close()
            finally:
                stream.close()


@contextlib.contextmanager
def _graceful_stop(stats: RunStats, console: Console) -> Iterator[None]:
    """On SIGINT/SIGTERM stop reading input and let the lookups in flight finish (they
    may already be charged) for up to STOP_GRACE seconds; a second signal stops at once."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []
    installed: list[int] = []

    def on_signal(name: str) -> None:
        assert task is not None
        if stats.interrupted is not None:
            task.cancel()
            return
        stats.interrupted = name
        console.print(
            f"{name}: finishing the lookups in flight (up to {STOP_GRACE:g}s), then stopping; "
            "send it again to stop at once",
            markup=False,
        )
        timers.append(loop.call_later(STOP_GRACE, task.cancel))

    if task is not None:
        for signum, name in ((int(signal.SIGINT), "SIGINT"), (int(signal.SIGTERM), "SIGTERM")):
            try:
                loop.add_signal_handler(signum, on_signal, name)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or no signal support (Windows)
            installed.append(signum)
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
        for signum in installed:
            loop.remove_signal_handler(signum)


def _input_name(job: BulkJob) -> str:
    return "<stdin>" if job.input == "-" else job.input


def _print_resume(console: Console, name: str, state: ResumeState, retry_errors: bool) -> None:
    parts = [f"{state.kept_ok} ok"]
    if state.kept_errors:
        why = "not retryable" if retry_errors else "--retry-errors retries 404s and failures"
        parts.append(f"{state.kept_errors} errors kept ({why})")
    if state.dropped:
        parts.append(f"{state.dropped} to look up again")
    if state.torn:
        parts.append("a torn last line removed")
    console.print(f"resuming {name}: " + ", ".join(parts), markup=False)


def _execute_bulk(conn: Connection, job: BulkJob, console: Console) -> RunStats:
    """Run the job; map interruptions and known failures to the stats / CLIError."""
    stats = RunStats()
    try:
        asyncio.run(_run_bulk(conn, job, stats, console))
    except KeyboardInterrupt:
        stats.interrupted = stats.interrupted or "SIGINT"
    except asyncio.CancelledError:
        stats.interrupted = stats.interrupted or "SIGTERM"
    except InputError as exc:
        raise CLIError(f"{exc}{_partial_note(stats)}") from None
    except OutputError as exc:
        raise CLIError(str(exc)) from None
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise CLIError("output closed by the reader", EXIT_FAILED) from None
    except OSError as exc:
        raise CLIError(f"I/O error: {exc}") from None
    stats.finished = stats.finished or time.monotonic()
    if stats.input_error is not None:
        raise CLIError(f"{stats.input_error}{_partial_note(stats)}")
    return stats


def _partial_note(stats: RunStats) -> str:
    if stats.written:
        return f" ({stats.written} results before it were written; fix the input and rerun)"
    return ""


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
            grid.add_row(name, str(count), "error")
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
    grid.add_row("elapsed", f"{stats.elapsed:.1f}s", "")
    if limit is not None:
        grid.add_row("throttled", f"{limit.throttled_seconds:.1f}s", "(held back by the limiter)")
        grid.add_row("429s seen", str(limit.rate_limited), "")
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


# -- the click commands --------------------------------------------------------------------


def _log_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        default="console",
        show_default=True,
        help="How library log events are written to stderr.",
    )(func)
    func = click.option(
        "-v", "--verbose", count=True, help="Log DEBUG events of the client (each request)."
    )(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dumpling-async")
@_connection_options
@click.pass_context
def cli(
    ctx: click.Context,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Look up TikTok profiles through the DumplingAI API.

    The API key comes from DUMPLINGAI_API_KEY (or DUMPLING_API_KEY), --api-key-file, or
    --api-key; --simulate runs against an in-process fake server instead.
    """
    ctx.obj = {
        "api_key_file": api_key_file,
        "api_key": api_key,
        "base_url": base_url,
        "simulate": simulate,
    }


@cli.command()
@click.argument(
    "input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, allow_dash=True)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Output file (default stdout). Resumed when it exists.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default=None,
    help="Output format (default: csv for an OUTPUT ending in .csv, else jsonl).",
)
@click.option(
    "--column",
    default=None,
    help="The CSV column holding handles (default 'handle'; implies CSV input).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(1, 256),
    default=16,
    show_default=True,
    help="Lookups in flight at once.",
)
@click.option(
    "--max-credits",
    type=click.IntRange(0),
    default=None,
    help="Stop before spending more than this many credits (10 per profile).",
)
@click.option(
    "--retry-errors",
    is_flag=True,
    help="When resuming, look up again handles that failed with a transient error or 404.",
)
@click.option("--overwrite", is_flag=True, help="Start OUTPUT afresh instead of resuming it.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@_log_options
@_connection_options
@click.pass_context
def profiles(
    ctx: click.Context,
    input_path: str,
    output: str | None,
    fmt: str | None,
    column: str | None,
    concurrency: int,
    max_credits: int | None,
    retry_errors: bool,
    overwrite: bool,
    quiet: bool,
    verbose: int,
    log_format: str,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Look up every handle of INPUT and write one result per handle to OUTPUT.

    INPUT holds one handle or profile URL per line (blank lines and # comments are
    skipped), or is a CSV file (.csv, or --column) with a 'handle' column; '-' reads
    stdin. Results are written as they arrive, one line each (JSONL: handle, input,
    index, line, ok, then profile or error). When OUTPUT exists it is resumed: handles
    it already answers are not sent again, and a torn last line (a killed run) is cut
    away. Every distinct handle ends up exactly once in OUTPUT.

    Exit status: 0 all ok, 1 some failed or not attempted, 2 usage or input error,
    3 aborted (invalid key or out of credits).
    """
    configure_logging(verbose, log_format)
    conn = _connection(ctx, api_key_file, api_key, base_url, simulate)
    if column is None and input_path != "-" and input_path.lower().endswith(".csv"):
        column = "handle"
    out_path = None if output in (None, "-") else output
    if out_path is not None and input_path != "-" and _same_file(input_path, out_path):
        raise click.BadParameter("OUTPUT must not be the INPUT file", param_hint="-o")
    if fmt is None:
        fmt = "csv" if out_path is not None and out_path.lower().endswith(".csv") else "jsonl"
    console = _stderr()
    job = BulkJob(
        input=input_path,
        output=out_path,
        fmt=cast(OutputFormat, fmt),
        column=column,
        concurrency=concurrency,
        max_credits=max_credits,
        retry_errors=retry_errors,
        resume=not overwrite,
        progress=_progress_mode(quiet, console, to_stdout=out_path is None),
    )
    stats = _execute_bulk(conn, job, console)
    if quiet:
        print_stop_reason(console, stats)
    else:
        print_summary(console, stats)
    ctx.exit(_final_code(stats))


def _final_code(stats: RunStats) -> int:
    if stats.interrupted == "SIGTERM":
        return EXIT_SIGTERM
    if stats.interrupted is not None:
        return EXIT_SIGINT
    return stats.exit_code()


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _progress_mode(quiet: bool, console: Console, *, to_stdout: bool) -> ProgressMode:
    if quiet:
        return "off"
    if console.is_terminal:
        # A live bar and results on the same terminal would garble each other.
        return "off" if to_stdout and sys.stdout.isatty() else "bar"
    return "plain"


@cli.command()
@click.argument("handle")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead of a table.")
@_log_options
@_connection_options
@click.pass_context
def profile(
    ctx: click.Context,
    handle: str,
    as_json: bool,
    verbose: int,
    log_format: str,
    api_key_file: str | None,
    api_key: str | None,
    base_url: str | None,
    simulate: bool | None,
) -> None:
    """Look up one TikTok profile by HANDLE or profile URL.

    Exit status: 0 found, 1 not found or failed, 2 usage error, 3 invalid key or out of
    credits.
    """
    configure_logging(verbose, log_format)
    try:
        normalize_handle(handle)
    except InvalidHandleError as exc:
        raise click.BadParameter(str(exc), param_hint="HANDLE") from None
    conn = _connection(ctx, api_key_file, api_key, base_url, simulate)

    async def lookup() -> TikTokProfile:
        async with _fake_server(conn.simulate) as server:
            url = server.url if server is not None else None
            async with _client(conn, base_url=url, max_concurrency=1) as client:
                return await client.get_tiktok_profile(handle)

    try:
        result = asyncio.run(lookup())
    except KeyboardInterrupt:
        ctx.exit(EXIT_SIGINT)
    except ProfileNotFoundError as exc:
        raise CLIError(f"not found: {exc}", EXIT_FAILED) from None
    except (AuthenticationError, InsufficientCreditsError) as exc:
        raise CLIError(str(exc), EXIT_ABORTED) from None
    except DumplingError as exc:
        raise CLIError(f"{type(exc).__name__}: {exc}", EXIT_FAILED) from None
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result.raw, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
        return
    Console(highlight=False).print(_profile_panel(result))


def _profile_panel(result: TikTokProfile) -> Panel:
    user, stats = result.user, result.stats
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()

    def row(label: str, value: object) -> None:
        if value is None or value == "":
            return
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(label, str(value))

    if user is not None:
        row("nickname", user.nickname)
        row("verified", user.verified)
        row("private", user.private_account)
        row("region", user.region)
        row("language", user.language)
        row("bio", user.signature)
        row("link", user.bio_link.link if user.bio_link else None)
        if user.create_time:
            row("joined", time.strftime("%Y-%m-%d", time.gmtime(user.create_time)))
        row("id", user.id)
    if stats is not None:
        row("followers", stats.follower_count)
        row("following", stats.following_count)
        row("likes", stats.heart_count)
        row("videos", stats.video_count)
    title = f"@{user.unique_id}" if user is not None and user.unique_id else "profile"
    return Panel(table, title=title, title_align="left", expand=False)


def _parse_rate_limit(value: str | None) -> RateLimitRule | None:
    if value is None or value.lower() == "none":
        return None
    text, _, algorithm = value.partition(":")
    algorithm = algorithm.strip().replace("-", "_") or "fixed"
    choices = ("fixed", "sliding", "token_bucket")
    from .testing import RateLimitRule

    try:
        limit_text, window_text = text.split("/", 1)
        limit = int(limit_text)
        window = float(window_text.strip().removesuffix("s"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected LIMIT/WINDOW[:ALGORITHM], e.g. 50/1 or 100/60:sliding",
            param_hint="--rate-limit",
        ) from None
    if algorithm not in choices:
        raise click.BadParameter(
            f"algorithm must be one of {', '.join(choices)}", param_hint="--rate-limit"
        )
    if limit < 1 or not window > 0:
        raise click.BadParameter("LIMIT must be >= 1 and WINDOW > 0", param_hint="--rate-limit")
    return RateLimitRule(limit, window, cast(Any, algorithm))


@cli.command("fake-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True)
@click.option(
    "--rate-limit",
    default="50/1",
    show_default=True,
    help="LIMIT/WINDOW[:fixed|sliding|token_bucket] per key, or 'none'.",
)
@click.option("--credits", type=click.IntRange(0), default=None, help="Credits before 403.")
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests that fail with a random fault (5xx, drops, bad bodies).",
)
@click.option("--latency", type=click.FloatRange(0.0), default=0.0, help="Seconds per answer.")
def fake_server(
    host: str,
    port: int,
    rate_limit: str | None,
    credits: int | None,
    fault_rate: float,
    latency: float,
) -> None:
    """Serve the fake DumplingAI API until SIGINT or SIGTERM; prints its URL on stdout.

    Any bearer key is accepted; handles starting with 'unknown' answer 404.
    """
    from .testing import FakeDumplingServer, FaultPlan

    rule = _parse_rate_limit(rate_limit)
    faults = FaultPlan(rate=fault_rate, slow_seconds=1.0) if fault_rate else None
    console = _stderr()

    async def serve() -> FakeDumplingServer:
        server = FakeDumplingServer(
            rate_limit=rule,
            credits=credits,
            faults=faults,
            latency=latency,
            host=host,
            port=port,
        )
        try:
            await server.start()
        except OSError as exc:
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        click.echo(server.url)
        sys.stdout.flush()
        shown = f"{rule.limit}/{rule.window:g}s {rule.algorithm}" if rule else "none"
        console.print(
            f"fake DumplingAI API at {server.url} (rate limit {shown}, credits "
            f"{'unlimited' if credits is None else credits}); any key works. Try:\n"
            f"  DUMPLINGAI_API_KEY=test dumpling-async profiles handles.txt "
            f"--base-url {server.url}\nCtrl-C stops it.",
            markup=False,
        )
        try:
            await stop.wait()
        finally:
            await server.close()
        return server

    server = asyncio.run(serve())
    console.print(
        f"stopped: {server.requests} requests, {sum(server.charged.values())} profiles "
        f"charged, {server.rate_limited} answered 429",
        markup=False,
    )


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="demo-profiles.jsonl",
    show_default=True,
    help="Where the results go (overwritten).",
)
@click.option(
    "--limit", type=click.IntRange(1), default=None, help="Only the first N sample handles."
)
@click.option("-c", "--concurrency", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary.")
@_log_options
def demo(
    output: str,
    limit: int | None,
    concurrency: int,
    quiet: bool,
    verbose: int,
    log_format: str,
) -> None:
    """Look up ~300 bundled sample handles against an in-process fake server.

    No key and no network: the fake server allows 50 requests per second (sliding
    window) and the client paces itself from the X-RateLimit headers. The sample has
    unknown handles (404), repeats (looked up once) and a few invalid lines on purpose.
    """
    configure_logging(verbose, log_format)
    console = _stderr()
    top: list[tuple[int, str, str]] = []

    def observe(result: ProfileResult) -> None:
        profile = result.profile
        if profile is None or profile.stats is None or profile.stats.follower_count is None:
            return
        nickname = profile.user.nickname if profile.user and profile.user.nickname else ""
        item = (profile.stats.follower_count, result.handle, nickname)
        if len(top) < 5:
            heapq.heappush(top, item)
        else:
            heapq.heappushpop(top, item)

    resource = importlib.resources.files("dumpling_async").joinpath(SAMPLE_RESOURCE)
    with importlib.resources.as_file(resource) as sample:
        job = BulkJob(
            input=str(sample),
            output=output,
            fmt="jsonl",
            column=None,
            concurrency=concurrency,
            max_credits=None,
            retry_errors=False,
            resume=False,
            progress=_progress_mode(quiet, console, to_stdout=False),
            limit=limit,
            observe=observe,
        )
        conn = Connection(SIMULATED_KEY, None, True)
        if not quiet:
            console.print(
                f"demo: {SIMULATED_LIMIT[0]} requests per {SIMULATED_LIMIT[1]:g}s "
                f"({SIMULATED_LIMIT[2]} window) on an in-process fake server; "
                f"writing {output}",
                markup=False,
            )
        stats = _execute_bulk(conn, job, console)
    if not quiet:
        print_summary(console, stats)
        _print_story(console, stats, top)
    if stats.interrupted is not None:
        sys.exit(_final_code(stats))
    expected = {"ok", "ProfileNotFoundError", "InvalidHandleError"}
    unexpected = set(stats.outcomes) - expected
    sys.exit(EXIT_FAILED if unexpected or stats.aborted else EXIT_OK)


def _print_story(console: Console, stats: RunStats, top: list[tuple[int, str, str]]) -> None:
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


def main(argv: list[str] | None = None) -> None:
    """The console script: run the CLI, turning known failures into a message and status."""
    try:
        code = cli.main(args=argv, prog_name="dumpling-async", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _stderr().print("aborted", markup=False)
        sys.exit(EXIT_SIGINT)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CLIError as exc:
        _fail(exc.message, exc.code)
    except KeyboardInterrupt:
        sys.exit(EXIT_SIGINT)
    # Without standalone mode click returns ctx.exit()'s status (or the command's None).
    sys.exit(code if isinstance(code, int) else EXIT_OK)
