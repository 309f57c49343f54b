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
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

if TYPE_CHECKING:  # imported when needed: aiohttp.web is slow to import
    from ..testing import FakeDumplingServer, RateLimitRule

__all__ = ["SIMULATED_LIMIT", "simulated_rule", "simulated_server"]

SIMULATED_LIMIT: Final[tuple[int, float, Literal["sliding"]]] = (50, 1.0, "sliding")

T = TypeVar("T")


def simulated_rule() -> RateLimitRule:
    from ..testing import RateLimitRule

    limit, window, algorithm = SIMULATED_LIMIT
    return RateLimitRule(limit, window, algorithm)


async def _started() -> FakeDumplingServer:
    from ..testing import FakeDumplingServer

    server = FakeDumplingServer(rate_limit=simulated_rule())
    await server.start()
    return server


@contextlib.asynccontextmanager
async def simulated_server(enabled: bool) -> AsyncIterator[FakeDumplingServer | None]:
    """A started fake server on a thread of its own (None unless *enabled*); closed, and
    its thread ended, on exit. Read its records once the run is over."""
    if not enabled:
        yield None
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dumpling-fake-server", daemon=True)
    thread.start()

    async def on_server_loop(coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    try:
        server = await on_server_loop(_started())
        try:
            yield server
        finally:
            await on_server_loop(server.close())
    finally:
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        if not thread.is_alive():
            loop.close()
