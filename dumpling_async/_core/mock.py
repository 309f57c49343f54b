"""An in-memory transport: a function answers each request, no socket involved.

For unit tests of the pipeline (retries, classification, the budget) that need an exact
sequence of answers. A handler returns a :class:`MockResponse`, or raises what the
network raises (``aiohttp.ClientConnectionError``, ``TimeoutError``) to act out a
failure; ``MockResponse(200, fail=...)`` fails after the status arrived.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .transport import Exchange, Response

__all__ = ["MockRequest", "MockResponse", "MockTransport"]


@attrs.frozen
class MockRequest:
    """A request as the handler sees it."""

    url: URL
    endpoint: str  # the last path segment, e.g. "get-tiktok-profile"
    json: Any  # the decoded body


@attrs.frozen
class MockResponse:
    """An answer: *json* is encoded for you unless *body* is given."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    fail: BaseException | None = None  # raised after the status arrived, as if mid-body


Handler = Callable[[MockRequest], MockResponse | Awaitable[MockResponse]]


class MockTransport:
    """Answers every request with *handler*; ``requests`` keeps what was asked."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[MockRequest] = []
        self.closed = False

    async def post(self, url: URL, body: bytes, exchange: Exchange) -> Response:
        request = MockRequest(url, url.path.rsplit("/", 1)[-1], orjson.loads(body))
        self.requests.append(request)
        answer = self._handler(request)
        if inspect.isawaitable(answer):
            answer = await answer
        exchange.status = answer.status
        if answer.fail is not None:
            raise answer.fail
        data = answer.body if answer.body is not None else orjson.dumps(answer.json)
        headers = CIMultiDictProxy(CIMultiDict(answer.headers))
        return Response(answer.status, headers, data, None)

    async def aclose(self) -> None:
        self.closed = True
