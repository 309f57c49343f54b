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
        time.sleep(0.3)  # noqa: ASYNC251 - the client's loop blocked (a busy client)
        unblocked = time.monotonic()
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    (record,) = server.records
    assert record.arrived is not None and record.arrived < unblocked - 0.2
    assert server.rate_limit is not None and server.rate_limit.limit == SIMULATED_LIMIT[0]


async def test_closes_its_thread() -> None:
    """Leaving the context closes the server and ends its thread; disabled, it yields None."""
    async with simulated_server(True) as server:
        assert server is not None
        assert _server_threads() == 1
    assert _server_threads() == 0
    async with simulated_server(False) as none:
        assert none is None


def _server_threads() -> int:
    return sum(thread.name == "dumpling-fake-server" for thread in threading.enumerate())
