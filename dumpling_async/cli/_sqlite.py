"""The SQLite file the command line writes to (``-o results.db``), shared by ``profiles``
(``_database``) and the listing commands (``_listing_database``): opening and locking
it, refusing a file that is not ours or of another version, transactions, and database
errors as ``OutputError``. Each writer brings its own tables, created if missing when
it opens the file to write, so one database holds profiles and listings side by side.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Final

from ._files import OutputError, lock_output

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "connect",
    "errors",
    "has_table",
    "lock",
    "open_to_read",
    "transaction",
    "write_out",
]

# PRAGMA application_id: marks a file as this tool's database ("DmpA").
APPLICATION_ID: Final = 0x446D7041
# Tables added later are created when a file is opened to write, so they do not change
# the version: a version is a change to what is there.
SCHEMA_VERSION: Final = 1


@contextlib.contextmanager
def errors(path: str) -> Iterator[None]:
    """A database error (a full disk, a lock held too long) as an OutputError."""
    try:
        yield
    except sqlite3.Error as exc:
        raise OutputError(f"cannot write {path}: {exc}") from None


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One transaction (the connection autocommits otherwise: ``with db`` alone would
    not group statements)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def lock(path: str) -> int:
    """Hold *path* against a second run (its own descriptor: SQLite's locks are others)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    try:
        lock_output(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def _refusing(db: sqlite3.Connection, path: str) -> Iterator[None]:
    """Close *db* when what follows fails: a file SQLite cannot read is not ours."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        db.close()
        raise OutputError(f"{path} is not a dumpling-async database ({exc})") from None
    except BaseException:
        db.close()
        raise


def connect(path: str, schema: Sequence[str]) -> sqlite3.Connection:
    """Open *path* to write, with *schema*'s tables (``IF NOT EXISTS``) made in it; an
    empty file becomes one of ours, anything else is refused."""
    try:
        db = sqlite3.connect(path, isolation_level=None)  # transactions: transaction()
    except sqlite3.Error as exc:
        raise OutputError(f"cannot open {path}: {exc}") from None
    with _refusing(db, path):
        application_id, version = _identity(db)
        if application_id == 0 and _is_empty(db):
            with transaction(db):
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif application_id != APPLICATION_ID:
            raise OutputError(
                f"{path} is a database, but not a dumpling-async one; choose another file"
            )
        elif version != SCHEMA_VERSION:
            raise OutputError(
                f"{path} has schema version {version}; this dumpling-async reads version "
                f"{SCHEMA_VERSION}: export it with the version that wrote it"
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        with transaction(db):
            for statement in schema:
                db.execute(statement)
    return db


def open_to_read(path: str) -> sqlite3.Connection:
    """*path*, read-only, if it is a database of ours (else an OutputError)."""
    if not os.path.isfile(path):
        raise OutputError(f"cannot read {path}: not a file")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise OutputError(f"cannot read {path}: {exc}") from None
    with _refusing(db, path):
        if _identity(db) != (APPLICATION_ID, SCHEMA_VERSION):
            raise OutputError(f"{path} is not a dumpling-async database of this version")
    return db


def write_out(
    db: sqlite3.Connection, output: str | None, header: bytes, lines: Iterable[bytes]
) -> int:
    """Write *header* and *lines* (read from *db*, which is closed after) to *output*
    (None: stdout); the number of lines."""
    count = 0
    target: IO[bytes]
    if output is None:
        target = sys.stdout.buffer
    else:
        try:
            target = open(output, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            db.close()
            raise OutputError(f"cannot open {output}: {exc.strerror}") from None
    try:
        target.write(header)
        for line in lines:
            target.write(line)
            count += 1
        target.flush()
    finally:
        db.close()
        if output is not None:
            target.close()
    return count


def has_table(db: sqlite3.Connection, name: str) -> bool:
    """Whether *name* is there (a database only a listing wrote has no profiles)."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _identity(db: sqlite3.Connection) -> tuple[int, int]:
    (application_id,) = db.execute("PRAGMA application_id").fetchone()
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return application_id, version


def _is_empty(db: sqlite3.Connection) -> bool:
    (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return int(tables) == 0
