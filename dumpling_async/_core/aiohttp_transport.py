"""The real transport: one pooled ``aiohttp.ClientSession`` (owned, or lent by the caller),
the response size cap, and the one place aiohttp's exceptions become the core's neutral
``SendFailed`` (``_failed``), with how far the attempt got.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .._errors import ClientClosedError
from .._version import __version__
from .secret import Secret
from .transport import Failure, Progress, Response, SendFailed

__all__ = ["AiohttpTransport", "AuthHeaders", "user_agent"]

ERROR_BODY_BYTES = 64 * 1024  # error bodies are small; the rest goes with the connection
# What aiohttp raises when the network fails; anything else is a bug, not a fault.
_FAILURES = (aiohttp.ClientError, TimeoutError, OSError)
# Failures that happen before a request leaves: it cannot have been charged.
_NOT_SENT = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
    aiohttp.ClientHttpProxyError,
)


# The attempt the running task is sending, for the connector to mark as sent.
_SENDING: ContextVar[Progress | None] = ContextVar("dumpling_async_sending", default=None)


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
        progress = _SENDING.get()
        if progress is not None:
            try:
                progress.leave()
            except BaseException:
                connection.release()  # a failing listener must not keep a pooled connection
                raise
        return connection


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

    async def post(self, url: URL, body: bytes, progress: Progress) -> Response:
        session = self._session
        if session is None or self._closed:
            session = self._open()
        if self._owns_session:
            request = session.post(url, data=body, allow_redirects=False, proxy=self._proxy)
        else:
            # A lent session has neither our headers nor our timeout; and its connector
            # does not say when it connected: count the request as sent from the start (a
            # failure is then "maybe charged").
            progress.went_out = True
            request = session.post(
                url,
                data=body,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
                proxy=self._proxy,
            )
        sending = _SENDING.set(progress)
        try:
            async with request as resp:
                status = progress.status = resp.status
                if status == 200:
                    data = await self._read(resp)
                else:
                    data = await _read_error(resp)
                return Response(status, resp.headers, data, resp.reason)
        except _FAILURES as exc:
            raise _failed(exc, progress) from exc
        finally:
            _SENDING.reset(sending)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        length = resp.content_length
        cap = self._max_body
        if length is not None and length > cap:
            raise _too_large(f"response body of {length} bytes exceeds the {cap} byte cap")
        if length is not None and "Content-Encoding" not in resp.headers:
            return await resp.read()
        # Chunked or compressed: what counts is the bytes after decompression, which
        # aiohttp (>= 3.13.3) inflates a bounded chunk at a time.
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > cap:
                raise _too_large(f"response body exceeds the {cap} byte cap")
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


def _too_large(detail: str) -> SendFailed:
    return SendFailed(detail, kind=Failure.TOO_LARGE, went_out=True, status=200)


def _failed(exc: BaseException, progress: Progress) -> SendFailed:
    """The one place aiohttp's failures become the core's: the kind, and how far the
    attempt got (*progress* corrected when the failure shows it never left)."""
    cause = _scrubbed(exc)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        progress.went_out = False  # it never left (a lent session marks every request)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return SendFailed(
            detail, kind=Failure.PROXY, went_out=False, status=exc.status, cause=cause
        )
    timed_out = isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError)
    return SendFailed(
        detail,
        kind=Failure.TIMEOUT if timed_out else Failure.CONNECTION,
        went_out=progress.went_out,
        status=progress.status,
        cause=cause,
    )


def _scrubbed(exc: BaseException) -> BaseException:
    """The cause as users may see it, and every exception behind it: no frames (their
    locals hold the request and its headers) and no request headers in aiohttp's
    ``request_info``."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        link = todo.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        info = getattr(link, "request_info", None)
        if isinstance(info, aiohttp.RequestInfo):
            link.request_info = info._replace(headers=CIMultiDictProxy(CIMultiDict()))  # type: ignore[attr-defined]
        link.with_traceback(None)
        todo += (link.__cause__, link.__context__)
    return exc
