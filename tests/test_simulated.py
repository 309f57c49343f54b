"""Tests of the fake server that ``--simulate`` and ``demo`` run (``cli._simulated``)."""

from __future__ import annotations

import asyncio
import threading
import time
from urllib.parse import urlsplit

from dumpling_async.cli._simulated import SIMULATED_LIMIT, simulated_server

_BODY = b'{"handle": "someone"}'
_REQUEST = (
    b"POST /api/v1/get-tiktok-profile HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\n"
    b"Authorization: Bearer simulated-key\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n"
    b"\r\n" % len(_BODY)
) + _BODY


async def test_counts_a_request_while_the_client_loop_is_blocked() -> None:
    """A request is counted when it arrives, not when the client's busy loop lets it be read."""
    async with simulated_server(True) as server:
        assert server is not None
        address = urlsplit(server.url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        writer.write(_REQUEST)
        await writer.drain()  # in the kernel's buffers: it has arrived
        # The client's loop blocked (a busy client) until the server has counted it.
        deadline = time.monotonic() + 10.0
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 - blocking the loop is the point
        counted_while_blocked = server.requests
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert counted_while_blocked == 1
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert server.rate_limit is not None and server.rate_limit.limit == SIMULATED_LIMIT[0]


async def test_closes_its_thread() -> None:
    """Leaving the context closes the server and ends its thread; disabled, it yields None."""
    before = _server_threads()
    async with simulated_server(True) as server:
        assert server is not None
        assert _server_threads() == before + 1
    assert _server_threads() == before
    async with simulated_server(False) as none:
        assert none is None


def _server_threads() -> int:
    return sum(thread.name == "dumpling-fake-server" for thread in threading.enumerate())
