"""The seam below the pipeline: send one POST, return its status, headers and body.

``AiohttpTransport`` is the real one (one pooled ``aiohttp.ClientSession``, owned or
lent); ``_core/mock.py`` answers in memory for unit tests. A transport raises what the
network raises (``aiohttp.ClientError``, ``TimeoutError``, ``OSError``); the pipeline
maps those to library errors in one place (``fate.transport_error``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple, Protocol

import aiohttp
from yarl import URL

from .._errors import ClientClosedError, InvalidResponseError
from .._version import __version__
from .secret import Secret

if TYPE_CHECKING:
    from .quota import ResponseInfo

__all__ = ["AiohttpTransport", "AuthHeaders", "Exchange", "Response", "Transport", "user_agent"]

ERROR_BODY_BYTES = 64 * 1024  # error bodies are small; the rest goes with the connection


class Exchange:
    """How far one attempt got, for the pipeline to read when it fails midway: whether
    the request may have reached the server (*sent*), and the status that came back."""

    __slots__ = ("info", "sent", "started", "status")

    def __init__(self) -> None:
        self.sent = False  # it had a connection: the server may have received it
        self.status = 0  # the status line received (0: none)
        self.started = 0.0  # when the pipeline handed it over (0: never; for its hooks)
        self.info: ResponseInfo | None = None  # what the pipeline read of the answer (hooks)


# The attempt the running task is sending, for the connector to mark as sent.
_SENDING: ContextVar[Exchange | None] = ContextVar("dumpling_async_sending", default=None)


class _MarkingConnector(aiohttp.TCPConnector):
    """A connector that marks the attempt in progress as sent once it holds a
    connection: a failure before that (DNS, refused, connect timeout) cannot have been
    charged, one after it may have been."""

    async def connect(  # type: ignore[override]
        self,
        req: aiohttp.ClientRequest,
        traces: list[object],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)  # type: ignore[arg-type]
        exchange = _SENDING.get()
        if exchange is not None:
            exchange.sent = True
        return connection


class Response(NamedTuple):
    """A complete answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    reason: str | None


class Transport(Protocol):
    """Sends the pipeline's requests."""

    async def post(self, url: URL, body: bytes, exchange: Exchange) -> Response:
        """POST *body* (JSON) to *url*; set ``exchange.status`` as soon as it is known."""
        ...

    async def aclose(self) -> None:
        """Release connections (a lent session is left open)."""
        ...


def user_agent(extra: str | None = None) -> str:
    """``dumpling-async/<version> python/<version> aiohttp/<version>`` (+ *extra*)."""
    python = ".".join(str(part) for part in sys.version_info[:3])
    agent = f"dumpling-async/{__version__} python/{python} aiohttp/{aiohttp.__version__}"
    return f"{agent} {extra}" if extra else agent


class AuthHeaders(dict[str, str]):
    """Request headers built once; their repr hides the Authorization value."""

    def __init__(self, key: Secret, agent: str | None = None) -> None:
        super().__init__(
            {
                "Authorization": f"Bearer {key.get()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": agent or user_agent(),
            }
        )

    def __repr__(self) -> str:
        return "{'Authorization': '[REDACTED]', ...}"


class AiohttpTransport:
    """One aiohttp session and its connection pool, created lazily inside the running
    loop (or lent by the caller, then never closed here). Redirects are never followed:
    they would carry the key elsewhere. Requests go through *proxy* when given (the
    client resolves it from the environment once; aiohttp's ``trust_env`` would look it
    up, and ~/.netrc, in a thread on every request)."""

    def __init__(
        self,
        key: Secret,
        *,
        session: aiohttp.ClientSession | None,
        max_connections: int,
        timeout: float,
        max_body: int,
        proxy: str | None = None,
        agent: str | None = None,
    ) -> None:
        self._headers = AuthHeaders(key, agent)
        self._proxy = proxy
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body
        self._closed = False

    def __repr__(self) -> str:
        return f"AiohttpTransport(owns_session={self._owns_session}, closed={self._closed})"

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosedError("this AsyncDumplingClient is closed; create a new one")
        limit = self._max_connections
        connector = _MarkingConnector(limit=limit, limit_per_host=limit)
        # Headers and timeout set once on the session: per request, aiohttp would merge
        # the headers into a fresh CIMultiDict every time.
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, timeout=self._timeout
        )
        return self._session

    async def post(self, url: URL, body: bytes, exchange: Exchange) -> Response:
        session = self._session
        if session is None or self._closed:
            session = self._open()
        if self._owns_session:
            request = session.post(url, data=body, allow_redirects=False, proxy=self._proxy)
        else:
            # A lent session has neither our headers nor our timeout; and its connector
            # does not say when it connected: count the request as sent from the start (a
            # failure is then "maybe charged").
            exchange.sent = True
            request = session.post(
                url,
                data=body,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxy=self._proxy,
            )
        sending = _SENDING.set(exchange)
        try:
            async with request as resp:
                status = exchange.status = resp.status
                if status == 200:
                    data = await self._read(resp)
                else:
                    data = await _read_error(resp)
                return Response(status, resp.headers, data, resp.reason)
        finally:
            _SENDING.reset(sending)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        length = resp.content_length
        cap = self._max_body
        if length is not None and length > cap:
            raise InvalidResponseError(
                f"response body of {length} bytes exceeds the {cap} byte cap", status=200
            )
        if length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()
        # Chunked or compressed: what counts is the bytes after decompression, which
        # aiohttp (>= 3.13.3) inflates a bounded chunk at a time.
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise InvalidResponseError(f"response body exceeds the {cap} byte cap", status=200)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None


async def _read_error(resp: aiohttp.ClientResponse) -> bytes:
    try:
        return await resp.content.read(ERROR_BODY_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        return b""
