"""File helpers both outputs share (the ``profiles`` output in ``_output``, the listings'
in ``_listing_files``): the lock against a concurrent run, reading lines back, the atomic
replace, and the CSV and JSON encoding of one output line.

Every output is written one line per record, each line whole and flushed as written, so
a killed run can only leave its last line torn; reading lines back is how both find it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any, Final, Literal

import orjson

if sys.platform != "win32":
    import fcntl

__all__ = [
    "OutputError",
    "complete_lines",
    "csv_cell",
    "csv_line",
    "default_format",
    "default_profiles_format",
    "dumps_record",
    "lock_output",
    "replace_atomic",
    "uncell",
    "write_atomic",
]

_MAX_OUT_LINE: Final = 64 * 1024 * 1024  # a line of OUT longer than this is not ours
# Text starting with these runs as a formula when a spreadsheet opens the CSV.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t")


class OutputError(Exception):
    """The output file cannot be resumed or written; the CLI exits 2."""


DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def default_format(output: str | None) -> Literal["jsonl", "csv"]:
    """The ``--format`` default: csv for an OUTPUT ending in .csv, else jsonl."""
    return "csv" if output is not None and output.lower().endswith(".csv") else "jsonl"


def default_profiles_format(output: str | None) -> Literal["jsonl", "csv", "sqlite"]:
    """``profiles``' ``--format`` default: sqlite for an OUTPUT ending in .db, .sqlite or
    .sqlite3, else as :func:`default_format`."""
    if output is not None and output.lower().endswith(DATABASE_SUFFIXES):
        return "sqlite"
    return default_format(output)


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


def replace_atomic(
    path: str, write: Callable[[IO[bytes]], object], *, mode: int, lock: bool = False
) -> IO[bytes]:
    """Replace *path* all at once by what *write* puts into a temporary file in the same
    directory (fsync, then ``os.replace``), so a killed run leaves the old content or the
    new, never a mix; on failure the temporary file is removed and *path* is untouched.

    Returns the new file still open (``r+b``, at the end of what was written): the caller
    appends to it or closes it. With *lock* it is locked (``lock_output``) before it takes
    *path*'s place, so an output locked against a concurrent run stays locked throughout.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".")
    out = open(fd, "r+b")  # noqa: SIM115 - returned to the caller
    try:
        if lock:
            lock_output(fd, temp)
        os.chmod(temp, mode)
        write(out)
        out.flush()
        os.fsync(fd)  # the copy must be on disk before it replaces *path*
        os.replace(temp, path)
    except BaseException:
        out.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return out


def write_atomic(path: str, data: bytes, *, mode: int = 0o644) -> None:
    """Replace *path* by *data* all at once (see ``replace_atomic``)."""
    replace_atomic(path, lambda out: out.write(data), mode=mode).close()


# -- line encoding -------------------------------------------------------------------------


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


def uncell(text: str) -> str:
    """Undo ``csv_cell``'s formula quote, to read a written cell back."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def csv_line(cells: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8")


def dumps_record(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:  # e.g. an integer beyond 64 bits in a vendor field
        import json

        return json.dumps(record, ensure_ascii=False, default=str).encode()
