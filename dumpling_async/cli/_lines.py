"""The line file both file outputs are (``profiles``' in ``_output``, the listings' in
``_listing_files``): how it is opened, and how what a regular one holds is read back
through a small codec per kind of line, its torn tail cut away.

Lines are written whole and flushed as written, so a killed run can only leave its last
line unterminated: the scan is where both outputs find it and repair it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from typing import IO, Generic, Protocol, TypeVar

import attrs

from ._files import OutputError, complete_lines, lock_output

__all__ = ["Codec", "LineFile", "Scan", "open_lines"]

T = TypeVar("T", covariant=True)
R = TypeVar("R")


@attrs.define(slots=True)
class LineFile:
    """An output open for appending: stdout, a pipe or device written plainly, or a
    regular file locked against a concurrent run (``resumable``: it can be scanned)."""

    stream: IO[bytes] = attrs.field(repr=False)
    name: str
    header: bytes = attrs.field(repr=False)  # its first line (CSV), or b""
    owned: bool = True  # closed with the output (stdout is not)
    resumable: bool = False
    existed: bool = False  # there before this run opened it

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        self.stream.flush()

    def start(self, *, afresh: bool = False) -> None:
        """Ready to append (emptied first when *afresh*): the header, if the file is empty."""
        if afresh:
            self.stream.truncate(0)
        self.stream.seek(0, os.SEEK_END)
        if self.stream.tell() == 0:
            self.write(self.header)

    def mode(self) -> int:
        return stat.S_IMODE(os.fstat(self.stream.fileno()).st_mode)

    def close(self) -> None:
        if self.owned:
            self.stream.close()
        else:
            with contextlib.suppress(OSError):
                self.stream.flush()


def open_lines(path: str | None, header: bytes, *, stdout: IO[bytes] | None = None) -> LineFile:
    """Open *path* (None or ``-``: *stdout*) to append lines. Anything but a regular file
    gets its header at once; a regular file is locked and left as it is, for the caller
    to scan or empty (``LineFile.start``)."""
    if path is None or path == "-":
        out = LineFile(stdout or sys.stdout.buffer, "<stdout>", header, owned=False)
        out.write(header)
        return out
    try:
        try:
            fd, existed = os.open(path, os.O_RDWR), True
        except FileNotFoundError:  # made here (through a symlink too, to its target)
            fd, existed = os.open(path, os.O_RDWR | os.O_CREAT, 0o644), False
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    stream = open(fd, "r+b")  # noqa: SIM115 - owned by the returned LineFile
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/null, a FIFO: plain writing
            stream.close()
            return _plain(path, header)
        lock_output(fd, path)
    except BaseException:
        stream.close()
        raise
    return LineFile(stream, path, header, resumable=True, existed=existed)


def _plain(path: str, header: bytes) -> LineFile:
    try:
        stream = open(path, "wb")  # noqa: SIM115 - owned by the returned LineFile
    except OSError as exc:
        raise OutputError(f"cannot open {path}: {exc.strerror}") from None
    out = LineFile(stream, path, header)
    out.write(header)
    return out


class Codec(Protocol[T]):
    """What one kind of line file's lines mean."""

    @property
    def header(self) -> bytes:
        """Its first line (CSV's column names), or b""."""

    def parse(self, body: bytes, /) -> T | None:
        """The record on a line (without its newline), or None: not a line of this kind."""

    def ours(self, torn: bytes, number: int, /) -> bool:
        """Whether an unterminated last line that does not parse may be the start of one
        this command line wrote (so cutting it loses nothing)."""

    def foreign(self, path: str, number: int, /) -> str:
        """What to say of a line that is not of this kind."""


class Scan(Generic[R]):
    """Reads a regular file's records back (``for number, record in scan``), checking
    each; then ``repair`` cuts what follows the last line to keep.

    With *keep_unterminated*, a last line that parses but lost its newline is kept (its
    newline restored by ``repair``); without it, any unterminated last line is torn.
    """

    def __init__(self, out: LineFile, codec: Codec[R], *, keep_unterminated: bool) -> None:
        self._out, self._codec, self._keep_unterminated = out, codec, keep_unterminated
        self.keep_end = 0  # offset just past the last line to keep as it is
        self.torn = False  # a torn last line was found (and is cut by ``repair``)
        self._needs_newline = False

    def __iter__(self) -> Iterator[tuple[int, R]]:
        out, codec = self._out, self._codec
        header = codec.header
        out.stream.seek(0)
        for number, end, raw in complete_lines(out.stream, out.name):
            complete = raw.endswith(b"\n")
            if not complete and not self._keep_unterminated:
                self.torn = True  # only a killed run leaves a line unterminated
                return
            body = raw.rstrip(b"\r\n")
            if number == 1 and header and complete:
                if raw != header:
                    raise OutputError(
                        f"{out.name} does not start with the CSV header this command writes; "
                        "pass --overwrite to replace it or choose another file"
                    )
                self.keep_end = end
                continue
            if not body.strip() and complete:
                self.keep_end = end
                continue
            record = codec.parse(body)
            if record is None:
                if not complete and codec.ours(body, number):
                    self.torn = True
                    return
                raise OutputError(codec.foreign(out.name, number))
            self._needs_newline = not complete  # a whole record that lost its newline
            self.keep_end = end
            yield number, record

    def repair(self) -> None:
        """Cut a torn tail away, restore a kept last line's newline; ready to append."""
        stream = self._out.stream
        stream.truncate(self.keep_end)
        if self._needs_newline:
            stream.seek(0, os.SEEK_END)
            self._out.write(b"\n")
        self._out.start()
