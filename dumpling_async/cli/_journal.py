"""The write-ahead journal beside a resumable output: each handle is recorded there before
its first request is sent, so a run killed with requests in flight leaves behind which
handles may have been charged without an answer.

``OUT.sent`` holds one JSON string per line (the normalised handle), written unbuffered
in the task that sends the request, just before it is sent: a killed process loses
nothing the kernel was handed, and a kill mid-write leaves a torn last line, ignored.
A resume reads it and puts every handle it names that OUT does not answer into OUT as
*unanswered* (maybe charged), unless told to buy them again; the journal then starts
empty. A handle sent and answered is in both; the output is what counts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import IO

import orjson

from .._core.hooks import ClientHooks, RequestEvent
from .._core.seen import SeenKeys
from ._files import OutputError

__all__ = ["Journal", "journal_path", "read_journal"]

SUFFIX = ".sent"


def journal_path(output: str) -> str:
    return output + SUFFIX


def read_journal(path: str) -> Iterator[str]:
    """The handles *path* records, in order, each once (none if it does not exist)."""
    seen = SeenKeys()  # a repeat is a retry's record; ~25 bytes a handle, however many
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        for raw in stream:
            if not raw.endswith(b"\n"):
                break  # torn by a kill mid-write: that request had not been sent
            try:
                handle = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise OutputError(
                    f"{path} is not a dumpling-async journal; remove it to resume without it"
                ) from None
            if isinstance(handle, str) and seen.add(handle, 0):
                yield handle


class Journal(ClientHooks):
    """Records each handle as its first request is about to be sent (a client hook,
    given to the client before the output is open: it records nothing until told where:
    a file, ``open``, or a database's own record, ``attach``)."""

    def __init__(self) -> None:
        self._stream: IO[bytes] | None = None
        self._record: Callable[[str], None] | None = None
        self.path: str | None = None
        self.failed: Exception | None = None

    def open(self, path: str) -> None:
        """Start recording into *path*, emptied first."""
        try:
            # Unbuffered: each record is in the kernel's hands before the request goes.
            stream = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise OutputError(f"cannot open {path}: {exc.strerror}") from None
        self._stream, self.path = stream, path

        def record(handle: str) -> None:
            stream.write(orjson.dumps(handle) + b"\n")

        self._record = record

    def attach(self, record: Callable[[str], None], name: str) -> None:
        """Record through *record* (it must have stored the handle when it returns)."""
        self._record, self.path = record, name

    def on_request(self, event: RequestEvent) -> None:
        record = self._record
        if record is None or event.attempt != 1 or self.failed is not None:
            return
        try:
            record(event.target)
        except Exception as exc:  # an OSError, or the database's own error
            self.failed = exc  # the run stops sending (BulkRun checks) and says why
            raise

    def close(self, *, remove: bool) -> None:
        """Stop recording; *remove*: the output answers every handle recorded (a file)."""
        stream, self._stream, self._record = self._stream, None, None
        if stream is None or self.path is None:
            return
        stream.close()
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
