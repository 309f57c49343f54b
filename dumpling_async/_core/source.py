"""The input of a bulk call, read one item at a time when the engine has room.

A plain iterable is read inline. An async iterable (a database cursor, a streamed body,
a pipe) is read by a task of its own, one item ahead at most, so results that finish
while the next item is slow to come are yielded at once instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator

__all__ = ["Source"]


class Source:
    """One bulk call's input. ``take()`` gives the next item when one is at hand; when
    it gives none, ``ended`` says whether more may come (then ``wake`` is called when
    it has). An input that raises ends it, and ``error`` holds what it raised."""

    def __init__(self, items: Iterable[object] | AsyncIterable[object], wake: Callable[[], None]):
        self._sync: Iterator[object] | None = None
        self._async: AsyncIterator[object] | None = None
        if isinstance(items, AsyncIterable):
            self._async = aiter(items)
        else:
            self._sync = iter(items)
        self._wake = wake
        self._arrived: deque[object] = deque()
        self._wanted: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        self._fetching = False  # the reader was asked for an item it has not given yet
        self.ended = False
        self.error: BaseException | None = None

    @property
    def has_items(self) -> bool:
        """An item arrived and waits to be taken."""
        return bool(self._arrived)

    def take(self) -> tuple[bool, object]:
        """``(True, item)``, or ``(False, None)`` when no item is at hand yet (an async
        item on its way) or any more (``ended``)."""
        if self._arrived:
            return True, self._arrived.popleft()
        if self.ended:
            return False, None
        if self._sync is not None:
            try:
                return True, next(self._sync)
            except StopIteration:
                self.ended = True
            except Exception as exc:
                self.error, self.ended = exc, True
            return False, None
        self._ask()
        return False, None

    def _ask(self) -> None:
        """Have the reader fetch one more item (it starts on first use)."""
        if self._fetching:
            return
        self._fetching = True
        if self._wanted is None:
            self._wanted = asyncio.Event()
            self._reader = asyncio.ensure_future(self._read())
        self._wanted.set()

    async def _read(self) -> None:
        assert self._async is not None and self._wanted is not None
        try:
            while True:
                await self._wanted.wait()
                self._wanted.clear()
                self._arrived.append(await anext(self._async))
                self._fetching = False
                self._wake()
        except StopAsyncIteration:
            pass
        except Exception as exc:
            self.error = exc
        self.ended = True
        self._wake()

    async def aclose(self) -> None:
        """Stop the reader (an item it was fetching is dropped: it was never taken)."""
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
