"""The bulk run behind ``profiles`` and ``demo``: read the input (this worker's
``--shard`` of it), skip what OUTPUT already answers and repeats, look the rest up through
``iter_profiles`` (with the ``--redis-url`` limiter and budget when given) and write each
result as it arrives; stop gracefully on SIGINT/SIGTERM.
"""

from __future__ import annotations

import itertools
import os
import stat
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import IO, Any, Literal, NamedTuple, Protocol, cast, runtime_checkable

import attrs
from rich.console import Console

from .._client import AsyncDumplingClient
from .._core.ratelimit import AdaptiveRateLimiter
from .._core.seen import SeenKeys
from .._errors import (
    AuthenticationError,
    BatchAbortedError,
    BudgetExceededError,
    InsufficientCreditsError,
    InvalidHandleError,
)
from .._results import ProfileResult
from ._bulk_report import RunStats, print_resume
from ._database import DatabaseOutput
from ._input import (
    INVALID_PREFIX,
    InputEntry,
    InputError,
    async_entries,
    count_stream,
    entry_key,
    iter_entries,
)
from ._journal import Journal, journal_path, read_journal
from ._output import (
    OutputFile,
    OutputFormat,
    ResumeState,
    Retry,
    open_output,
    unanswered_bytes,
)
from ._progress import BulkView, ProgressMode, Reporter
from ._redis import shared_limits
from ._shard import Shard
from ._signals import stop_on_signals
from ._simulated import simulated_server
from ._support import (
    CLIError,
    Connection,
    make_client,
    resolve_api_key,
    run_job,
)

__all__ = ["BulkJob", "BulkRun", "execute_bulk"]

_ABORT_ERRORS = (AuthenticationError, InsufficientCreditsError, BatchAbortedError)
# Entries of a file taken at once, so that a database answers them in one query.
_READ_AHEAD = 256


@attrs.define(slots=True)
class BulkJob:
    """One ``profiles`` (or ``demo``) run, as the options describe it."""

    input: str
    output: str | None
    fmt: OutputFormat | Literal["sqlite"]
    column: str | None
    concurrency: int | None
    max_credits: int | None
    retry_errors: bool
    resume: bool
    progress: ProgressMode
    limit: int | None = None
    observe: Callable[[ProfileResult], None] | None = None
    shard: Shard | None = None  # look up only this share of the input
    redis_url: str | None = None  # share the limiter and budget through this Redis
    rate_window: float | None = None  # the limiter's first guess, when the window is known
    retry_unanswered: bool = False  # buy again what a killed run sent and never saw answered
    max_age: float | None = None  # a database output: look up again what is older (seconds)
    # Records each handle before it is sent (a file's journal, or a database's table).
    journal: Journal | None = None


class Output(Protocol):
    """Where results go: a file (``OutputFile``) or a database (``DatabaseOutput``)."""

    name: str

    def record(self, entry: InputEntry, result: ProfileResult) -> None: ...


class Answered(Protocol):
    """Which entries the output already answers: True ok, False an error kept, None to
    look up (a file's scan, a dict; a database's query)."""

    def get(self, key: str, /) -> bool | None: ...


@runtime_checkable
class ReadsAhead(Protocol):
    """An ``Answered`` that answers many keys in one query (a database)."""

    def prefetch(self, keys: Sequence[str], /) -> None: ...


class BulkRun:
    """Feeds the input through ``iter_profiles`` and writes each result as it arrives."""

    def __init__(
        self,
        client: AsyncDumplingClient,
        job: BulkJob,
        out: Output,
        stats: RunStats,
        done: Answered,
        *,
        read_ahead: int = 1,
    ) -> None:
        self.client = client
        self.job = job
        self.out = out
        self.stats = stats
        self.done = done
        self.read_ahead = read_ahead  # entries taken at once: > 1 only for a file's
        self.pending: dict[int, InputEntry] = {}  # submitted position -> entry

    async def _plan(self, source: AsyncIterator[object]) -> AsyncIterator[str]:
        """Entries still to look up: skips answered ones, stops on abort. Repeats go on:
        ``iter_profiles`` de-duplicates them (``first_index``) keeping ~25 bytes a key,
        so only entries that are not handles, which it does not, are remembered here."""
        invalid = SeenKeys()
        submitted = 0
        stats, done = self.stats, self.done
        ahead = done if self.read_ahead > 1 and isinstance(done, ReadsAhead) else None
        batches = _batches(source, self.read_ahead)
        try:
            async for batch in batches:
                keys = [entry_key(cast(InputEntry, item).text) for item in batch]
                if ahead is not None:
                    ahead.prefetch(keys)
                for item, key in zip(batch, keys, strict=True):
                    if stats.stop_reason is not None or stats.interrupted is not None:
                        return
                    entry = cast(InputEntry, item)
                    previous = done.get(key)
                    if previous is not None:
                        if previous:
                            stats.skipped_ok += 1
                        else:
                            stats.skipped_errors += 1
                        continue
                    if key.startswith(INVALID_PREFIX) and not invalid.add(key, submitted):
                        stats.duplicates += 1
                        continue
                    self.pending[submitted] = entry
                    submitted += 1
                    yield entry.text
            stats.input_exhausted = True
        except InputError as exc:
            # Met mid-stream (a pipe, or a file that changed after it was checked): end the
            # input here so the lookups in flight, maybe already charged, are still written.
            stats.input_error = str(exc)
        finally:
            await batches.aclose()
            await _aclose(source)

    async def run(self, source: AsyncIterator[object]) -> None:
        stats = self.stats
        journal = self.job.journal
        results = self.client.iter_profiles(
            self._plan(source),
            concurrency=self.job.concurrency,
            before_send=journal.record if journal is not None else None,
        )
        try:
            async for result in results:
                entry = self.pending.pop(result.index)
                if result.first_index is not None:
                    stats.duplicates += 1  # its first position has the row
                    continue
                self.out.record(entry, result)
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


async def _batches(source: AsyncIterator[object], size: int) -> AsyncGenerator[list[object], None]:
    """*source*'s items, *size* at a time (the last batch shorter; one cut short by an
    input error is handed on before the error)."""
    batch: list[object] = []
    try:
        async for item in source:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
    except InputError:
        if batch:
            yield batch
        raise
    if batch:
        yield batch


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


class _Input(NamedTuple):
    stream: IO[bytes]
    total: int | None  # entries, when counted
    threaded: bool  # read in a thread as it comes (a pipe, FIFO or terminal)
    chunked: bool  # a handle list the count read in chunks: read so again


def _open_input(job: BulkJob) -> _Input:
    """The job's input, opened. A regular file is counted (and checked) first in one
    streaming pass, so the progress has a total; a pipe, FIFO or terminal is read in a
    thread as it comes.
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
            return _Input(stream, None, threaded=True, chunked=False)
        start = stream.tell()
        chunked = False
        if job.shard is None:
            total, chunked = count_stream(stream, name, job.column)
        else:
            total = sum(1 for _ in _in_shard(iter_entries(stream, name, job.column), job))
        stream.seek(start)
    except BaseException:
        stream.close()
        raise
    return _Input(stream, total, threaded=False, chunked=chunked)


def _in_shard(entries: Iterator[InputEntry], job: BulkJob) -> Iterator[InputEntry]:
    return entries if job.shard is None else job.shard.select(entries)


def _selected(entries: Iterator[InputEntry], job: BulkJob) -> Iterator[InputEntry]:
    """The entries the job looks up: its shard's share, then the first --limit of them."""
    entries = _in_shard(entries, job)
    return entries if job.limit is None else itertools.islice(entries, job.limit)


def _client_options(job: BulkJob) -> dict[str, Any]:
    options: dict[str, Any] = {"max_concurrency": job.concurrency}
    if job.redis_url is None:
        options["max_credits"] = job.max_credits  # else the shared budget holds the ceiling
    if job.rate_window is not None:
        options["rate_limiter"] = AdaptiveRateLimiter(window=job.rate_window)
    return options


async def _run_bulk(conn: Connection, job: BulkJob, stats: RunStats, console: Console) -> None:
    """The whole bulk job inside the event loop; fills *stats* as it goes."""
    key = resolve_api_key(conn) if job.redis_url is not None else None
    async with (
        simulated_server(conn.simulate) as server,
        shared_limits(job.redis_url, key, job.max_credits) as shared,
    ):
        stats.server = server
        stats.shard = job.shard
        options = _client_options(job)
        if shared is not None:
            options |= shared.client_options()
            stats.shared_budget = shared.budget.shared
        client = make_client(conn, base_url=server.url if server is not None else None, **options)
        stats.client = client
        async with client:
            stream, total, threaded, chunked = _open_input(job)
            try:
                if total is not None and job.limit is not None:
                    total = min(total, job.limit)
                stats.total = total
                # A journal beside an OUT that is gone belongs to nothing (checked before
                # a resume's rewrite replaces OUT, which keeps its journal).
                existed = _exists(job.output)
                retry = Retry(errors=job.retry_errors, unanswered=job.retry_unanswered)
                out: OutputFile | DatabaseOutput
                done: Answered
                fmt = job.fmt
                if fmt == "sqlite":
                    assert job.output is not None  # the command line insists on a path
                    out = done = DatabaseOutput(
                        job.output, resume=job.resume, retry=retry, max_age=job.max_age
                    )
                    resume = out.state
                else:
                    out, resume = open_output(job.output, fmt, resume=job.resume, retry=retry)
                    done = resume.done
                stats.output = out.name
                stats.resume = resume
                journal = None
                try:
                    if isinstance(out, DatabaseOutput) and job.journal is not None:
                        job.journal.attach(out.sent, out.name)  # its record: a table
                        stats.unanswered_retried = out.unanswered_retried
                    elif isinstance(out, OutputFile) and out.resumable and job.journal is not None:
                        journal = job.journal
                        _open_journal(journal, out, job, resume, stats, existed)
                    if (resume.resumed or resume.unanswered) and job.progress != "off":
                        print_resume(console, out.name, resume, job.retry_errors)
                    read = iter_entries(stream, _input_name(job), job.column, checked=chunked)
                    entries = _selected(read, job)
                    source = async_entries(entries, threaded=threaded)
                    # A file is read ahead for a database (its entries are all there, and
                    # it answers them in one query), a pipe as it comes.
                    reads_ahead = not threaded and isinstance(done, ReadsAhead)
                    ahead = _READ_AHEAD if reads_ahead else 1
                    bulk = BulkRun(client, job, out, stats, done, read_ahead=ahead)
                    stats.started = time.monotonic()
                    with stop_on_signals(stats, console, "finishing the lookups in flight"):
                        async with Reporter(job.progress, console, BulkView(stats)):
                            await bulk.run(source)
                    if journal is not None:
                        journal.close(remove=True)  # every handle it names has its line
                        journal = None
                finally:
                    stats.finished = stats.finished or time.monotonic()
                    if journal is not None:
                        journal.close(remove=False)
                    out.close()
            finally:
                stream.close()


def _open_journal(
    journal: Journal,
    out: OutputFile,
    job: BulkJob,
    resume: ResumeState,
    stats: RunStats,
    existed: bool,
) -> None:
    """Give each handle the last run sent and OUT does not answer its *unanswered* line
    (or, with --retry-unanswered, leave it to be looked up again); then start the journal
    afresh. The lines are written first: a kill in between loses nothing."""
    path = journal_path(out.name)
    for handle in read_journal(path) if job.resume and existed else ():
        if handle in resume.lines:
            continue  # answered (or dropped to be looked up again): OUT says what to do
        if job.retry_unanswered:
            stats.unanswered_retried += 1
            continue
        out.write(unanswered_bytes(handle, out.fmt))
        resume.done[handle] = False
        resume.unanswered += 1
    journal.open(path)


def _exists(path: str | None) -> bool:
    return path is not None and os.path.exists(path)


def _input_name(job: BulkJob) -> str:
    return "<stdin>" if job.input == "-" else job.input


def execute_bulk(conn: Connection, job: BulkJob, console: Console) -> RunStats:
    """Run the job; interruptions go into the stats, known failures become a CLIError."""
    stats = RunStats()
    try:
        run_job(_run_bulk(conn, job, stats, console), stats)
    except InputError as exc:
        raise CLIError(f"{exc}{_partial_note(stats)}") from None
    stats.finished = stats.finished or time.monotonic()
    if stats.input_error is not None:
        raise CLIError(f"{stats.input_error}{_partial_note(stats)}")
    return stats


def _partial_note(stats: RunStats) -> str:
    if stats.written:
        return f" ({stats.written} results before it were written; fix the input and rerun)"
    return ""
