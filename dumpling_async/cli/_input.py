"""The input of ``profiles`` (and ``demo``): a list of handles, one per line, or a CSV
column of them, streamed and checked line by line.

A line longer than 64 KiB, NUL bytes or invalid UTF-8 raise :class:`InputError` (the CLI
exits 2), never a traceback. Invalid *handles* are not input errors: they become
per-handle results, keyed by ``entry_key`` like every other entry.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import threading
from collections.abc import AsyncIterator, Iterator
from typing import IO, Final

import attrs

from .._core.inputs import normalize_handle
from .._errors import InvalidHandleError

__all__ = [
    "INVALID_PREFIX",
    "MAX_LINE_BYTES",
    "InputEntry",
    "InputError",
    "async_entries",
    "count_entries",
    "count_stream",
    "entry_key",
    "iter_entries",
]

MAX_LINE_BYTES: Final = 64 * 1024
_SURELY_SHORT: Final = MAX_LINE_BYTES // 4 - 1  # characters: within the limit in any UTF-8
_CHUNK: Final = 256 * 1024  # bytes read at once by the chunked reads
_BOM: Final = b"\xef\xbb\xbf"
INVALID_PREFIX: Final = "invalid:"  # ':' never occurs in a normalised handle


class InputError(Exception):
    """The input file is malformed (not a handle list or CSV); the CLI exits 2."""


@attrs.frozen
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
        return INVALID_PREFIX + text


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


def iter_entries(
    stream: IO[bytes], name: str, column: str | None, *, checked: bool = False
) -> Iterator[InputEntry]:
    """Stream the entries of a handle list (*column* None) or of a CSV column; *checked*:
    a handle list ``count_stream`` read in chunks, read so again."""
    if column is None:
        return _checked_entries(stream, name) if checked else _text_entries(stream, name)
    return _csv_entries(stream, name, column)


def count_entries(path: str, column: str | None) -> int:
    """Count (and check) the entries of a regular file in one streaming pass."""
    with open(path, "rb") as stream:
        return count_stream(stream, path, column)[0]


def count_stream(stream: IO[bytes], name: str, column: str | None) -> tuple[int, bool]:
    """Count (and check) the entries from *stream*'s position to its end, as
    ``iter_entries`` would yield them, and whether it was read in chunks: a handle list
    a chunk at a time (several times faster than line by line), unless a chunk holds
    anything that may be wrong; then it is read again line by line, so that an error
    names its line as ``iter_entries`` names it."""
    start = stream.tell()
    if column is None:
        try:
            texts = (text for lines in _chunked_lines(stream) for text in map(str.strip, lines))
            return sum(map(_is_entry, texts)), True
        except _Unsure:
            stream.seek(start)
    return sum(1 for _ in iter_entries(stream, name, column)), False


class _Unsure(Exception):
    """A chunk holds something the line-by-line read may refuse."""


def _chunked_lines(stream: IO[bytes]) -> Iterator[list[str]]:
    """A handle list's physical lines (without their newlines), a chunk's worth at a time;
    ``_Unsure`` at a UTF-16 start, NUL bytes, invalid UTF-8 or a line that may be too long."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    tail, first = "", True
    while True:
        chunk = stream.read(_CHUNK)
        end = not chunk
        if first:
            # The first read of a regular file holds its first bytes, BOM and all.
            if (len(chunk) < len(_BOM) and not end) or chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise _Unsure
            chunk = chunk.removeprefix(_BOM)
            first = False
        if b"\0" in chunk:
            raise _Unsure
        try:
            text = tail + decoder.decode(chunk, final=end)
        except UnicodeDecodeError:
            raise _Unsure from None
        lines = text.split("\n")
        tail = "" if end else lines.pop()
        # A character is at most 4 bytes: shorter lines are surely within the limit.
        if (lines and max(map(len, lines)) > _SURELY_SHORT) or len(tail) > _SURELY_SHORT:
            raise _Unsure
        yield lines
        if end:
            return


def _is_entry(text: str) -> bool:
    return bool(text) and text[0] != "#"


def _checked_entries(stream: IO[bytes], name: str) -> Iterator[InputEntry]:
    """``_text_entries`` of a handle list ``count_stream`` read in chunks: the same
    entries, read the same way."""
    number = index = 0
    try:
        for chunk in _chunked_lines(stream):
            for line in chunk:
                number += 1
                text = line.strip()
                if text and text[0] != "#":
                    yield InputEntry(index, number, text)
                    index += 1
    except _Unsure:
        raise InputError(f"{name}: changed while it was read; run again") from None


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
