"""Input readers, output writers and resume state for the ``dumpling-async`` CLI.

Input is streamed and checked line by line: a line longer than 64 KiB, NUL bytes or
invalid UTF-8 raise :class:`InputError` (the CLI exits 2), never a traceback. Invalid
*handles* are not input errors: they become per-handle results.

Output holds one record per distinct input entry (a normalised handle, or the text of an
input that is not a handle), in completion order, one line each, flushed as it is
written. Resuming reads the existing output first: entries already answered are skipped
(never sent again), a torn last line left by a killed run is cut away, and when errored
entries are retried their old lines are dropped by rewriting the file (temporary file in
the same directory, then ``os.replace``), so each entry keeps exactly one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import stat
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final, Literal

import orjson

from .._core.inputs import normalize_handle
from .._errors import DumplingError, InvalidHandleError
from .._results import ProfileResult

if sys.platform != "win32":
    import fcntl

__all__ = [
    "CSV_COLUMNS",
    "MAX_LINE_BYTES",
    "InputEntry",
    "InputError",
    "OutputError",
    "OutputFile",
    "ResumeState",
    "async_entries",
    "complete_lines",
    "count_entries",
    "csv_cell",
    "csv_line",
    "dumps_record",
    "entry_key",
    "iter_entries",
    "lock_output",
    "open_output",
    "record_bytes",
]

OutputFormat = Literal["jsonl", "csv"]

MAX_LINE_BYTES: Final = 64 * 1024
_MAX_OUT_LINE: Final = 64 * 1024 * 1024  # a line of OUT longer than this is not ours
_BOM: Final = b"\xef\xbb\xbf"
_INVALID_PREFIX: Final = "invalid:"  # ':' never occurs in a normalised handle

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


class InputError(Exception):
    """The input file is malformed (not a handle list or CSV); the CLI exits 2."""


class OutputError(Exception):
    """The output file cannot be resumed or written; the CLI exits 2."""


# -- input -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InputEntry:
    """One handle (or would-be handle) of the input."""

    index: int  # 0-based position among the input's entries
    line: int  # 1-based physical line (the last line of a multi-line CSV record)
    text: str  # stripped


def entry_key(text: str) -> str:
    """The identity of an entry: its normalised handle, or its text when not a handle."""
    try:
        return normalize_handle(text)
    except InvalidHandleError:
        return _INVALID_PREFIX + text


def _lines(stream: IO[bytes], name: str, position: list[int]) -> Iterator[str]:
    """Decoded physical lines (with their newline), checked; position[0] is the line number."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        position[0] = number
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise InputError(
                f"{name}:{number}: line longer than {MAX_LINE_BYTES // 1024} KiB; "
                "expected one handle or profile URL per line"
            )
        if number == 1:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise InputError(f"{name}: looks like UTF-16 text; save it as UTF-8")
            if raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
        if b"\0" in raw:
            raise InputError(f"{name}:{number}: binary data (NUL bytes); expected UTF-8 text")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"{name}:{number}: not valid UTF-8 (byte {exc.start + 1} of the line)"
            ) from None


def _text_entries(stream: IO[bytes], name: str) -> Iterator[InputEntry]:
    position = [0]
    index = 0
    for line in _lines(stream, name, position):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        yield InputEntry(index, position[0], text)
        index += 1


def _find_column(header: list[str], column: str, name: str) -> int:
    names = [cell.strip() for cell in header]
    if column in names:
        return names.index(column)
    folded = [cell.casefold() for cell in names]
    if column.casefold() in folded:
        return folded.index(column.casefold())
    shown = ", ".join(repr(cell) for cell in names[:20]) or "none"
    raise InputError(f"{name}: no {column!r} column in the CSV header (columns: {shown})")


def _csv_entries(stream: IO[bytes], name: str, column: str) -> Iterator[InputEntry]:
    position = [0]
    reader = csv.reader(_lines(stream, name, position))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{name}: empty CSV file; expected a header with a {column!r} column")
        col = _find_column(header, column, name)
        index = 0
        for row in reader:
            text = row[col].strip() if col < len(row) else ""
            if not text:
                continue
            yield InputEntry(index, position[0], text)
            index += 1
    except csv.Error as exc:
        raise InputError(f"{name}:{position[0]}: malformed CSV ({exc})") from None


def iter_entries(stream: IO[bytes], name: str, column: str | None) -> Iterator[InputEntry]:
    """Stream the entries of a handle list (*column* None) or of a CSV column."""
    if column is None:
        return _text_entries(stream, name)
    return _csv_entries(stream, name, column)


def count_entries(path: str, column: str | None) -> int:
    """Count (and check) the entries of a regular file in one streaming pass."""
    with open(path, "rb") as stream:
        return sum(1 for _ in iter_entries(stream, path, column))


async def async_entries(entries: Iterator[InputEntry], *, threaded: bool) -> AsyncIterator[object]:
    """Entries as an async stream; *threaded* reads them in a daemon thread (pipes, TTYs)
    so a slow producer never blocks the event loop."""
    if not threaded:
        for entry in entries:
            yield entry
        return
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=256)
    done = object()

    def pump() -> None:
        item: object
        try:
            for item in entries:
                if not _put(loop, queue, item):
                    return
            item = done
        except BaseException as exc:  # handed to the reader, raised there
            item = exc
        _put(loop, queue, item)

    # A daemon thread: a read blocked on a terminal never keeps the process alive.
    threading.Thread(target=pump, name="dumpling-input", daemon=True).start()
    while True:
        item = await queue.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object], item: object) -> bool:
    try:
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()
    except Exception:  # the loop is closed or the put was cancelled: stop reading
        return False
    return True


# -- records -----------------------------------------------------------------------------


def _error_fields(error: DumplingError | None) -> dict[str, Any]:
    if error is None:
        return {"type": "DumplingError", "status": None, "message": "unknown error"}
    status = getattr(error, "status", None)
    return {
        "type": type(error).__name__,
        "status": status if isinstance(status, int) else None,
        "message": str(error),
    }


# Text starting with these runs as a formula when a spreadsheet opens the CSV.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t")


def csv_cell(value: object) -> str:
    """A CSV cell on one line; text a spreadsheet would run as a formula gets a leading
    quote (nicknames, captions and comments are anyone's text)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    # One physical line per record keeps torn-write detection line based.
    text = str(value).replace("\r", " ").replace("\n", " ")
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _uncell(text: str) -> str:
    """Undo ``csv_cell``'s formula quote, to read a written cell back."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def dumps_record(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # e.g. an integer beyond 64 bits in a vendor field
        import json

        return json.dumps(record, ensure_ascii=False, default=str).encode()


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
    row: list[object]
    profile = result.profile
    if profile is not None:
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
    else:
        fields = _error_fields(result.error)
        row = [handle, *([None] * 9), f"{fields['type']}: {fields['message']}"]
    return csv_line([csv_cell(value) for value in row])


def csv_line(cells: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


# -- resume ------------------------------------------------------------------------------


@dataclass(slots=True)
class ResumeState:
    """What an existing output file already holds."""

    done: dict[str, bool] = field(default_factory=dict)  # answered entry key -> ok; skipped
    kept_ok: int = 0
    kept_errors: int = 0
    dropped: int = 0  # lines removed so their entries are looked up again
    torn: bool = False  # a torn last line was cut away
    resumed: bool = False


@dataclass(slots=True)
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
        return _Line(_INVALID_PREFIX + (given if isinstance(given, str) else handle), False, None)
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
    handle, error = _uncell(row[0]), row[-1]
    if not error:
        return _Line(entry_key(handle), True, None)
    error_type = error.split(":", 1)[0].strip()
    if error_type == "InvalidHandleError":
        return _Line(_INVALID_PREFIX + handle, False, None)
    return _Line(entry_key(handle), False, error_type)


def _disposition(line: _Line, retry_errors: bool) -> bool:
    """True to keep the line (its entry is done), False to drop it and look it up again."""
    if line.ok or line.error_type is None:
        return True
    if line.error_type in NOT_ATTEMPTED:
        return False
    return not (retry_errors and line.error_type in RETRYABLE)


def complete_lines(stream: IO[bytes], path: str) -> Iterator[tuple[int, int, bytes]]:
    """(line number, end offset, line) of each line; the last one may lack its newline."""
    offset = 0
    number = 0
    while True:
        raw = stream.readline(_MAX_OUT_LINE)
        if not raw:
            return
        number += 1
        if len(raw) >= _MAX_OUT_LINE and not raw.endswith(b"\n"):
            raise OutputError(f"{path}:{number}: line too long for a dumpling-async output")
        offset += len(raw)
        yield number, offset, raw


class OutputFile:
    """The open output: one record per line, flushed as written."""

    def __init__(self, stream: IO[bytes], name: str, *, owned: bool) -> None:
        self._stream = stream
        self.name = name
        self._owned = owned

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()
        else:
            with contextlib.suppress(OSError):
                self._stream.flush()


def lock_output(fd: int, path: str) -> None:
    if sys.platform == "win32":
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OutputError(
            f"{path} is being written by another dumpling-async run; wait for it or pick "
            "another output file"
        ) from None


def _header(fmt: OutputFormat) -> bytes:
    return csv_line(list(CSV_COLUMNS)) if fmt == "csv" else b""


def open_output(
    path: str | None,
    fmt: OutputFormat,
    *,
    resume: bool,
    retry_errors: bool,
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
        return OutputFile(stream, "<stdout>", owned=False), state
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
            stream = _resume(stream, path, fmt, retry_errors, state)
        stream.seek(0, os.SEEK_END)
        if stream.tell() == 0:
            stream.write(_header(fmt))
            stream.flush()
    except BaseException:
        stream.close()
        raise
    return OutputFile(stream, path, owned=True), state


def _plain_output(path: str, fmt: OutputFormat) -> OutputFile:
    try:
        stream = open(path, "wb")  # noqa: SIM115 - owned by the returned OutputFile
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    stream.write(_header(fmt))
    stream.flush()
    return OutputFile(stream, path, owned=True)


def _resume(
    stream: IO[bytes], path: str, fmt: OutputFormat, retry_errors: bool, state: ResumeState
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
        if _disposition(line, retry_errors):
            state.done[line.key] = state.done.get(line.key, False) or line.ok
            if line.ok:
                state.kept_ok += 1
            else:
                state.kept_errors += 1
        else:
            state.dropped += 1
        keep_end = end
    if state.dropped:
        return _rewrite(stream, path, fmt, retry_errors, parse, keep_end)
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
    retry_errors: bool,
    parse: Callable[[bytes], _Line | None],
    keep_end: int,
) -> IO[bytes]:
    """Copy the kept lines to a locked temporary file and move it over *path*."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    out = open(fd, "r+b")  # noqa: SIM115 - returned to the caller
    try:
        lock_output(fd, temp)
        os.fchmod(fd, stat.S_IMODE(os.fstat(stream.fileno()).st_mode))
        header = _header(fmt)
        stream.seek(0)
        for number, end, raw in complete_lines(stream, path):
            if end > keep_end:
                break
            body = raw.rstrip(b"\r\n")
            if (number == 1 and header) or not body.strip():
                out.write(raw)
                continue
            line = parse(body)
            if line is not None and _disposition(line, retry_errors):
                out.write(body + b"\n")  # also restores a kept tail's lost newline
        out.flush()
        os.fsync(fd)  # the only fsync: the copy must be on disk before it replaces OUT
        os.replace(temp, path)
    except BaseException:
        out.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    stream.close()
    return out
