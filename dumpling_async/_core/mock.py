"""An in-memory transport: a function answers each request, no socket involved.

For unit tests of the pipeline (retries, classification, the budget) that need an exact
sequence of answers. A handler returns a :class:`MockResponse`, or a
:class:`MockFailure` to act out an attempt that got no complete answer: one that never
went out (refused, DNS: nothing can have been charged), one that went out and got no
answer (a timeout, a dropped connection: it may have been charged), or one whose status
arrived before it broke (``MockFailure(status=200)``: charged). A handler may also
await something that never ends, to act out a cancellation at that point.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import orjson
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .transport import Failure, Progress, Response, SendFailed

__all__ = ["MockFailure", "MockRequest", "MockResponse", "MockTransport"]


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


@attrs.frozen
class MockFailure:
    """No complete answer: whether the request went out, the status that arrived first
    (None: none), what kind of failure, and the exception that stands for the cause."""

    went_out: bool = True
    status: int | None = None
    kind: Failure = Failure.CONNECTION
    cause: BaseException = attrs.field(factory=lambda: ConnectionResetError("no answer"))


Answer = MockResponse | MockFailure
Handler = Callable[[MockRequest], Answer | Awaitable[Answer]]


class MockTransport:
    """Answers every request with *handler*; ``requests`` keeps what was asked. A request
    leaves (it "holds a connection") once the handler has been called, unless the handler
    answers at once with a failure that never went out (or raises: a broken test)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.requests: list[MockRequest] = []
        self.closed = False

    async def post(self, url: URL, body: bytes, progress: Progress) -> Response:
        request = MockRequest(url, url.path.rsplit("/", 1)[-1], orjson.loads(body))
        self.requests.append(request)
        answer = self._handler(request)
        if not isinstance(answer, MockFailure) or answer.went_out:
            progress.leave()
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, MockFailure):
            progress.went_out, progress.status = answer.went_out, answer.status
            name = type(answer.cause).__name__
            detail = f"{name}: {answer.cause}" if str(answer.cause) else name
            cause = answer.cause.with_traceback(None)
            raise SendFailed(
                detail,
                kind=answer.kind,
                went_out=answer.went_out,
                status=answer.status,
                cause=cause,
            )
        progress.status = answer.status
        data = answer.body if answer.body is not None else orjson.dumps(answer.json)
        headers = CIMultiDictProxy(CIMultiDict(answer.headers))
        return Response(answer.status, headers, data, None)

    async def aclose(self) -> None:
        self.closed = True
