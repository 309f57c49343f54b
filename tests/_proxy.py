"""A small forward proxy on 127.0.0.1, as companies run them: plain-HTTP requests in
absolute form are forwarded, ``CONNECT`` opens a tunnel, and with ``credentials`` set a
request without the matching ``Proxy-Authorization`` gets the proxy's own 407."""

from __future__ import annotations

import asyncio
import base64
import contextlib

__all__ = ["ForwardProxy"]


class ForwardProxy:
    """Start with ``async with ForwardProxy() as proxy``; ``proxy.url`` is its address,
    ``proxy.heads`` the first request head of each connection it accepted."""

    def __init__(self, *, credentials: tuple[str, str] | None = None) -> None:
        self.heads: list[tuple[str, dict[str, str]]] = []  # (request line, headers)
        self._auth = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self._auth = f"Basic {token}"
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.url = ""

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        line, *fields = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)
        }
        self.heads.append((line, headers))
        method, target, _ = line.split(" ", 2)
        if self._auth is not None and headers.get("proxy-authorization") != self._auth:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="proxy"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:  # http://host:port/path: forwarded as is (servers accept the absolute form)
            authority = target.split("://", 1)[1].split("/", 1)[0]
            host, _, port = authority.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
