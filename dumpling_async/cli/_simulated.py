"""The fake server a simulated run (``--simulate``, ``demo``) talks to, on its own thread.

A real server counts a request when it arrives. One sharing the client's event loop
would count it only when that loop comes round to reading it, later the busier the
client is: a burst the client sent on time is counted late, its units come back late,
and a limiter pacing on the client's send times meets a 429 it could not foresee. On
its own thread and loop the fake server reads a request when it arrives, as a server
elsewhere does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:  # imported when needed: aiohttp.web is slow to import
    from ..testing import FakeDumplingServer, RateLimitRule

__all__ = ["SIMULATED_LIMIT", "simulated_rule", "simulated_server"]

SIMULATED_LIMIT: Final[tuple[int, float, Literal["sliding"]]] = (50, 1.0, "sliding")


def simulated_rule() -> RateLimitRule:
    from ..testing import RateLimitRule

    limit, window, algorithm = SIMULATED_LIMIT
    return RateLimitRule(limit, window, algorithm)


class _ServerHost:
    """Runs the fake server from start to close on a thread and event loop of its own;
    the client only waits for it to be ready and tells it to stop, so a cancelled client
    cannot leave it half started or half closed."""

    def __init__(self) -> None:
        self.thread = threading.Thread(target=self._run, name="dumpling-fake-server", daemon=True)
        self.ready = threading.Event()
        self.server: FakeDumplingServer | None = None
        self.error: Exception | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from ..testing import FakeDumplingServer

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = FakeDumplingServer(rate_limit=simulated_rule())
        try:
            await server.start()
        except Exception as exc:  # handed to the client, which raises it
            self.error = exc
            return
        finally:
            self.ready.set()
        self.server = server
        try:
            if not self._stopping.is_set():  # set before the loop was seen: stop now
                await self._stop.wait()
        finally:
            await server.close()

    def stop(self) -> None:
        """Close the server and end the thread (from the client's thread)."""
        self._stopping.set()  # first: either this sees the loop or the loop sees this
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(stop.set)


@contextlib.asynccontextmanager
async def simulated_server(enabled: bool) -> AsyncIterator[FakeDumplingServer | None]:
    """A started fake server on a thread of its own (None unless *enabled*); closed, and
    its thread ended, on exit. Read its records once the run is over."""
    if not enabled:
        yield None
        return
    host = _ServerHost()
    host.thread.start()
    try:
        await asyncio.to_thread(host.ready.wait)
        if host.server is None:
            raise host.error or RuntimeError("the fake server did not start")
        yield host.server
    finally:
        host.stop()
        await asyncio.to_thread(host.thread.join)
