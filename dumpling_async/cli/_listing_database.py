"""A SQLite database as the output of the listing commands (``videos HANDLE -o
results.db``), beside ``profiles``' tables in the same file if it has them.

``listings`` holds, per listing (command and canonical subject), the cursor of the first
page not completely stored and whether the listing ended; ``items`` its items, one row
per item id, with the raw JSON. A page's items and the cursor after it are committed in
one transaction, so a killed run leaves the database at a page's end: the rerun starts
at the saved cursor and buys again at most the page that was in flight, with no torn
line to cut and no state file to keep in step. Many listings share one database; a
rerun of one continues it, ``--overwrite`` starts that one afresh and leaves the rest.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any, Final

import orjson

from .._core.paging import structure_item
from ._files import OutputError, csv_line, dumps_record
from ._listing_files import ListingState
from ._listing_items import ItemShape, LineFormat, item_line
from ._sqlite import connect, errors, has_table, lock, open_to_read, transaction, write_out

__all__ = ["ListingDatabase", "describe_held", "export_listing", "held_listings", "listings_in"]

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS listings (
        command TEXT NOT NULL,
        subject TEXT NOT NULL,      -- canonical: the normalised handle, video URL or query
        cursor TEXT,                -- the first page not completely stored (NULL: the first)
        finished INTEGER NOT NULL,  -- 1: the listing ended; a rerun has nothing to fetch
        PRIMARY KEY (command, subject)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS items (
        command TEXT NOT NULL,
        subject TEXT NOT NULL,
        item_id TEXT,               -- NULL: the API sent the item without an id
        fetched_at REAL NOT NULL,   -- Unix time its page arrived
        raw BLOB NOT NULL,          -- the item's JSON as the API sent it
        UNIQUE (command, subject, item_id)
    )""",
)


class ListingDatabase:
    """One listing in an open database: the ids it holds, where it continues, and the
    writes of a page, committed with the cursor after it (a ``_listing_files.ListingSink``)."""

    def __init__(self, path: str, wanted: ListingState, *, resume: bool) -> None:
        self.name = path
        self.keys: set[str] = set()
        self.existing = 0
        self.torn = False  # a page not committed is rolled back: nothing is ever torn
        self.resumed = False
        self._listing = (wanted.command, wanted.subject)
        self._lock_fd = lock(path)
        try:
            self._db = connect(path, _SCHEMA)
            try:
                with errors(path), transaction(self._db):
                    self.state = self._open(wanted, resume)
            except BaseException:
                self._db.close()
                raise
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self, wanted: ListingState, resume: bool) -> ListingState:
        db, listing = self._db, self._listing
        if not resume:
            db.execute("DELETE FROM items WHERE command = ? AND subject = ?", listing)
            db.execute("DELETE FROM listings WHERE command = ? AND subject = ?", listing)
        saved = db.execute(
            "SELECT cursor, finished FROM listings WHERE command = ? AND subject = ?", listing
        ).fetchone()
        if saved is None:
            db.execute("INSERT INTO listings VALUES (?, ?, ?, 0)", (*listing, wanted.cursor))
            return ListingState(*listing, "sqlite", wanted.cursor)
        for (item_id,) in db.execute(
            "SELECT item_id FROM items WHERE command = ? AND subject = ?", listing
        ):
            self.existing += 1
            if item_id is not None:
                self.keys.add(item_id)
        self.resumed = True
        return ListingState(*listing, "sqlite", saved[0], bool(saved[1]))

    @property
    def state_path(self) -> str:
        return f"{self.name} (listing `{' '.join(self._listing)}`)"

    def add(self, item: Any, key: str | None) -> None:
        """Store *item*, in the transaction its page's cursor will commit."""
        db = self._db
        with errors(self.name):
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?)",
                (*self._listing, key, time.time(), dumps_record(item.raw)),
            )

    def save(self, cursor: str | None, *, finished: bool) -> None:
        """Commit the items stored since the last call with the cursor after them."""
        db, state = self._db, self.state
        unchanged = state.cursor == cursor and state.finished == finished
        if unchanged and not db.in_transaction:
            return
        with errors(self.name):
            if not db.in_transaction:
                db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE listings SET cursor = ?, finished = ? WHERE command = ? AND subject = ?",
                (cursor, int(finished), *self._listing),
            )
            db.execute("COMMIT")
        state.cursor, state.finished = cursor, finished

    def close(self) -> None:
        """Commit what is stored (its ids skip it when the rerun meets it again) and close."""
        try:
            with errors(self.name):
                if self._db.in_transaction:
                    self._db.execute("COMMIT")
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            os.close(self._lock_fd)


# -- reading it back (export) ---------------------------------------------------------------


def held_listings(db: sqlite3.Connection) -> list[tuple[str, str, bool, int]]:
    """The listings a database holds: command, subject, whether complete, items."""
    if not has_table(db, "listings"):
        return []
    try:
        found = db.execute(
            "SELECT l.command, l.subject, l.finished, count(i.rowid) FROM listings l "
            "LEFT JOIN items i ON i.command = l.command AND i.subject = l.subject "
            "GROUP BY l.command, l.subject ORDER BY l.command, l.subject"
        )
        return [(command, subject, bool(done), count) for command, subject, done, count in found]
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"cannot read the database: {exc}") from None


def describe_held(db: sqlite3.Connection) -> str:
    """The listings held, for a message ('none' when there are none)."""
    held = held_listings(db)
    return "; ".join(f"{c} {s} ({n} items)" for c, s, _, n in held) or "none"


def listings_in(path: str) -> str | None:
    """The listings the database at *path* holds, for a message (None: none)."""
    db = open_to_read(path)
    try:
        return describe_held(db) if held_listings(db) else None
    finally:
        db.close()


def _items(db: sqlite3.Connection, listing: tuple[str, str]) -> Iterator[tuple[str | None, bytes]]:
    try:
        yield from db.execute(
            "SELECT item_id, raw FROM items WHERE command = ? AND subject = ? ORDER BY rowid",
            listing,
        )
    except sqlite3.DatabaseError as exc:
        raise OutputError(f"cannot read the database: {exc}") from None


def _line(shape: ItemShape, key: str | None, raw: bytes, fmt: LineFormat) -> bytes:
    """The line the listing command writes to a file for this item."""
    if fmt == "jsonl":
        return raw + b"\n"
    item = structure_item(shape.model, orjson.loads(raw))  # as the pager made it
    if item is None:
        raise OutputError("the database holds an item that is not a JSON object")
    return item_line(shape, item, key, fmt)


def export_listing(
    path: str, listing: tuple[str, str], shape: ItemShape, output: str | None, fmt: LineFormat
) -> int:
    """Write the items of *listing* (command, subject) held at *path* to *output* (None:
    stdout) as the listing command writes them to a file; the count."""
    db = open_to_read(path)  # before OUTPUT is touched
    try:
        held = {(command, subject) for command, subject, _, _ in held_listings(db)}
        if listing not in held:
            raise OutputError(
                f"{path} holds no listing `{' '.join(listing)}`; it holds: {describe_held(db)}"
            )
    except BaseException:
        db.close()
        raise
    header = csv_line(list(shape.columns)) if fmt == "csv" else b""
    lines = (_line(shape, key, raw, fmt) for key, raw in _items(db, listing))
    return write_out(db, output, header, lines)
