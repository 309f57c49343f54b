"""The output of ``profiles`` (and ``demo``): one record per distinct input entry (a
normalised handle, or the text of an input that is not a handle), in completion order, one
line each (JSONL or CSV), flushed as it is written.

Resuming reads the existing output first: entries already answered are skipped (never
sent again), a torn last line left by a killed run is cut away, and when errored entries
are retried their old lines are dropped by rewriting the file atomically
(``_files.replace_atomic``), so each entry keeps exactly one line. Handles a killed run
sent and never saw answered (its journal, ``_journal``) get an ``Unanswered`` line: maybe
charged, not bought again unless asked.
"""

from __future__ import annotations

import contextlib
import csv
import os
import stat
import sys
from collections.abc import Callable
from typing import IO, Any, Final, Literal

import attrs
import orjson

from .._core.inputs import normalize_handle
from .._core.seen import SeenKeys
from .._errors import APIConnectionError, DumplingError, InvalidHandleError, InvalidResponseError
from .._models import TikTokProfile
from .._results import ProfileResult
from ._files import (
    OutputError,
    complete_lines,
    csv_cell,
    csv_line,
    dumps_record,
    lock_output,
    replace_atomic,
    uncell,
)
from ._input import INVALID_PREFIX, InputEntry, entry_key

__all__ = [
    "CSV_COLUMNS",
    "NOT_ATTEMPTED",
    "RETRYABLE",
    "UNANSWERED",
    "OutputFile",
    "OutputFormat",
    "ResumeState",
    "Retry",
    "open_output",
    "record_bytes",
    "unanswered_bytes",
]

OutputFormat = Literal["jsonl", "csv"]

CSV_COLUMNS: Final = (
    "handle",
    "unique_id",
    "nickname",
    "verified",
    "private_account",
    "region",
    "follower_count",
    "following_count",
    "heart_count",
    "video_count",
    "error",
)

# Outcomes that say nothing about the handle (it was not attempted, or the account
# failed): always looked up again when resuming.
NOT_ATTEMPTED: Final = frozenset(
    {
        "BatchAbortedError",
        "BudgetExceededError",
        "AuthenticationError",
        "InsufficientCreditsError",
        "DuplicateHandleError",
    }
)

# A handle sent by a run that was killed before its answer: maybe charged. Looked up again
# only with --retry-unanswered.
UNANSWERED: Final = "Unanswered"
UNANSWERED_MESSAGE: Final = (
    "the run ended before this request was answered: it may have been charged "
    "(--retry-unanswered looks it up again)"
)

# Outcomes that may change on a new attempt: looked up again with --retry-errors.
RETRYABLE: Final = frozenset(
    {
        "RateLimitError",
        "ServerError",
        "UpstreamError",
        "APIConnectionError",
        "APITimeoutError",
        "InvalidResponseError",
        "ProfileNotFoundError",
    }
)


# -- records -----------------------------------------------------------------------------


def _error_fields(error: DumplingError | None) -> dict[str, Any]:
    if error is None:
        return {"type": "DumplingError", "status": None, "message": "unknown error"}
    status = getattr(error, "status", None)
    fields: dict[str, Any] = {
        "type": type(error).__name__,
        "status": status if isinstance(status, int) else None,
        "message": str(error),
    }
    if isinstance(error, APIConnectionError) and error.maybe_charged:
        fields["maybe_charged"] = True
    if isinstance(error, InvalidResponseError) and error.body is not None:
        # A 200 that was paid for: what arrived is kept, for a bug report or a re-parse.
        fields["body"] = error.body.decode("utf-8", "replace")
    return fields


def record_bytes(entry: InputEntry, result: ProfileResult, fmt: OutputFormat) -> bytes:
    """The output line (with its newline) for *entry*'s *result*."""
    valid = not isinstance(result.error, InvalidHandleError)
    handle = result.handle if valid else entry.text
    if fmt == "jsonl":
        record: dict[str, Any] = {
            "handle": handle,
            "input": entry.text,
            "index": entry.index,
            "line": entry.line,
            "ok": result.ok,
        }
        if result.profile is not None:
            record["profile"] = result.profile.raw
        else:
            record["error"] = _error_fields(result.error)
        return dumps_record(record) + b"\n"
    profile = result.profile
    if profile is not None:
        return csv_profile_line(handle, profile)
    fields = _error_fields(result.error)
    return csv_error_line(handle, f"{fields['type']}: {fields['message']}")


def csv_profile_line(handle: str, profile: TikTokProfile) -> bytes:
    user, stats = profile.user, profile.stats
    row = [
        handle,
        user.unique_id if user else None,
        user.nickname if user else None,
        user.verified if user else None,
        user.private_account if user else None,
        user.region if user else None,
        stats.follower_count if stats else None,
        stats.following_count if stats else None,
        stats.heart_count if stats else None,
        stats.video_count if stats else None,
        None,
    ]
    return csv_line([csv_cell(value) for value in row])


def csv_error_line(handle: str, error: str) -> bytes:
    return csv_line([csv_cell(value) for value in [handle, *([None] * 9), error]])


def unanswered_bytes(handle: str, fmt: OutputFormat) -> bytes:
    """The output line for a handle sent by a killed run and never seen answered."""
    if fmt == "jsonl":
        error = {"type": UNANSWERED, "status": None, "message": UNANSWERED_MESSAGE}
        record = {"handle": handle, "input": handle, "index": None, "line": None, "ok": False}
        return dumps_record(record | {"error": error | {"maybe_charged": True}}) + b"\n"
    return csv_error_line(handle, f"{UNANSWERED}: {UNANSWERED_MESSAGE}")


# -- resume ------------------------------------------------------------------------------


@attrs.define(slots=True)
class ResumeState:
    """What an existing output file already holds."""

    done: dict[str, bool] = attrs.field(factory=dict)  # answered entry key -> ok; skipped
    lines: SeenKeys = attrs.field(factory=SeenKeys)  # every entry key with a line, kept or not
    kept_ok: int = 0
    kept_errors: int = 0
    dropped: int = 0  # lines removed so their entries are looked up again
    torn: bool = False  # a torn last line was cut away
    resumed: bool = False
    unanswered: int = 0  # handles a run sent and never saw answered (maybe charged): kept


@attrs.define(slots=True)
class _Line:
    key: str
    ok: bool
    error_type: str | None


def _parse_jsonl(raw: bytes) -> _Line | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        return None
    handle, given = data.get("handle"), data.get("input")
    error = data.get("error")
    error_type = error.get("type") if isinstance(error, dict) else None
    if not isinstance(handle, str) or (not data["ok"] and not isinstance(error_type, str)):
        return None
    if error_type == "InvalidHandleError":
        return _Line(INVALID_PREFIX + (given if isinstance(given, str) else handle), False, None)
    try:
        key = normalize_handle(handle)
    except InvalidHandleError:
        key = entry_key(given if isinstance(given, str) else handle)
    return _Line(key, data["ok"], error_type)


def _parse_csv(raw: bytes) -> _Line | None:
    try:
        rows = list(csv.reader([raw.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error):
        return None
    if len(rows) != 1 or len(rows[0]) != len(CSV_COLUMNS):
        return None
    row = rows[0]
    handle, error = uncell(row[0]), row[-1]
    if not error:
        return _Line(entry_key(handle), True, None)
    error_type = error.split(":", 1)[0].strip()
    if error_type == "InvalidHandleError":
        return _Line(INVALID_PREFIX + handle, False, None)
    return _Line(entry_key(handle), False, error_type)


@attrs.frozen
class Retry:
    """Which outcomes a resume looks up again, besides those never attempted."""

    errors: bool = False  # --retry-errors: transient failures and 404s
    unanswered: bool = False  # --retry-unanswered: sent by a killed run, maybe charged


def _disposition(line: _Line, retry: Retry) -> bool:
    """True to keep the line (its entry is done), False to drop it and look it up again."""
    if line.ok or line.error_type is None:
        return True
    if line.error_type in NOT_ATTEMPTED:
        return False
    if line.error_type == UNANSWERED:
        return not retry.unanswered
    return not (retry.errors and line.error_type in RETRYABLE)


class OutputFile:
    """The open output: one record per line, flushed as written."""

    def __init__(
        self,
        stream: IO[bytes],
        name: str,
        *,
        owned: bool,
        resumable: bool = False,
        fmt: OutputFormat = "jsonl",
    ) -> None:
        self._stream = stream
        self.name = name
        self.fmt = fmt
        self._owned = owned
        self.resumable = resumable  # a regular file, locked: a rerun resumes it

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def record(self, entry: InputEntry, result: ProfileResult) -> None:
        self.write(record_bytes(entry, result, self.fmt))

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            with contextlib.suppress(OSError):
                self._stream.flush()


def _header(fmt: OutputFormat) -> bytes:
    return csv_line(list(CSV_COLUMNS)) if fmt == "csv" else b""


def open_output(
    path: str | None,
    fmt: OutputFormat,
    *,
    resume: bool,
    retry: Retry,
    stdout: IO[bytes] | None = None,
) -> tuple[OutputFile, ResumeState]:
    """Open the output for appending, after reading what an existing file holds.

    *path* None or ``-`` writes to *stdout* (no resume). A regular file is locked against
    a concurrent run; with *resume* its answered entries are returned in ``done``.
    """
    state = ResumeState()
    if path is None or path == "-":
        stream = stdout if stdout is not None else sys.stdout.buffer
        stream.write(_header(fmt))
        stream.flush()
        return OutputFile(stream, "<stdout>", owned=False, fmt=fmt), state
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    stream = open(fd, "r+b")  # noqa: SIM115 - owned by the returned OutputFile
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if not regular:  # /dev/null, a FIFO: plain writing
            stream.close()
            return _plain_output(path, fmt), state
        lock_output(fd, path)
        if not resume:
            stream.truncate(0)
        elif os.fstat(fd).st_size > 0:
            stream = _resume(stream, path, fmt, retry, state)
        stream.seek(0, os.SEEK_END)
        if stream.tell() == 0:
            stream.write(_header(fmt))
            stream.flush()
    except BaseException:
        stream.close()
        raise
    return OutputFile(stream, path, owned=True, resumable=True, fmt=fmt), state


def _plain_output(path: str, fmt: OutputFormat) -> OutputFile:
    try:
        stream = open(path, "wb")  # noqa: SIM115 - owned by the returned OutputFile
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    stream.write(_header(fmt))
    stream.flush()
    return OutputFile(stream, path, owned=True, fmt=fmt)


def _resume(
    stream: IO[bytes], path: str, fmt: OutputFormat, retry: Retry, state: ResumeState
) -> IO[bytes]:
    """Scan *stream*; cut a torn tail, or rewrite without dropped lines. Returns the stream
    to append to (a new one after a rewrite)."""
    state.resumed = True
    parse: Callable[[bytes], _Line | None] = _parse_jsonl if fmt == "jsonl" else _parse_csv
    other = "CSV" if fmt == "jsonl" else "JSONL"
    header = _header(fmt)
    keep_end = 0  # offset just past the last line to keep as is
    needs_newline = False
    stream.seek(0)
    for number, end, raw in complete_lines(stream, path):
        complete = raw.endswith(b"\n")
        body = raw.rstrip(b"\r\n")
        if number == 1 and header:
            if raw == header:
                keep_end = end
                continue
            if complete:
                raise OutputError(
                    f"{path} is not a dumpling-async CSV output (unexpected header); "
                    "pass --overwrite to replace it or choose another file"
                )
        if not body.strip() and complete:
            keep_end = end
            continue
        line = parse(body)
        if line is None:
            if not complete and _ours(body, number, header):
                state.torn = True  # a run killed mid-write: cut it away
                break
            raise OutputError(
                f"{path}:{number}: not a dumpling-async {fmt.upper()} output line (is it "
                f"{other}? use --format); pass --overwrite to replace the file"
            )
        if not complete:
            needs_newline = True  # complete record, newline lost: keep it
        state.lines.add(line.key, number)
        if _disposition(line, retry):
            state.done[line.key] = state.done.get(line.key, False) or line.ok
            if line.ok:
                state.kept_ok += 1
            elif line.error_type == UNANSWERED:
                state.unanswered += 1
            else:
                state.kept_errors += 1
        else:
            state.dropped += 1
        keep_end = end
    if state.dropped:
        return _rewrite(stream, path, fmt, retry, parse, keep_end)
    stream.truncate(keep_end)
    if needs_newline:
        stream.seek(0, os.SEEK_END)
        stream.write(b"\n")
        stream.flush()
    return stream


def _ours(torn: bytes, number: int, header: bytes) -> bool:
    """Whether an unterminated last line can be the start of a line this CLI wrote (so
    cutting it loses nothing); a foreign file is never truncated."""
    if header:  # CSV: after our header any row is ours; as line 1, a header prefix
        return number > 1 or header.startswith(torn)
    start = b'{"handle":'
    return torn.startswith(start) or start.startswith(torn)


def _rewrite(
    stream: IO[bytes],
    path: str,
    fmt: OutputFormat,
    retry: Retry,
    parse: Callable[[bytes], _Line | None],
    keep_end: int,
) -> IO[bytes]:
    """Replace *path* by a copy of its kept lines; returns the copy, locked and open for
    appending (the old stream is closed)."""
    header = _header(fmt)

    def copy(out: IO[bytes]) -> None:
        stream.seek(0)
        for number, end, raw in complete_lines(stream, path):
            if end > keep_end:
                break
            body = raw.rstrip(b"\r\n")
            if (number == 1 and header) or not body.strip():
                out.write(raw)
                continue
            line = parse(body)
            if line is not None and _disposition(line, retry):
                out.write(body + b"\n")  # also restores a kept tail's lost newline

    # replace_atomic's fsync is this output's only one: the copy must be on disk before
    # it replaces OUT.
    mode = stat.S_IMODE(os.fstat(stream.fileno()).st_mode)
    out = replace_atomic(path, copy, mode=mode, lock=True)
    stream.close()
    return out
