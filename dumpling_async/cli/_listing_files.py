"""Output and resume state of the listing commands (``videos``, ``comments``,
``followers``, ``following``, ``search``).

OUTPUT holds one line per item (``_listing_items`` says which). Next to a regular OUTPUT
file lives a small state file, ``OUTPUT.cursor.json``: which listing (command and subject)
OUTPUT holds, the cursor of the first page not completely written yet, and whether the
listing ended. It is replaced atomically (``_files.write_atomic``) after each page, once
that page's lines are written, so it is never ahead of OUTPUT. Resuming starts at that
cursor and skips the items whose id OUTPUT already holds (which also covers a page half
written when a run was killed); an unterminated last line is a torn write and is cut away
(its page is fetched again).
"""

from __future__ import annotations

import contextlib
import csv
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Any, Final, Protocol

import attrs
import orjson

from ._files import OutputError, complete_lines, csv_line, lock_output, write_atomic
from ._listing_items import ItemShape, LineFormat, ListingFormat, item_line

__all__ = [
    "STATE_SUFFIX",
    "ListingOutput",
    "ListingSink",
    "ListingState",
    "open_listing_output",
]

STATE_SUFFIX: Final = ".cursor.json"
_STATE_VERSION: Final = 1
_MAX_STATE_BYTES: Final = 64 * 1024


# -- the state file ------------------------------------------------------------------------


@attrs.define(slots=True)
class ListingState:
    """What OUTPUT holds: which listing, and where it continues."""

    command: str
    subject: str
    format: ListingFormat
    cursor: str | None = None  # the first page not completely written (None: the first)
    finished: bool = False  # the listing ended: a rerun has nothing to do

    def describe(self) -> str:
        return f"`{self.command} {self.subject}`"

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "version": _STATE_VERSION,
                "command": self.command,
                "subject": self.subject,
                "format": self.format,
                "cursor": self.cursor,
                "finished": self.finished,
            },
            option=orjson.OPT_INDENT_2,
        )


def _load_state(path: str) -> ListingState | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    try:
        value = orjson.loads(data)
        state = ListingState(
            command=value["command"],
            subject=value["subject"],
            format=value["format"],
            cursor=value["cursor"],
            finished=value["finished"],
        )
        valid = (
            value.get("version") == _STATE_VERSION
            and isinstance(state.command, str)
            and isinstance(state.subject, str)
            and state.format in ("jsonl", "csv")
            and (state.cursor is None or isinstance(state.cursor, str))
            and isinstance(state.finished, bool)
        )
    except (orjson.JSONDecodeError, TypeError, KeyError):
        valid = False
    if not valid:
        raise OutputError(
            f"{path} is not a dumpling-async listing state file; pass --overwrite to start "
            "the output afresh"
        )
    return state


# -- the output ----------------------------------------------------------------------------


class ListingSink(Protocol):
    """Where a listing run writes: a file of lines (``ListingOutput``) or a database
    (``_listing_database.ListingDatabase``)."""

    name: str
    keys: set[str]  # ids of the items it holds
    existing: int  # items it held when opened
    torn: bool  # a torn last line was cut away
    resumed: bool

    @property
    def state(self) -> ListingState | None:
        """Which listing it holds and where it continues (None: not resumable)."""

    @property
    def state_path(self) -> str:
        """Where that is kept, for a message."""

    def add(self, item: Any, key: str | None) -> None:
        """Write *item*, whose id is *key* (not yet among ``keys``)."""

    def save(self, cursor: str | None, *, finished: bool) -> None:
        """Record that every page before *cursor* is completely written."""

    def close(self) -> None: ...


@attrs.define(slots=True)
class ListingOutput:
    """The open output: item lines, flushed as written; the ids it holds; its state."""

    stream: IO[bytes] = attrs.field(repr=False)
    name: str
    owned: bool
    shape: ItemShape
    fmt: LineFormat
    state: ListingState | None = None  # None: not resumable (stdout, a pipe)
    keys: set[str] = attrs.field(factory=set)  # ids of the items OUTPUT holds
    existing: int = 0  # item lines OUTPUT held when opened
    torn: bool = False  # a torn last line was cut away
    resumed: bool = False

    @property
    def state_path(self) -> str:
        return self.name + STATE_SUFFIX

    def add(self, item: Any, key: str | None) -> None:
        self.stream.write(item_line(self.shape, item, key, self.fmt))
        self.stream.flush()

    def save(self, cursor: str | None, *, finished: bool) -> None:
        """Record that every page before *cursor* is completely in OUTPUT."""
        state = self.state
        if state is None or (state.cursor == cursor and state.finished == finished):
            return
        # On disk before the state that counts on it: a crash never leaves the state
        # ahead of OUTPUT (behind is harmless: those items are skipped by id).
        os.fsync(self.stream.fileno())
        state.cursor, state.finished = cursor, finished
        write_atomic(self.state_path, state.to_bytes(), mode=self._mode())

    def _mode(self) -> int:
        return stat.S_IMODE(os.fstat(self.stream.fileno()).st_mode)

    def close(self) -> None:
        if self.owned:
            self.stream.close()
        else:
            with contextlib.suppress(OSError):
                self.stream.flush()


def _header(fmt: LineFormat, shape: ItemShape) -> bytes:
    return csv_line(list(shape.columns)) if fmt == "csv" else b""


def open_listing_output(
    path: str | None,
    fmt: LineFormat,
    shape: ItemShape,
    *,
    wanted: ListingState,
    resume: bool,
    stdout: IO[bytes] | None = None,
) -> ListingOutput:
    """Open OUTPUT for appending the listing *wanted* describes.

    *path* None or ``-`` writes to stdout (nothing to resume). A regular file is locked
    against a concurrent run; with *resume* and a state file for the same listing, the
    returned output's ``state``, ``keys`` and ``existing`` say where to continue.
    """
    if path is None or path == "-":
        stream = stdout if stdout is not None else sys.stdout.buffer
        stream.write(_header(fmt, shape))
        stream.flush()
        return ListingOutput(stream, "<stdout>", owned=False, shape=shape, fmt=fmt)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        existed = False
    except FileExistsError:
        existed = True
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    stream = open(fd, "r+b")  # noqa: SIM115 - owned by the returned ListingOutput
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/null, a FIFO: plain writing
            stream.close()
            stream = open(path, "wb")  # noqa: SIM115 - owned by the returned ListingOutput
            stream.write(_header(fmt, shape))
            stream.flush()
            return ListingOutput(stream, path, owned=True, shape=shape, fmt=fmt)
        lock_output(fd, path)
        out = ListingOutput(stream, path, owned=True, shape=shape, fmt=fmt)
        saved = _load_state(out.state_path) if existed and resume else None
        if saved is not None:
            _check_state(saved, wanted, path, fmt)
            _scan(out, fmt, shape)
            out.state, out.resumed = saved, True
            if os.fstat(fd).st_size == 0:  # emptied, or a torn CSV header cut away
                stream.write(_header(fmt, shape))
                stream.flush()
        else:
            if existed and resume and _has_items(stream, path, fmt, shape):
                raise OutputError(
                    f"{path} holds data but no {out.state_path} saying which listing it "
                    "is; pass --overwrite to replace it or choose another file"
                )
            stream.truncate(0)
            stream.write(_header(fmt, shape))
            stream.flush()
            out.state = wanted
            write_atomic(out.state_path, wanted.to_bytes(), mode=out._mode())
        stream.seek(0, os.SEEK_END)
    except BaseException:
        stream.close()
        raise
    return out


def _check_state(saved: ListingState, wanted: ListingState, path: str, fmt: LineFormat) -> None:
    if (saved.command, saved.subject) != (wanted.command, wanted.subject):
        raise OutputError(
            f"{path} holds {saved.describe()}, not {wanted.describe()} (see {path}"
            f"{STATE_SUFFIX}); pass --overwrite to replace it or choose another file"
        )
    if saved.format != fmt:
        raise OutputError(
            f"{path} is {saved.format.upper()}, not {fmt.upper()}; pass --format "
            f"{saved.format} to resume it, or --overwrite to replace it"
        )


def _lines(stream: IO[bytes], path: str) -> Iterator[tuple[int, int, bytes]]:
    stream.seek(0)
    return complete_lines(stream, path)


def _has_items(stream: IO[bytes], path: str, fmt: LineFormat, shape: ItemShape) -> bool:
    header = _header(fmt, shape)
    return any(raw.strip() and raw != header for _, _, raw in _lines(stream, path))


def _scan(out: ListingOutput, fmt: LineFormat, shape: ItemShape) -> None:
    """Read the ids OUTPUT holds; cut a torn last line away."""
    path, stream = out.name, out.stream
    header = _header(fmt, shape)
    keep_end = 0
    for number, end, raw in _lines(stream, path):
        if not raw.endswith(b"\n"):
            # Only a killed run leaves a line unterminated (lines are written whole), and
            # the state was not saved after it, so its page is fetched again.
            out.torn = True
            break
        keep_end = end
        body = raw.rstrip(b"\r\n")
        if number == 1 and header:
            if raw != header:
                raise OutputError(
                    f"{path} does not start with the CSV header of this listing; pass "
                    "--overwrite to replace it or choose another file"
                )
            continue
        if not body.strip():
            continue
        key = _parse_line(body, fmt, shape)
        if key is False:
            raise OutputError(
                f"{path}:{number}: not a line of a dumpling-async {fmt.upper()} listing; "
                "pass --overwrite to replace the file"
            )
        out.existing += 1
        if isinstance(key, str):
            out.keys.add(key)
    stream.truncate(keep_end)


def _parse_line(body: bytes, fmt: LineFormat, shape: ItemShape) -> str | bool | None:
    """The id of the item on a line, None when it has none, False when it is no item."""
    if fmt == "jsonl":
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return shape.key(data) if isinstance(data, dict) else False
    try:
        rows = list(csv.reader([body.decode("utf-8")]))
    except (UnicodeDecodeError, csv.Error):
        return False
    if len(rows) != 1 or len(rows[0]) != len(shape.columns):
        return False
    return rows[0][0] or None
