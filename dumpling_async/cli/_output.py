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

import csv
import os
from typing import IO, Any, Final, Literal

import attrs
import orjson

from .._core.inputs import normalize_handle
from .._core.seen import SeenKeys
from .._errors import APIConnectionError, DumplingError, InvalidHandleError, InvalidResponseError
from .._models import TikTokProfile
from .._results import ProfileResult
from ._files import complete_lines, csv_cell, csv_line, dumps_record, replace_atomic, uncell
from ._input import INVALID_PREFIX, InputEntry, entry_key
from ._lines import LineFile, Scan, open_lines

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

    def __init__(self, lines: LineFile, fmt: OutputFormat) -> None:
        self._lines = lines
        self.name = lines.name
        self.fmt = fmt
        self.resumable = lines.resumable  # a regular file, locked: a rerun resumes it

    def write(self, data: bytes) -> None:
        self._lines.write(data)

    def record(self, entry: InputEntry, result: ProfileResult) -> None:
        self._lines.write(record_bytes(entry, result, self.fmt))

    def close(self) -> None:
        self._lines.close()


@attrs.frozen
class _Codec:
    """A ``profiles`` output's lines, in *fmt* (``_lines.Codec``)."""

    fmt: OutputFormat

    @property
    def header(self) -> bytes:
        return csv_line(list(CSV_COLUMNS)) if self.fmt == "csv" else b""

    def parse(self, body: bytes) -> _Line | None:
        return _parse_jsonl(body) if self.fmt == "jsonl" else _parse_csv(body)

    def ours(self, torn: bytes, number: int) -> bool:
        header = self.header
        if header:  # CSV: after our header any row is ours; as line 1, a header prefix
            return number > 1 or header.startswith(torn)
        start = b'{"handle":'
        return torn.startswith(start) or start.startswith(torn)

    def foreign(self, path: str, number: int) -> str:
        other = "CSV" if self.fmt == "jsonl" else "JSONL"
        return (
            f"{path}:{number}: not a dumpling-async {self.fmt.upper()} output line (is it "
            f"{other}? use --format); pass --overwrite to replace the file"
        )


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
    codec = _Codec(fmt)
    lines = open_lines(path, codec.header, stdout=stdout)
    try:
        if lines.resumable:
            if resume and os.fstat(lines.stream.fileno()).st_size > 0:
                _resume(lines, codec, retry, state)
            else:
                lines.start(afresh=not resume)
    except BaseException:
        lines.close()
        raise
    return OutputFile(lines, fmt), state


def _resume(lines: LineFile, codec: _Codec, retry: Retry, state: ResumeState) -> None:
    """Scan *lines*; cut a torn tail, or rewrite without dropped lines (*lines* then
    holds the copy)."""
    state.resumed = True
    scan = Scan(lines, codec, keep_unterminated=True)
    for number, line in scan:
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
    state.torn = scan.torn
    if state.dropped:
        _rewrite(lines, codec, retry, scan.keep_end)
    else:
        scan.repair()


def _rewrite(lines: LineFile, codec: _Codec, retry: Retry, keep_end: int) -> None:
    """Replace the file by a copy of its kept lines; *lines* then holds the copy, locked
    and open for appending (the old stream is closed)."""
    stream, path, header = lines.stream, lines.name, codec.header

    def copy(out: IO[bytes]) -> None:
        stream.seek(0)
        for number, end, raw in complete_lines(stream, path):
            if end > keep_end:
                break
            body = raw.rstrip(b"\r\n")
            if (number == 1 and header) or not body.strip():
                out.write(raw)
                continue
            line = codec.parse(body)
            if line is not None and _disposition(line, retry):
                out.write(body + b"\n")  # also restores a kept tail's lost newline

    # replace_atomic's fsync is this output's only one: the copy must be on disk before
    # it replaces OUT.
    lines.stream = replace_atomic(path, copy, mode=lines.mode(), lock=True)
    stream.close()
    lines.start()
