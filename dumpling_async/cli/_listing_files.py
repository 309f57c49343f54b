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

import csv
import os
from typing import IO, Any, Final, Protocol

import attrs
import orjson

from ._files import OutputError, complete_lines, csv_line, write_atomic
from ._lines import LineFile, Scan, open_lines
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

    keys: set[str]  # ids of the items it holds
    existing: int  # items it held when opened
    torn: bool  # a torn last line was cut away
    resumed: bool

    @property
    def name(self) -> str: ...

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

    lines: LineFile = attrs.field(repr=False)
    shape: ItemShape
    fmt: LineFormat
    state: ListingState | None = None  # None: not resumable (stdout, a pipe)
    keys: set[str] = attrs.field(factory=set)  # ids of the items OUTPUT holds
    existing: int = 0  # item lines OUTPUT held when opened
    torn: bool = False  # a torn last line was cut away
    resumed: bool = False

    @property
    def name(self) -> str:
        return self.lines.name

    @property
    def state_path(self) -> str:
        return self.name + STATE_SUFFIX

    def add(self, item: Any, key: str | None) -> None:
        self.lines.write(item_line(self.shape, item, key, self.fmt))

    def save(self, cursor: str | None, *, finished: bool) -> None:
        """Record that every page before *cursor* is completely in OUTPUT."""
        state = self.state
        if state is None or (state.cursor == cursor and state.finished == finished):
            return
        # On disk before the state that counts on it: a crash never leaves the state
        # ahead of OUTPUT (behind is harmless: those items are skipped by id).
        os.fsync(self.lines.stream.fileno())
        state.cursor, state.finished = cursor, finished
        write_atomic(self.state_path, state.to_bytes(), mode=self.lines.mode())

    def close(self) -> None:
        self.lines.close()


@attrs.frozen
class _Codec:
    """A listing's item lines, in *fmt* (``_lines.Codec``): a line's record is the
    item's id, or "" when it has none."""

    fmt: LineFormat
    shape: ItemShape

    @property
    def header(self) -> bytes:
        return csv_line(list(self.shape.columns)) if self.fmt == "csv" else b""

    def parse(self, body: bytes) -> str | None:
        if self.fmt == "jsonl":
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                return None
            return (self.shape.key(data) or "") if isinstance(data, dict) else None
        try:
            rows = list(csv.reader([body.decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error):
            return None
        if len(rows) != 1 or len(rows[0]) != len(self.shape.columns):
            return None
        return rows[0][0]

    def ours(self, torn: bytes, number: int) -> bool:
        return True  # never asked: every unterminated line is torn (see _scan)

    def foreign(self, path: str, number: int) -> str:
        return (
            f"{path}:{number}: not a line of a dumpling-async {self.fmt.upper()} listing; "
            "pass --overwrite to replace the file"
        )


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
    codec = _Codec(fmt, shape)
    lines = open_lines(path, codec.header, stdout=stdout)
    out = ListingOutput(lines, shape=shape, fmt=fmt)
    if not lines.resumable:
        return out
    try:
        saved = _load_state(out.state_path) if lines.existed and resume else None
        if saved is not None:
            _check_state(saved, wanted, lines.name, fmt)
            _scan(out, codec)
            out.state, out.resumed = saved, True
        else:
            if lines.existed and resume and _has_items(lines, codec):
                raise OutputError(
                    f"{lines.name} holds data but no {out.state_path} saying which listing "
                    "it is; pass --overwrite to replace it or choose another file"
                )
            lines.start(afresh=True)
            out.state = wanted
            write_atomic(out.state_path, wanted.to_bytes(), mode=lines.mode())
    except BaseException:
        lines.close()
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


def _has_items(lines: LineFile, codec: _Codec) -> bool:
    lines.stream.seek(0)
    found = complete_lines(lines.stream, lines.name)
    return any(raw.strip() and raw != codec.header for _, _, raw in found)


def _scan(out: ListingOutput, codec: _Codec) -> None:
    """Read the ids OUTPUT holds; cut a torn last line away. Only a killed run leaves a
    line unterminated (lines are written whole), and the state was not saved after it,
    so its page is fetched again: the line is cut, even when it parses."""
    scan = Scan(out.lines, codec, keep_unterminated=False)
    for _, key in scan:
        out.existing += 1
        if key:
            out.keys.add(key)
    out.torn = scan.torn
    scan.repair()
