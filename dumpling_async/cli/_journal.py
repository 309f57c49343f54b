"""The write-ahead journal beside a resumable output file: each handle is recorded there
just before each of its requests is sent, so a run killed with requests in flight leaves
behind which handles may have been charged without an answer.

``OUT.sent`` holds one JSON string per line, the normalised handle, written unbuffered by
the bulk engine's ``before_send`` (``iter_profiles``): a killed process loses nothing the
kernel was handed, and a record that cannot be written whole stops the batch before the
request goes. A resume of an OUT that exists reads it and gives every handle it names
that OUT does not answer an *unanswered* line (maybe charged), unless told to buy them
again; the journal then starts afresh. (A journal beside an OUT that is gone belongs to
nothing: it is not read.) A database output keeps the same record in a table of its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import IO

import orjson

from .._core.seen import SeenKeys
from ._files import OutputError

__all__ = ["Journal", "journal_path", "read_journal"]

SUFFIX = ".sent"


def journal_path(output: str) -> str:
    return output + SUFFIX


def read_journal(path: str) -> Iterator[str]:
    """The handles *path* records, each once (none if there is no journal)."""
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    seen = SeenKeys()  # a repeat is a retry's record; ~25 bytes a handle, however many
    with stream:
        for raw in stream:
            if not raw.endswith(b"\n"):
                break  # torn by a kill mid-write: that request had not been sent
            handle = _parse(raw, path)
            if isinstance(handle, str) and seen.add(handle, 0):
                yield handle


def _parse(raw: bytes, path: str) -> object:
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        raise OutputError(
            f"{path} is not a dumpling-async journal; remove it to resume without it"
        ) from None


class Journal:
    """Records each handle just before a request for it is sent: into a file (``open``)
    or through a database's own record (``attach``). ``record`` raises when it could not
    record, so that the request is not sent."""

    def __init__(self) -> None:
        self._stream: IO[bytes] | None = None
        self._record: Callable[[str], None] | None = None
        self.path: str | None = None

    def open(self, path: str) -> None:
        """Start recording into *path*, emptied first."""
        try:
            # Unbuffered: each record is in the kernel's hands before the request goes.
            stream = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise OutputError(f"cannot open {path}: {exc.strerror}") from None
        self._stream, self.path = stream, path

        def record(handle: str) -> None:
            data = orjson.dumps(handle) + b"\n"
            if stream.write(data) != len(data):  # a full disk: the tail is torn
                raise OSError(f"could not write all of a record to {path}")

        self._record = record

    def attach(self, record: Callable[[str], None], name: str) -> None:
        """Record through *record* (it must have stored the handle when it returns)."""
        self._record, self.path = record, name

    def record(self, handle: str) -> None:
        if self._record is not None:
            self._record(handle)

    def close(self, *, remove: bool) -> None:
        """Stop recording; *remove*: the output answers every handle recorded (a file)."""
        stream, self._stream, self._record = self._stream, None, None
        if stream is None or self.path is None:
            return
        stream.close()
        if remove:
            with contextlib.suppress(OSError):  # a journal left behind only costs a read
                os.unlink(self.path)
