"""A SQLite database as the output of ``profiles`` (``-o results.db``): a row per distinct
handle, kept across runs and input lists, so a handle bought recently is never bought
again, and resuming is a query instead of a scan.

``results`` holds each handle's latest outcome: status, error, whether it was charged
(1, 0, or NULL: maybe), when it was fetched and the raw JSON; an error never replaces a
profile (a refresh that fails keeps the older one), and a position that was never
attempted (a budget reached, a batch stopped) writes no row. ``sent`` is the write-ahead
record: a handle is put there, committed, just before each request for it is sent, and
taken out with the row that stores its result; a row still there when a run starts was
in flight when a run died, so it is *unanswered* (maybe charged) and not bought again
unless asked. WAL journaling with ``synchronous=NORMAL``: a commit is in the kernel's
hands at once, without an fsync per row. Results are committed in small batches (see
``_BATCH``), their handles still recorded as sent until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

import orjson

from .._core.converter import structure_profile
from .._errors import InvalidResponseError
from .._results import ProfileResult
from ._files import OutputError, csv_line, dumps_record
from ._input import INVALID_PREFIX, InputEntry, entry_key
from ._output import (
    CSV_COLUMNS,
    NOT_ATTEMPTED,
    UNANSWERED,
    UNANSWERED_MESSAGE,
    OutputFormat,
    ResumeState,
    Retry,
    _disposition,
    _error_fields,
    _Line,
    csv_error_line,
    csv_profile_line,
)
from ._sqlite import connect, errors, has_table, lock, open_to_read, transaction, write_out

__all__ = ["DatabaseOutput", "export", "export_bytes", "rows"]

ENDPOINT: Final = "profile"

# What a resume asks of each key, answered from the index alone (the rows are a
# kilobyte or two each): a resume of 1,000,000 rows took 5.0-7.9 s with it against
# 7.0-8.9 s without (alternated, beside a test run). Added to a database made before it
# when that is opened to write (once: about 3 s a million rows), as is any table.
_OUTCOME_INDEX: Final = (
    "CREATE INDEX IF NOT EXISTS results_outcome ON results (endpoint, key, ok, error_type, "
    "fetched_at)"
)
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS results (
        endpoint TEXT NOT NULL,
        key TEXT NOT NULL,          -- the normalised handle ('invalid:' + text: an invalid input)
        handle TEXT NOT NULL,
        input TEXT NOT NULL,
        line INTEGER,
        ok INTEGER NOT NULL,
        error_type TEXT,
        error_status INTEGER,
        error_message TEXT,
        charged INTEGER,            -- 1, 0, or NULL: maybe (sent, never answered)
        fetched_at REAL NOT NULL,   -- Unix time the outcome arrived
        raw BLOB,                   -- the profile's JSON, or what a broken 200 carried
        UNIQUE (endpoint, key)      -- rows of a kilobyte or two: a rowid table, an index
    )""",
    """CREATE TABLE IF NOT EXISTS sent (
        endpoint TEXT NOT NULL,
        key TEXT NOT NULL,
        at REAL NOT NULL,           -- Unix time it was about to be sent
        earlier INTEGER NOT NULL,   -- 1: sent by an earlier run, which died before its answer
        PRIMARY KEY (endpoint, key)
    ) WITHOUT ROWID""",
    _OUTCOME_INDEX,
)


# Results wait in memory and are written in one transaction after this many or, by a
# timer, this long: a kill loses at most the answers of the last quarter second, and
# those handles stay recorded as sent (maybe charged, never bought twice). Each record
# of a send is committed alone, before its request goes: a commit that carried the
# results too wrote their pages once per send (89 against 45 us a handle, measured).
_BATCH: Final = 64
_BATCH_SECONDS: Final = 0.25
# An error never replaces a profile: a refresh that fails keeps the older one.
_UPSERT: Final = (
    "INSERT INTO results (endpoint, key, handle, input, line, ok, error_type, error_status, "
    "error_message, charged, fetched_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (endpoint, key) DO UPDATE SET handle = excluded.handle, "
    "input = excluded.input, line = excluded.line, ok = excluded.ok, "
    "error_type = excluded.error_type, error_status = excluded.error_status, "
    "error_message = excluded.error_message, charged = excluded.charged, "
    "fetched_at = excluded.fetched_at, raw = excluded.raw "
    "WHERE excluded.ok OR NOT results.ok"
)
_OUTCOME: Final = (
    "SELECT ok, error_type, fetched_at, rowid FROM results WHERE endpoint = ? AND key = ?"
)
_EARLIER: Final = "SELECT 1 FROM sent WHERE endpoint = ? AND key = ? AND earlier"
_OUTCOMES: Final = (
    "SELECT key, ok, error_type, fetched_at, rowid FROM results WHERE endpoint = ? AND key IN ({})"
)
_EARLIERS: Final = "SELECT key FROM sent WHERE endpoint = ? AND earlier AND key IN ({})"
_AHEAD: Final = 256  # keys per query read ahead (well under SQLite's 999 parameters)


class DatabaseOutput:
    """The open database: answers which handles are done, stores results, and records
    each handle before it is sent."""

    def __init__(self, path: str, *, resume: bool, retry: Retry, max_age: float | None) -> None:
        self.name = path
        self._retry = retry
        self._waiting: list[tuple[tuple[str, tuple[Any, ...]], ...]] = []  # results to write
        self._held: set[str] = set()  # their keys
        self._written = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None  # writes what is waiting
        self._earlier = 0  # handles a dead run left recorded as sent
        self._ahead: dict[str, tuple[Any, ...] | None] = {}  # read ahead (prefetch), by key
        self._ahead_earlier: set[str] = set()  # of them, sent by a run that died
        self.unanswered_retried = 0  # of them, looked up again (--retry-unanswered)
        self._cutoff = time.time() - max_age if max_age is not None else None
        self._lock_fd = lock(path)
        try:
            self._db = connect(path, _SCHEMA)
            with errors(path), transaction(self._db):
                if not resume:
                    self._db.execute("DELETE FROM results WHERE endpoint = ?", (ENDPOINT,))
                    self._db.execute("DELETE FROM sent WHERE endpoint = ?", (ENDPOINT,))
                # Whatever is still recorded as sent was in flight when a run died.
                self._db.execute("UPDATE sent SET earlier = 1 WHERE endpoint = ?", (ENDPOINT,))
            with errors(path):
                self.state = self._state(resume)
                # Rows past this one are this run's (a rowid table without AUTOINCREMENT
                # numbers new rows past the largest; none is deleted while it runs).
                (self._last_earlier,) = self._db.execute(
                    "SELECT coalesce(max(rowid), 0) FROM results"
                ).fetchone()
            # Nothing held at the start (a new database, or --overwrite): every key is
            # looked up, and a repeat is the bulk engine's, so nothing need be asked.
            self._empty = self._last_earlier == 0 and self._earlier == 0
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _state(self, resume: bool) -> ResumeState:
        """What the database holds, in the terms a file's scan reports."""
        state = ResumeState(resumed=resume)
        db, cutoff = self._db, self._cutoff
        for ok, error_type, stale, count in db.execute(
            "SELECT ok, error_type, fetched_at < ?, count(*) FROM results WHERE endpoint = ? "
            "GROUP BY 1, 2, 3",
            (cutoff if cutoff is not None else -1.0, ENDPOINT),
        ):
            if stale:
                state.dropped += count  # older than --max-age: looked up again
            elif ok:
                state.kept_ok += count
            elif error_type != "InvalidHandleError" and not _keep(error_type, self._retry):
                state.dropped += count
            else:
                state.kept_errors += count
        (self._earlier,) = db.execute(
            "SELECT count(*) FROM sent WHERE endpoint = ? AND earlier", (ENDPOINT,)
        ).fetchone()
        if self._retry.unanswered:
            self.unanswered_retried = self._earlier
        else:
            state.unanswered = self._earlier
        held = state.kept_ok + state.kept_errors + state.dropped + self._earlier
        state.resumed = resume and held > 0
        return state

    # -- what the run asks ------------------------------------------------------------
    def prefetch(self, keys: Sequence[str]) -> None:
        """Read what is kept for *keys* in a query per ``_AHEAD`` of them, for the ``get``
        of each that follows (a query per key is most of a resume's time)."""
        if self._empty:
            return
        db = self._db
        ahead: dict[str, tuple[Any, ...] | None] = dict.fromkeys(keys)  # None: no row
        earlier: set[str] = set()
        with errors(self.name):
            for at in range(0, len(keys), _AHEAD):
                chunk = keys[at : at + _AHEAD]
                marks = ",".join("?" * len(chunk))
                for key, *row in db.execute(_OUTCOMES.format(marks), (ENDPOINT, *chunk)):
                    ahead[key] = tuple(row)
                if self._earlier:
                    found = db.execute(_EARLIERS.format(marks), (ENDPOINT, *chunk))
                    earlier.update(k for (k,) in found)
        self._ahead, self._ahead_earlier = ahead, earlier

    def get(self, key: str) -> bool | None:
        """Whether *key* is done (its ok flag), or None: look it up. A key this run
        answered is None too: ``iter_profiles`` knows it, and reports it as a repeat
        (``first_index``) without a request."""
        db = self._db
        if self._empty or key in self._held:  # held nothing; or answered, not written
            return None
        if key in self._ahead:  # read ahead (once: a repeat is asked afresh)
            row = self._ahead.pop(key)
            if key in self._ahead_earlier:
                return None if self._retry.unanswered else False  # maybe charged: kept
        else:
            if self._earlier and db.execute(_EARLIER, (ENDPOINT, key)).fetchone():
                return None if self._retry.unanswered else False
            row = db.execute(_OUTCOME, (ENDPOINT, key)).fetchone()
        if row is None:
            return None  # never looked up
        ok, error_type, fetched_at, rowid = row
        if rowid > self._last_earlier:
            return None  # added by this run
        if self._cutoff is not None and fetched_at < self._cutoff:
            return None  # older than --max-age
        if ok or error_type == "InvalidHandleError":
            return bool(ok)
        return False if _keep(error_type, self._retry) else None

    def sent(self, key: str) -> None:
        """Record *key* as about to be sent: committed before it goes."""
        with errors(self.name), transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO sent VALUES (?, ?, ?, 0)", (ENDPOINT, key, time.time())
            )

    def record(self, entry: InputEntry, result: ProfileResult) -> None:
        """Store *result* as its entry's outcome (replacing an older one, but never a
        profile by an error) and end its record of being sent, as one unit: kept in memory
        and written with the others waiting, after ``_BATCH`` of them or
        ``_BATCH_SECONDS``."""
        key = entry_key(entry.text)
        profile, error = result.profile, result.error
        if profile is None and type(error).__name__ in NOT_ATTEMPTED:
            # Not attempted: no row (an older one stays), and a dead run's record of a
            # send stays too (this run did not get to send it: still maybe charged).
            forget = "DELETE FROM sent WHERE endpoint = ? AND key = ? AND NOT earlier"
            self._wait(key, (forget, (ENDPOINT, key)))
            return
        valid = not key.startswith(INVALID_PREFIX)
        handle = result.handle if valid else entry.text
        fields: dict[str, Any] = {} if profile is not None else _error_fields(error)
        raw: bytes | None = None
        if profile is not None:
            raw = orjson.dumps(profile.raw)
        elif isinstance(error, InvalidResponseError) and error.body is not None:
            raw = error.body
        charged: int | None = 1 if profile is not None else 0
        if fields.get("maybe_charged"):
            charged = None
        elif isinstance(error, InvalidResponseError) and error.status == 200:
            charged = 1  # a paid 200 that did not parse
        values = (
            ENDPOINT,
            key,
            handle,
            entry.text,
            entry.line,
            1 if profile is not None else 0,
            fields.get("type"),
            fields.get("status"),
            fields.get("message"),
            charged,
            time.time(),
            raw,
        )
        self._wait(
            key,
            (_UPSERT, values),
            ("DELETE FROM sent WHERE endpoint = ? AND key = ?", (ENDPOINT, key)),
        )

    def _wait(self, key: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Keep *statements* (*key*'s result) for the next write; write when enough wait
        or the last write is old, else arm the timer that will."""
        self._waiting.append(statements)
        self._held.add(key)
        full = len(self._waiting) >= _BATCH
        if full or time.monotonic() - self._written >= _BATCH_SECONDS:
            self._write()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop to time it (a script): write now
                self._write()
            else:
                self._timer = loop.call_later(_BATCH_SECONDS, self._flush)

    def _flush(self) -> None:
        self._timer = None
        with contextlib.suppress(OutputError):
            self._write()  # if it fails, the next write or close() says so

    def _write(self) -> None:
        """Write the results waiting, in one transaction."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, []
        self._written = time.monotonic()
        if not waiting:
            return
        try:
            with errors(self.name), transaction(self._db):
                for unit in waiting:
                    for sql, parameters in unit:
                        self._db.execute(sql, parameters)
        except BaseException:
            self._waiting[:0] = waiting  # kept for the next write, or close(), to retry
            raise
        self._held.clear()

    def close(self) -> None:
        """Write what is waiting and close (a write that fails is an OutputError)."""
        try:
            self._write()
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            os.close(self._lock_fd)


def _keep(error_type: str | None, retry: Retry) -> bool:
    return _disposition(_Line("", False, error_type), retry)


# -- reading it back (export) ---------------------------------------------------------------

# (handle, input, line, ok, error type, error status, error message, charged, raw)
Row = tuple[str, str, int | None, int, str | None, int | None, str | None, int | None, bytes | None]


def rows(db: sqlite3.Connection) -> Iterator[Row]:
    """Every stored outcome, then every unanswered handle that has none, in key order."""
    if not has_table(db, "results"):
        return  # only listings were written to it
    try:
        yield from db.execute(
            "SELECT handle, input, line, ok, error_type, error_status, error_message, charged, "
            "raw FROM results WHERE endpoint = ? ORDER BY key",
            (ENDPOINT,),
        )
        for (key,) in db.execute(
            "SELECT key FROM sent WHERE endpoint = ? AND key NOT IN "
            "(SELECT key FROM results WHERE endpoint = ?) ORDER BY key",
            (ENDPOINT, ENDPOINT),
        ):
            yield (key, key, None, 0, UNANSWERED, None, UNANSWERED_MESSAGE, None, None)
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"cannot read the database: {exc}") from None


def export_bytes(row: Row, fmt: OutputFormat) -> bytes:
    """One output line (JSONL or CSV, as ``profiles`` writes them) for a stored row."""
    handle, given, line, ok, error_type, status, message, charged, raw = row
    if fmt == "csv":
        if ok and raw is not None:
            return csv_profile_line(handle, structure_profile(orjson.loads(raw)))
        return csv_error_line(handle, f"{error_type}: {message}")
    record: dict[str, Any] = {"handle": handle, "input": given, "index": None, "line": line}
    record["ok"] = bool(ok)
    if ok and raw is not None:
        record["profile"] = orjson.loads(raw)
    else:
        error: dict[str, Any] = {"type": error_type, "status": status, "message": message}
        if charged is None:
            error["maybe_charged"] = True
        if raw is not None:
            error["body"] = raw.decode("utf-8", "replace")
        record["error"] = error
    return dumps_record(record) + b"\n"


def export(path: str, output: str | None, fmt: OutputFormat) -> int:
    """Write every row of the database at *path* to *output* (None: stdout); the count."""
    db = open_to_read(path)  # before OUTPUT is touched
    header = csv_line(list(CSV_COLUMNS)) if fmt == "csv" else b""
    return write_out(db, output, header, (export_bytes(row, fmt) for row in rows(db)))
